"""Small real backends: a byte-level counting model (also as an engine with its own generation loop), and one
that fails where a test asks it to."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from muai_core import chat_template
from muai_core.contracts import Availability, GenerationRequest, GenerationResult, LoadRequest
from muai_core.decoding import decode_loop, token_loop
from muai_core.errors import UnsupportedRequest
from muai_core.hookspecs import hookimpl
from muai_core.inputs import token_arrays

VOCAB = 256
CONTEXT = 4096
#: The counting backends' tokenizer: UTF-8 bytes.
TOKENIZER = "utf-8 bytes"
#: The end-of-sequence byte of ``TokenBackend`` (DEL, which follows ``~``).
TOKEN_BACKEND_EOS = 0x7F


@dataclass
class LoadRecord:
    """What a counting backend remembers of a model it loaded, without keeping the model alive."""

    name: str
    device: str
    settings: Mapping[str, Any]
    released: bool = False


@dataclass(eq=False)
class CountingModel:
    name: str
    device: str
    index: int  # of its record in the backend's ``loaded``
    memory_bytes: int = 1024
    released: bool = False


class CountingBackend:
    """A byte-level model whose most likely next byte is the previous byte plus one (then plus two).

    It needs no files and no third-party runtime, and it really tokenises, runs logits and samples
    (through muai_core's decode loop).
    """

    def __init__(self, name: str = "counting", tokenizer: str = TOKENIZER) -> None:
        self.name = name
        self.tokenizer = tokenizer  # its ``tokenizer_digest``: a generation resumes only on an equal one
        self.loaded: list[LoadRecord] = []

    @hookimpl
    def muai_backend_available(self) -> Availability:
        return Availability(True)

    @hookimpl
    def muai_load_model(self, request: LoadRequest) -> CountingModel:
        record = LoadRecord(request.model_name, request.device, dict(request.settings))
        self.loaded.append(record)
        memory = request.settings.get("memory_bytes", 1024)  # what this pretend model says it holds
        return CountingModel(record.name, record.device, len(self.loaded) - 1, memory)

    @hookimpl
    def muai_forward(self, model: CountingModel, inputs: Mapping[str, Any]) -> dict[str, Any]:
        import numpy as np

        ids, _ = token_arrays(inputs, VOCAB, CONTEXT)
        logits = np.full((*ids.shape, VOCAB), -10.0, dtype=np.float32)
        np.put_along_axis(logits, ((ids + 1) % VOCAB)[..., None], 10.0, axis=-1)
        np.put_along_axis(logits, ((ids + 2) % VOCAB)[..., None], 5.0, axis=-1)
        return {"logits": logits}

    @hookimpl
    def muai_generate(self, model: CountingModel, request: GenerationRequest) -> GenerationResult:
        prompt = chat_template.prompt_text(request, None, {})  # no chat template: chat and messages are refused
        return decode_loop(_next_byte_logits, list(prompt.encode("utf-8")), request, _decode, context_length=CONTEXT)

    @hookimpl
    def muai_unload_model(self, model: CountingModel) -> None:
        model.released = self.loaded[model.index].released = True

    @hookimpl
    def muai_model_info(self, model: CountingModel) -> dict[str, Any]:
        return {
            "backend": self.name,
            "device": model.device,
            "vocab_size": VOCAB,
            "context_length": CONTEXT,
            "memory_bytes": model.memory_bytes,
            "tokenizer_digest": self.tokenizer,
        }


class TokenBackend(CountingBackend):
    """The counting model as an engine that runs its own generation loop, through ``token_loop``.

    Its engine yields each next byte itself: the previous byte plus one (then plus two, three), greedy or
    sampled with ``temperature`` from its own seeded generator, with ``repetition_penalty``, and ends on its
    EOS byte ``TOKEN_BACKEND_EOS`` (so the prompt ``"}"`` is answered ``"~"`` and EOS).
    """

    def __init__(self, name: str = "tokens") -> None:
        super().__init__(name)

    @hookimpl
    def muai_generate(self, model: CountingModel, request: GenerationRequest) -> GenerationResult:
        prompt = chat_template.prompt_text(request, None, {})
        request.check_token_ids(VOCAB)

        def engine(ids: list[int], budget: int) -> Iterator[int]:
            return _counting_engine(ids, request, frozenset({TOKEN_BACKEND_EOS}))

        eos, ids = {TOKEN_BACKEND_EOS}, list(prompt.encode("utf-8"))
        return token_loop(engine, ids, request, _decode_text, eos_ids=eos, context_length=CONTEXT)


@dataclass
class FaultyBackend(CountingBackend):
    """A counting backend that raises ``error`` at the stages named in ``fail_on``.

    Stages: ``available`` (reports itself unavailable), ``load``, ``generate``, ``forward``, ``unload``.
    ``fail_after`` (with ``generate`` in ``fail_on``) lets that many tokens be generated before the engine
    fails. ``unsupported`` names the calls it refuses with ``UnsupportedRequest``: a stage (``generate``,
    ``forward``), or ``generate:<argument>`` for generations where that request field is set (truthy).
    """

    fail_on: frozenset[str] = frozenset({"load"})
    error: Exception = field(default_factory=lambda: RuntimeError("injected fault"))
    name: str = "faulty"
    loaded: list[LoadRecord] = field(default_factory=list)
    fail_after: int | None = None
    unsupported: frozenset[str] = frozenset()
    tokenizer: str = TOKENIZER

    def _maybe_fail(self, stage: str, request: GenerationRequest | None = None) -> None:
        refused = stage in self.unsupported or any(
            request is not None and getattr(request, entry.partition(":")[2], None)
            for entry in self.unsupported
            if entry.startswith(f"{stage}:")
        )
        if refused:
            raise UnsupportedRequest(f"{self.name} cannot serve this {stage} call (injected)")
        if stage in self.fail_on and not (stage == "generate" and self.fail_after is not None):
            raise self.error

    @hookimpl
    def muai_backend_available(self) -> Availability:
        if "available" in self.fail_on:
            return Availability(False, f"injected: {self.error}")
        return Availability(True)

    @hookimpl
    def muai_load_model(self, request: LoadRequest) -> CountingModel:
        self._maybe_fail("load")
        return super().muai_load_model(request)

    @hookimpl
    def muai_forward(self, model: CountingModel, inputs: Mapping[str, Any]) -> dict[str, Any]:
        self._maybe_fail("forward")
        return super().muai_forward(model, inputs)

    @hookimpl
    def muai_generate(self, model: CountingModel, request: GenerationRequest) -> GenerationResult:
        self._maybe_fail("generate", request)
        if "generate" not in self.fail_on or self.fail_after is None:
            return super().muai_generate(model, request)
        steps = 0

        def step(ids: Any) -> Any:
            nonlocal steps
            steps += 1
            if steps > self.fail_after:
                raise self.error
            return _next_byte_logits(ids)

        return decode_loop(step, list(request.prompt.encode("utf-8")), request, _decode, context_length=CONTEXT)

    @hookimpl
    def muai_unload_model(self, model: CountingModel) -> None:
        model.released = self.loaded[model.index].released = True
        self._maybe_fail("unload")


def _next_byte_logits(ids: Any) -> Any:
    import numpy as np

    logits = np.full(VOCAB, -10.0, dtype=np.float32)
    logits[(int(ids[0, -1]) + 1) % VOCAB] = 10.0
    logits[(int(ids[0, -1]) + 2) % VOCAB] = 5.0  # a runner-up, so that a repetition penalty can change the output
    return logits


def _counting_engine(ids: list[int], request: GenerationRequest, eos: frozenset[int]) -> Iterator[int]:
    """Yields the bytes after ``ids`` as an engine with its own loop would: it samples and holds tokens back."""
    rng = random.Random(request.seed)
    seen, last, produced = set(ids), ids[-1], len(request.resume_ids)
    while True:
        held = set(eos) if request.ignore_eos else set()
        if produced < request.min_new_tokens:
            held |= {*eos, *request.stop_token_ids}
        scores = {(last + step) % VOCAB: 10.0 / step for step in (1, 2, 3) if (last + step) % VOCAB not in held}
        penalty = request.repetition_penalty
        scores = {token: score / penalty if token in seen else score for token, score in scores.items()}
        if request.do_sample:
            weights = [math.exp((score - 10.0) / request.temperature) for score in scores.values()]
            last = rng.choices(list(scores), weights)[0]
        else:
            last = max(scores, key=scores.__getitem__)
        seen.add(last)
        produced += 1
        yield last


def _decode(ids: Sequence[int]) -> str:
    return bytes(ids).decode("utf-8", errors="replace")


def _decode_text(ids: Sequence[int]) -> str:
    """``TokenBackend``'s decoding: its EOS byte is a special token, which adds no text."""
    return _decode([i for i in ids if i != TOKEN_BACKEND_EOS])
