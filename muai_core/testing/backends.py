"""Two small real backends: a byte-level counting model, and one that fails where a test asks it to."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from muai_core.contracts import Availability, GenerationRequest, GenerationResult, LoadRequest
from muai_core.hookspecs import hookimpl
from muai_core.inputs import token_arrays
from muai_core.text import TextStream

VOCAB = 256
CONTEXT = 4096


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
    released: bool = False


class CountingBackend:
    """A byte-level model whose most likely next byte is the previous byte plus one.

    It needs no files and no third-party runtime, and it really tokenises, runs logits and samples.
    """

    def __init__(self, name: str = "counting") -> None:
        self.name = name
        self.loaded: list[LoadRecord] = []

    @hookimpl
    def muai_backend_available(self) -> Availability:
        return Availability(True)

    @hookimpl
    def muai_load_model(self, request: LoadRequest) -> CountingModel:
        record = LoadRecord(request.model_name, request.device, dict(request.settings))
        self.loaded.append(record)
        return CountingModel(record.name, record.device, len(self.loaded) - 1)

    @hookimpl
    def muai_forward(self, model: CountingModel, inputs: Mapping[str, Any]) -> dict[str, Any]:
        import numpy as np

        ids, _ = token_arrays(inputs, VOCAB)
        logits = np.full((*ids.shape, VOCAB), -10.0, dtype=np.float32)
        np.put_along_axis(logits, ((ids + 1) % VOCAB)[..., None], 10.0, axis=-1)
        return {"logits": logits}

    @hookimpl
    def muai_generate(self, model: CountingModel, request: GenerationRequest) -> GenerationResult:
        import numpy as np

        prompt = list(request.prompt.encode("utf-8"))
        budget = request.new_token_budget(len(prompt), CONTEXT)
        rng = np.random.default_rng(request.seed)
        stream = TextStream(_decode, request.streamer)
        started = time.perf_counter()
        stamps, new = [], []
        last = prompt[-1]
        for _ in range(budget):
            last = (last + 1) % VOCAB
            if request.do_sample and rng.random() < request.temperature / (1 + request.temperature):
                last = int(rng.integers(32, 127))
            new.append(last)
            stamps.append(time.perf_counter())
            stream.push(last)
            if stream.stopped:
                break
        stream.finish()
        completion = _decode(new)
        return GenerationResult(
            text=request.prompt + completion if request.return_full_text else completion,
            completion=completion,
            prompt_tokens=len(prompt),
            token_ids=tuple(new),
            finish_reason="stopped" if stream.stopped else "length",
            ttft_s=stamps[0] - started,
            token_latencies_s=tuple(b - a for a, b in zip(stamps, stamps[1:], strict=False)),
        )

    @hookimpl
    def muai_unload_model(self, model: CountingModel) -> None:
        model.released = self.loaded[model.index].released = True

    @hookimpl
    def muai_model_info(self, model: CountingModel) -> dict[str, Any]:
        return {"backend": self.name, "device": model.device, "vocab_size": VOCAB, "context_length": CONTEXT}


@dataclass
class FaultyBackend(CountingBackend):
    """A counting backend that raises ``error`` at the stages named in ``fail_on``.

    Stages: ``available`` (reports itself unavailable), ``load``, ``generate``, ``forward``, ``unload``.
    """

    fail_on: frozenset[str] = frozenset({"load"})
    error: Exception = field(default_factory=lambda: RuntimeError("injected fault"))
    name: str = "faulty"
    loaded: list[LoadRecord] = field(default_factory=list)

    def _maybe_fail(self, stage: str) -> None:
        if stage in self.fail_on:
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
        self._maybe_fail("generate")
        return super().muai_generate(model, request)

    @hookimpl
    def muai_unload_model(self, model: CountingModel) -> None:
        model.released = self.loaded[model.index].released = True
        self._maybe_fail("unload")


def _decode(ids: list[int]) -> str:
    return bytes(ids).decode("utf-8", errors="replace")
