"""The conformance suite a backend runs against itself: subclass, point it at a model, run pytest.

    from muai_core.testing.conformance import BackendConformance, ConformanceTarget

    class TestMyBackendConformance(BackendConformance):
        @pytest.fixture
        def conformance_target(self, tmp_path):
            return ConformanceTarget(MyBackend, "mine", model="tiny", config={"models_dir": "..."})

Every test drives the backend through ``ModelManager``, in a registry that holds only the backend and the
``counting`` backend it falls back to (or takes over from).
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from muai_core.contracts import Availability, GenerationResult
from muai_core.errors import InvalidInputError, ModelLoadError
from muai_core.hookspecs import hookimpl
from muai_core.manager import ModelManager
from muai_core.monitor import PerformanceMonitor
from muai_core.plugins import PluginRegistry
from muai_core.testing.backends import CountingBackend, FaultyBackend

FINISH_REASONS = frozenset({"length", "eos", "stop", "stopped"})
PARTNER = "counting"
#: Machine epsilon of each element type a backend may compute in (its model info's ``inference_precision``).
EPSILON = {"f32": 2.0**-23, "f16": 2.0**-10, "bf16": 2.0**-7}
#: The longest a check waits for an event that a working backend reaches at once.
ASYNC_WAIT_S = 10.0
#: How long the streamer holds its first piece while the test cancels the generation.
CANCEL_GRACE_S = 0.5
#: Below 1e-3 two f32 runs of one graph with other batch shapes may still differ (kernels block differently).
F32_LOGITS_TOLERANCE = 1e-3


def logits_tolerance(inference_precision: str | None, reference: np.ndarray) -> float:
    """The absolute difference two runs of the same logits may show when computed in ``inference_precision``.

    f32 (also when the backend does not say) keeps 1e-3; a coarser type allows a few of its steps at the
    largest magnitude in ``reference`` (OpenVINO computes INT8 and FP16 exports in bf16 on CPUs with
    AVX512-BF16 or AMX, so a difference of one bf16 step is no fault there).
    """
    epsilon = EPSILON.get(inference_precision or "f32")
    if epsilon is None:
        raise ValueError(f"unknown inference_precision {inference_precision!r}; expected one of {sorted(EPSILON)}")
    scale = float(np.abs(reference).max(initial=1.0))
    return max(F32_LOGITS_TOLERANCE, 4 * epsilon * scale)


@dataclass(frozen=True)
class ConformanceTarget:
    """The backend under test and a model it can serve.

    :param factory: makes a fresh plugin object (usually the plugin class).
    :param name: the backend name (the entry-point name).
    :param model: a model name ``ModelManager`` resolves with ``config``.
    :param config: the content of ``config/system.yaml`` for these tests (e.g. ``models_dir``, your section).
    :param prompt: a prompt the model encodes to a few tokens.
    :param eos_prompt: a prompt the model answers (greedy) with its end-of-sequence token within
        ``BackendConformance.long_budget`` tokens; without one the EOS check tries ``prompt`` and skips when
        the model never ends.
    :param reference: another backend (e.g. ``"pytorch"``) whose greedy token ids must equal this one's on
        the same model; the check skips when it is not installed or not available.
    :param seq2seq: ``model`` is an encoder-decoder model (T5, BART): the checks use the seq2seq meaning of
        ``forward`` (with ``decoder_input_ids``), ``max_length`` and ``return_full_text`` (see muai_core.seq2seq).
    :param runs_seq2seq: the backend runs encoder-decoder models (set it on its causal targets too); a backend
        that does not must hand one to the next backend with the reason, which the suite checks.
    """

    factory: Callable[[], object]
    name: str
    model: str
    config: Mapping[str, Any] = field(default_factory=dict)
    prompt: str = "The capital of France is"
    eos_prompt: str | None = None
    reference: str | None = None
    seq2seq: bool = False
    runs_seq2seq: bool = False


class InjectedFault(RuntimeError):
    """Raised by a hook the suite breaks on purpose."""


class BackendConformance:
    """The hook contract every muai backend keeps. Provide a ``conformance_target`` fixture."""

    new_tokens = 6
    #: A budget long enough that generation is still running when a test leaves or cancels it.
    long_budget = 48

    @pytest.fixture
    def conformance_target(self) -> ConformanceTarget:
        raise NotImplementedError("define a conformance_target fixture that returns a ConformanceTarget")

    @pytest.fixture
    def make_manager(self, conformance_target: ConformanceTarget, muai_workdir: Path) -> Iterator[Callable[..., Any]]:
        """``make_manager(chain=[...], fallback=True, break_hook=None)`` -> (manager, plugin, monitor)."""
        managers: list[ModelManager] = []

        def make(
            chain: tuple[str, ...] = (), fallback: bool = True, break_hook: str | None = None
        ) -> tuple[ModelManager, object, PerformanceMonitor]:
            target = conformance_target
            plugin = target.factory()
            if break_hook is not None:
                setattr(plugin, break_hook, _failing(break_hook))
            registry = PluginRegistry()
            registry.register(plugin, target.name)
            registry.register(CountingBackend(PARTNER), PARTNER)
            registry.register(FaultyBackend(fail_on=frozenset({"load"})), "faulty")
            chain = chain or (target.name, PARTNER)
            config = _merged(target.config, chain, fallback)
            path = muai_workdir / f"conformance-{len(managers)}.yaml"
            path.write_text(yaml.safe_dump(config), encoding="utf-8")
            monitor = PerformanceMonitor()
            manager = ModelManager(backend=chain[0], config_path=path, registry=registry, monitor=monitor)
            managers.append(manager)
            return manager, plugin, monitor

        yield make
        for manager in managers:
            for name in manager.loaded_models():
                manager.unload_model(name)

    @staticmethod
    def forward_inputs(target: ConformanceTarget, input_ids: Any, **more: Any) -> dict[str, Any]:
        """``forward``'s inputs; for a seq2seq target with the same ids as ``decoder_input_ids`` (unless given)."""
        inputs = {"input_ids": input_ids, **more}
        if target.seq2seq:
            inputs.setdefault("decoder_input_ids", input_ids)
        return inputs

    @staticmethod
    def full_text(target: ConformanceTarget, completion: str) -> str:
        """``text`` with ``return_full_text``: an encoder-decoder model's output does not hold the prompt."""
        return completion if target.seq2seq else target.prompt + completion

    def generate(self, manager: ModelManager, target: ConformanceTarget, **kwargs: Any) -> GenerationResult:
        kwargs.setdefault("max_new_tokens", self.new_tokens)
        return manager.generate_result(target.model, target.prompt, **kwargs)

    def test_reports_availability(self, conformance_target):
        availability = conformance_target.factory().muai_backend_available()
        assert isinstance(availability, Availability)
        assert availability.available, f"the backend says it cannot run here: {availability.reason}"

    def test_loads_and_describes_the_model(self, make_manager, conformance_target):
        manager, _, _ = make_manager()
        loaded = manager.load_model(conformance_target.model)
        assert loaded.backend_name == conformance_target.name, manager.explain(conformance_target.model)
        info = manager.get_model_info(conformance_target.model)
        assert info["backend_type"] == conformance_target.name and not info["is_fallback"]
        assert info["model_info"]["backend"] == conformance_target.name
        assert isinstance(info["model_info"]["device"], str) and info["model_info"]["device"]

    def test_forward_returns_float32_logits_for_every_position(self, make_manager, conformance_target):
        # Property 8 (output structure is the same on every backend)
        manager, _, _ = make_manager()
        ids = self.generate(manager, conformance_target).token_ids[:3] or (0,)
        for batch in ([list(ids)], [list(ids), list(reversed(ids))]):
            logits = manager.forward(conformance_target.model, self.forward_inputs(conformance_target, batch))["logits"]
            assert isinstance(logits, np.ndarray) and logits.dtype == np.float32
            assert logits.shape[:2] == (len(batch), len(ids)) and logits.shape[2] > max(ids)
            assert np.isfinite(logits).all()

    def test_forward_rows_do_not_depend_on_each_other(self, make_manager, conformance_target):
        manager, _, _ = make_manager()
        ids = list(self.generate(manager, conformance_target).token_ids[:3] or (0,))
        alone = manager.forward(conformance_target.model, self.forward_inputs(conformance_target, [ids]))["logits"]
        inputs = self.forward_inputs(conformance_target, [ids, ids[::-1]])
        paired = manager.forward(conformance_target.model, inputs)["logits"]
        precision = manager.get_model_info(conformance_target.model)["model_info"].get("inference_precision")
        np.testing.assert_allclose(paired[0], alone[0], rtol=1e-3, atol=logits_tolerance(precision, alone[0]))

    def test_forward_with_a_left_padded_mask_matches_the_unpadded_row(self, make_manager, conformance_target):
        # transformers' semantics: masked (padding) positions change nothing at the real ones
        manager, _, monitor = make_manager()
        ids = list(self.generate(manager, conformance_target, ignore_eos=True).token_ids[:4])
        short = ids[1:]
        if conformance_target.seq2seq:
            self._check_padded_encoder_input(manager, conformance_target, ids)
            return
        inputs = {"input_ids": [ids, [ids[0], *short]], "attention_mask": [[1] * len(ids), [0] + [1] * len(short)]}
        padded = manager.forward(conformance_target.model, inputs)["logits"]
        if monitor.detour_events():
            assert padded.shape[:2] == (2, len(ids)), "the partner that took the padded call answered wrongly"
            return  # the backend refused padding with UnsupportedRequest and a partner took the call
        alone = manager.forward(conformance_target.model, {"input_ids": [short]})["logits"]
        precision = manager.get_model_info(conformance_target.model)["model_info"].get("inference_precision")
        np.testing.assert_allclose(padded[1, 1:], alone[0], rtol=1e-3, atol=logits_tolerance(precision, alone[0]))

    def _check_padded_encoder_input(self, manager: ModelManager, target: ConformanceTarget, ids: list[int]) -> None:
        """Seq2seq: a right-padded encoder row gives the decoder the logits of the unpadded row (decoders alike)."""
        short, decoder = ids[:-1], [ids[:2], ids[:2]]
        inputs = {"input_ids": [ids, [*short, ids[0]]], "attention_mask": [[1] * len(ids), [1] * len(short) + [0]]}
        padded = manager.forward(target.model, {**inputs, "decoder_input_ids": decoder})["logits"]
        alone = manager.forward(target.model, {"input_ids": [short], "decoder_input_ids": decoder[:1]})["logits"]
        precision = manager.get_model_info(target.model)["model_info"].get("inference_precision")
        np.testing.assert_allclose(padded[1], alone[0], rtol=1e-3, atol=logits_tolerance(precision, alone[0]))

    def test_forward_longer_than_the_context_is_refused(self, make_manager, conformance_target):
        manager, _, monitor = make_manager()
        manager.load_model(conformance_target.model)
        context = manager.get_model_info(conformance_target.model)["model_info"].get("context_length")
        if not context:
            pytest.skip("the model reports no context_length")
        with pytest.raises(InvalidInputError):
            manager.forward(conformance_target.model, self.forward_inputs(conformance_target, [[0] * (context + 1)]))
        assert monitor.fallback_events() == monitor.detour_events() == [], "an over-long input must not fall back"

    @pytest.mark.parametrize(
        "inputs",
        [{"input_ids": [[-1]]}, {"input_ids": [[10**9]]}, {"input_ids": [[0.5]]}, {"input_ids": [[]]},
         {"input_ids": [[0]], "attention_mask": [[0, 1]]}, {"input_ids": [[0]], "pixels": [[0]]}],
        ids=["negative", "beyond-vocab", "float", "empty", "mask-shape", "unknown-key"],
    )  # fmt: skip
    def test_forward_rejects_bad_input(self, make_manager, conformance_target, inputs):
        manager, _, monitor = make_manager()
        if conformance_target.seq2seq:
            inputs = {**inputs, "decoder_input_ids": [[0]]}
        with pytest.raises(InvalidInputError):
            manager.forward(conformance_target.model, inputs)
        assert monitor.fallback_events() == [], "bad input must not fall back to another backend"

    @pytest.mark.parametrize(
        "inputs",
        [{"input_ids": [[0, 1]]}, {"input_ids": [[0, 1]], "decoder_input_ids": [[-1]]},
         {"input_ids": [[0, 1]], "decoder_input_ids": [[0], [0]]}],
        ids=["missing", "negative", "rows"],
    )  # fmt: skip
    def test_seq2seq_forward_checks_decoder_input_ids(self, make_manager, conformance_target, inputs):
        if not conformance_target.seq2seq:
            pytest.skip("the target is not an encoder-decoder model")
        manager, _, monitor = make_manager()
        with pytest.raises(InvalidInputError, match="decoder_input_ids"):
            manager.forward(conformance_target.model, inputs)
        assert monitor.fallback_events() == [], "bad input must not fall back to another backend"

    def test_generate_returns_a_complete_result(self, make_manager, conformance_target):
        manager, _, _ = make_manager()
        result = self.generate(manager, conformance_target, ignore_eos=True)
        assert isinstance(result, GenerationResult)
        assert len(result.token_ids) == self.new_tokens and result.finish_reason == "length"
        assert result.prompt_tokens >= 1 and result.ttft_s >= 0
        assert len(result.token_latencies_s) == len(result.token_ids) - 1
        assert result.text == self.full_text(conformance_target, result.completion)
        short = self.generate(manager, conformance_target, return_full_text=False)
        assert short.text == short.completion and short.finish_reason in FINISH_REASONS

    def test_chat_returns_the_answer_alone(self, make_manager, conformance_target):
        manager, _, _ = make_manager()
        try:
            result = self.generate(manager, conformance_target, chat=True)
        except InvalidInputError as exc:
            pytest.skip(f"the model has no chat template: {exc}")
        assert result.text == result.completion, "with chat=True the text is the answer, not the rendered template"

    def test_messages_answer_the_conversation_alone(self, make_manager, conformance_target):
        manager, _, monitor = make_manager()
        target = conformance_target
        turn = [{"role": "user", "content": target.prompt}]
        conversation = [*turn, {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And Italy?"}]
        kwargs = {"max_new_tokens": self.new_tokens}
        try:
            result = manager.generate_result(target.model, messages=conversation, **kwargs)
        except InvalidInputError as exc:
            assert monitor.fallback_events() == [], "a model without a chat template must refuse, not fall back"
            with pytest.raises(InvalidInputError):
                self.generate(manager, target, chat=True)
            pytest.skip(f"the model has no chat template: {exc}")
        assert result.text == result.completion, "with messages the text is the answer, not the rendered template"
        assert result.backend == target.name and result.finish_reason in FINISH_REASONS
        one_turn = manager.generate_result(target.model, messages=turn, **kwargs)
        assert result.prompt_tokens > one_turn.prompt_tokens, "the earlier turns did not reach the model"
        assert one_turn.token_ids == self.generate(manager, target, chat=True).token_ids
        stream = manager.stream(target.model, messages=conversation, **kwargs)
        assert "".join(stream) == result.completion and stream.result.token_ids == result.token_ids
        assert asyncio.run(manager.agenerate(target.model, messages=conversation, **kwargs)) == result.text

    def test_max_length_counts_the_prompt(self, make_manager, conformance_target):
        manager, _, _ = make_manager()
        # an encoder-decoder model counts its output alone: the decoder start token and the new tokens
        prompt_tokens = 1 if conformance_target.seq2seq else self.generate(manager, conformance_target).prompt_tokens
        result = self.generate(manager, conformance_target, max_new_tokens=None, max_length=prompt_tokens + 2)
        assert 1 <= len(result.token_ids) <= 2
        with pytest.raises(InvalidInputError):
            self.generate(manager, conformance_target, max_new_tokens=None, max_length=prompt_tokens)

    def test_generation_ending_on_eos_ends_with_it_and_shows_no_text_of_it(self, make_manager, conformance_target):
        manager, _, _ = make_manager()
        target = conformance_target
        pieces: list[str] = []
        prompt = target.eos_prompt or target.prompt
        result = manager.generate_result(
            target.model, prompt, streamer=pieces.append, max_new_tokens=self.long_budget, return_full_text=False
        )
        if result.finish_reason != "eos":
            assert target.eos_prompt is None, f"eos_prompt {prompt!r} ended with {result.finish_reason!r}, not eos"
            pytest.skip(f"the model did not end {prompt!r} with EOS within {self.long_budget} tokens")
        assert "".join(pieces) == result.completion and result.text == result.completion
        before = manager.generate_result(
            target.model, prompt, max_new_tokens=len(result.token_ids) - 1, return_full_text=False
        )
        assert before.token_ids == result.token_ids[:-1] and before.finish_reason == "length"
        assert result.completion == before.completion, "the EOS token added text to the completion"

    def test_greedy_tokens_match_the_reference_backend(self, make_manager, conformance_target, muai_workdir):
        target = conformance_target
        if target.reference is None:
            pytest.skip("the target names no reference backend")
        registry = PluginRegistry()
        registry.load_entry_points()
        if target.reference not in registry.backend_names():
            pytest.skip(f"the reference backend {target.reference!r} is not installed")
        if not registry.backend(target.reference).available().available:
            pytest.skip(f"the reference backend {target.reference!r} is not available here")
        registry.register(CountingBackend(PARTNER), PARTNER)
        manager, _, _ = make_manager()
        path = muai_workdir / f"conformance-{target.reference}.yaml"
        path.write_text(yaml.safe_dump(_merged(target.config, (target.reference, PARTNER), False)), encoding="utf-8")
        reference = ModelManager(backend=target.reference, config_path=path, registry=registry)
        try:
            for prompt in (target.prompt, target.prompt.split()[0], f"{target.prompt} {target.prompt}"):
                kwargs = {"max_new_tokens": self.new_tokens, "ignore_eos": True}
                expected = reference.generate_result(target.model, prompt, **kwargs)
                assert expected.backend == target.reference, reference.explain(target.model)
                assert manager.generate_result(target.model, prompt, **kwargs).token_ids == expected.token_ids, prompt
        finally:
            reference.unload_model(target.model)

    def test_greedy_generation_is_deterministic(self, make_manager, conformance_target):
        manager, _, _ = make_manager()
        first, second = (self.generate(manager, conformance_target).token_ids for _ in range(2))
        assert first == second

    def test_sampling_with_a_seed_is_reproducible(self, make_manager, conformance_target):
        manager, _, _ = make_manager()
        runs = [
            self.generate(manager, conformance_target, do_sample=True, temperature=1.5, top_p=0.9, seed=7).token_ids
            for _ in range(2)
        ]
        assert runs[0] == runs[1]

    def test_streamer_receives_the_completion(self, make_manager, conformance_target):
        manager, _, _ = make_manager()
        pieces: list[str] = []
        result = self.generate(manager, conformance_target, streamer=pieces.append, return_full_text=False)
        assert "".join(pieces) == result.completion

    def test_stream_yields_the_completion_then_the_result(self, make_manager, conformance_target):
        manager, _, _ = make_manager()
        target = conformance_target
        stream = manager.stream(target.model, target.prompt, max_new_tokens=self.new_tokens, return_full_text=False)
        pieces = list(stream)
        assert all(pieces) and "".join(pieces) == stream.result.completion
        assert stream.result.backend == target.name and stream.result.finish_reason in FINISH_REASONS
        assert stream.result.token_ids == self.generate(manager, target).token_ids

    def test_leaving_a_stream_early_frees_the_model(self, make_manager, conformance_target):
        manager, _, _ = make_manager()
        target = conformance_target
        for _ in manager.stream(target.model, target.prompt, max_new_tokens=self.long_budget, ignore_eos=True):
            break
        assert self.generate(manager, target).token_ids
        _assert_unloads_at_once(manager, target.model)

    def test_async_generation_matches_and_does_not_block_the_loop(self, make_manager, conformance_target):
        manager, _, _ = make_manager()
        target = conformance_target
        expected = self.generate(manager, target, return_full_text=False)
        in_flight, answered = threading.Event(), threading.Event()

        def streamer(piece: str) -> None:
            in_flight.set()
            answered.wait(ASYNC_WAIT_S)  # only another coroutine sets it: this times out if agenerate blocks

        async def other_coroutine() -> None:
            while not in_flight.is_set():
                await asyncio.sleep(0.001)
            answered.set()

        async def main() -> tuple[str, list[str], GenerationResult | None]:
            kwargs = {"max_new_tokens": self.new_tokens, "return_full_text": False}
            started = time.perf_counter()
            text, _ = await asyncio.gather(
                manager.agenerate(target.model, target.prompt, streamer=streamer, **kwargs), other_coroutine()
            )
            assert time.perf_counter() - started < ASYNC_WAIT_S, "agenerate blocked the event loop"
            stream = manager.astream(target.model, target.prompt, **kwargs)
            return text, [piece async for piece in stream], stream.result

        text, pieces, result = asyncio.run(asyncio.wait_for(main(), 4 * ASYNC_WAIT_S))
        assert text == expected.text and "".join(pieces) == expected.completion
        assert result is not None and result.backend == target.name and result.token_ids == expected.token_ids

    def test_cancelling_async_generation_stops_it_and_frees_the_model(self, make_manager, conformance_target):
        manager, _, _ = make_manager()
        target = conformance_target
        pieces: list[str] = []

        def slow_streamer(piece: str) -> None:
            pieces.append(piece)
            time.sleep(CANCEL_GRACE_S)  # the cancellation lands meanwhile: no piece follows

        async def main() -> None:
            task = asyncio.create_task(
                manager.agenerate(
                    target.model,
                    target.prompt,
                    max_new_tokens=self.long_budget,
                    ignore_eos=True,
                    streamer=slow_streamer,
                )
            )
            while not pieces and not task.done():
                await asyncio.sleep(0.001)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(asyncio.wait_for(main(), 4 * ASYNC_WAIT_S))
        assert len(pieces) <= 1, "generation went on after the task was cancelled"
        _assert_unloads_at_once(manager, target.model)

    def test_a_batch_answers_each_prompt_as_it_would_alone(self, make_manager, conformance_target):
        manager, _, _ = make_manager()
        target = conformance_target
        prompts = [target.prompt, target.prompt.split()[0], f"{target.prompt} {target.prompt}"]
        kwargs = {"max_new_tokens": self.new_tokens}
        alone = [manager.generate_result(target.model, p, **kwargs) for p in prompts]
        batch = manager.generate_result(target.model, prompts, **kwargs)
        assert [(r.text, r.token_ids, r.finish_reason) for r in batch] == [
            (r.text, r.token_ids, r.finish_reason) for r in alone
        ]
        assert manager.generate(target.model, prompts, **kwargs) == [r.text for r in alone]

    def test_a_bad_prompt_fails_a_batch_by_index_before_any_work(self, make_manager, conformance_target):
        manager, _, monitor = make_manager()
        with pytest.raises(InvalidInputError, match=r"prompts\[1\] of the batch \(counting from 0\)"):
            manager.generate(conformance_target.model, [conformance_target.prompt, ""])
        assert monitor.inferences() == [] and manager.loaded_models() == []

    @pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
    def test_a_stop_string_ends_generation_and_is_not_returned(self, make_manager, conformance_target, streamed):
        manager, _, _ = make_manager()
        free = self.generate(manager, conformance_target, ignore_eos=True, max_new_tokens=8)
        stop = _stop_string_in(free.completion)
        if stop is None:
            pytest.skip(f"the completion {free.completion!r} has no two whole characters to stop at")
        pieces: list[str] = []
        streamer = pieces.append if streamed else None
        result = self.generate(
            manager, conformance_target, ignore_eos=True, max_new_tokens=8, stop=[stop, "\x00never"], streamer=streamer
        )
        assert result.finish_reason == "stop"
        assert result.completion == free.completion[: free.completion.index(stop)]
        assert result.text == self.full_text(conformance_target, result.completion)
        assert result.token_ids == free.token_ids[: len(result.token_ids)]
        before = len(result.token_ids) - 1  # the token that completed the stop string is the last one generated
        if before:
            shorter = self.generate(manager, conformance_target, ignore_eos=True, max_new_tokens=before, stop=stop)
            assert shorter.finish_reason == "length", "generation went on after the stop string"
        if streamed:
            assert "".join(pieces) == result.completion, "a streamed piece showed (part of) the stop string"

    def test_stop_token_ids_end_generation(self, make_manager, conformance_target):
        manager, _, _ = make_manager()
        free = self.generate(manager, conformance_target, ignore_eos=True).token_ids
        stop_id = free[2]
        result = self.generate(manager, conformance_target, ignore_eos=True, stop_token_ids=stop_id)
        assert result.token_ids == free[: free.index(stop_id) + 1] and result.finish_reason == "stop"

    def test_min_new_tokens_holds_stop_tokens_back(self, make_manager, conformance_target):
        manager, _, _ = make_manager()
        first = self.generate(manager, conformance_target, ignore_eos=True).token_ids[0]
        result = self.generate(manager, conformance_target, stop_token_ids=[first], min_new_tokens=3)
        assert first not in result.token_ids[:3] and len(result.token_ids) >= 3
        assert result.finish_reason in ("stop", "eos", "length")
        assert (result.finish_reason == "stop") == (result.token_ids[-1] == first)

    def test_repetition_penalty_changes_greedy_output(self, make_manager, conformance_target):
        # greedy decoding soon repeats a token of the prompt or of its own output; a strong penalty then picks another
        manager, _, _ = make_manager()
        run = lambda **kw: self.generate(manager, conformance_target, ignore_eos=True, max_new_tokens=16, **kw)  # noqa: E731
        plain = run().token_ids
        assert run(repetition_penalty=1.0).token_ids == plain
        assert run(repetition_penalty=100.0).token_ids != plain

    @pytest.mark.parametrize(
        "kwargs",
        [{"temperature": -1.0, "do_sample": True}, {"top_p": 0.0, "do_sample": True}, {"max_new_tokens": 0},
         {"max_new_tokens": 10**9}, {"unknown": 1}, {"stop": ""}, {"stop_token_ids": [-1]},
         {"stop_token_ids": [10**9]}, {"min_new_tokens": -1}, {"repetition_penalty": 0.0}],
        ids=["temperature", "top_p", "no-tokens", "beyond-context", "unknown-argument", "empty-stop",
             "negative-stop-id", "stop-id-beyond-vocab", "min-new-tokens", "repetition-penalty"],
    )  # fmt: skip
    def test_generate_rejects_bad_input(self, make_manager, conformance_target, kwargs):
        manager, _, monitor = make_manager()
        with pytest.raises(InvalidInputError):
            self.generate(manager, conformance_target, **kwargs)
        assert monitor.fallback_events() == [], "bad input must not fall back to another backend"

    def test_unload_frees_the_model(self, make_manager, conformance_target):
        manager, _, _ = make_manager()
        self.generate(manager, conformance_target)
        held = _weak_references(manager.get_model(conformance_target.model).handle)
        assert manager.unload_model(conformance_target.model)
        gc.collect()
        alive = [name for name, ref in held.items() if ref() is not None]
        assert not alive, f"still referenced after unload: {alive}"

    def test_falls_back_when_loading_fails(self, make_manager, conformance_target):
        manager, _, monitor = make_manager(break_hook="muai_load_model")
        result = self.generate(manager, conformance_target)
        assert manager.get_model(conformance_target.model).backend_name == PARTNER and result.token_ids
        [event] = monitor.fallback_events()
        assert (event.from_backend, event.to_backend, event.stage) == (conformance_target.name, PARTNER, "load")

    def test_falls_back_when_generation_fails_and_releases_its_model(self, make_manager, conformance_target):
        manager, _, monitor = make_manager(break_hook="muai_generate")
        loaded = manager.load_model(conformance_target.model)
        held = _weak_references(loaded.handle)
        del loaded
        self.generate(manager, conformance_target)
        assert manager.get_model(conformance_target.model).backend_name == PARTNER
        assert [e.stage for e in monitor.fallback_events()] == ["generate"]
        gc.collect()
        assert all(ref() is None for ref in held.values()), "the failed backend's model was not released"

    def test_failure_without_fallback_is_a_muai_error_with_the_cause(self, make_manager, conformance_target):
        manager, _, monitor = make_manager(fallback=False, break_hook="muai_load_model")
        with pytest.raises(ModelLoadError) as caught:
            manager.load_model(conformance_target.model)
        assert isinstance(caught.value.__cause__, InjectedFault) and monitor.fallback_events() == []

    def test_takes_over_when_the_backend_before_it_fails(self, make_manager, conformance_target):
        manager, _, monitor = make_manager(chain=("faulty", conformance_target.name))
        self.generate(manager, conformance_target)
        assert manager.get_model(conformance_target.model).backend_name == conformance_target.name
        assert [(e.from_backend, e.to_backend) for e in monitor.fallback_events()] == [
            ("faulty", conformance_target.name)
        ]

    def test_an_encoder_decoder_model_it_cannot_run_goes_to_the_next_backend(
        self, make_manager, conformance_target, muai_workdir
    ):
        if conformance_target.seq2seq or conformance_target.runs_seq2seq:
            pytest.skip("the backend runs encoder-decoder models")
        model = str(_encoder_decoder_stub(muai_workdir / "t5-stub"))
        manager, _, _ = make_manager()
        assert manager.load_model(model).backend_name == PARTNER
        refused = [a for a in manager.explain(model) if a.backend == conformance_target.name]
        assert refused and refused[0].outcome == "failed" and "encoder-decoder" in refused[0].reason, refused
        manager.unload_model(model)
        assert manager.load_model(model, "seq2seq").backend_name == PARTNER, "model_type 'seq2seq' must fall back"
        refused = [a for a in manager.explain(model) if a.backend == conformance_target.name]
        assert refused and "seq2seq" in refused[0].reason, refused


def _encoder_decoder_stub(path: Path) -> Path:
    """A model directory whose config.json says T5 (encoder-decoder), with a small safetensors file."""
    import json
    import struct

    path.mkdir(parents=True, exist_ok=True)
    config = {"model_type": "t5", "is_encoder_decoder": True, "architectures": ["T5ForConditionalGeneration"],
              "vocab_size": 8, "d_model": 4, "num_layers": 1, "num_heads": 1, "d_kv": 4, "d_ff": 4,
              "eos_token_id": 1, "pad_token_id": 0, "decoder_start_token_id": 0}  # fmt: skip
    (path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    header = json.dumps({"shared.weight": {"dtype": "F32", "shape": [8, 4], "data_offsets": [0, 128]}}).encode()
    (path / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(128))
    return path


def _assert_unloads_at_once(manager: ModelManager, model: str) -> None:
    """The model is in no request's use: unloading releases it now, not when some request ends."""
    held = _weak_references(manager.get_model(model).handle)
    assert manager.unload_model(model)
    gc.collect()
    alive = [name for name, ref in held.items() if ref() is not None]
    assert not alive, f"still referenced after unload (a request still holds the model?): {alive}"


def _stop_string_in(completion: str) -> str | None:
    """Two characters from the second half of ``completion`` (not an incomplete character), or None."""
    for start in range(len(completion) // 2, len(completion) - 1):
        candidate = completion[start : start + 2]
        if "\ufffd" not in candidate:
            return candidate
    return None


def _failing(hook: str) -> Callable[..., Any]:
    """A hook implementation that raises ``InjectedFault``, with the argument names pluggy expects."""
    message = f"{hook} broken by the conformance suite"
    if hook == "muai_load_model":

        def broken_load(request: Any) -> Any:
            raise InjectedFault(message)

        return hookimpl(broken_load)

    def broken_run(model: Any, request: Any) -> Any:
        raise InjectedFault(message)

    return hookimpl(broken_run)


def _merged(config: Mapping[str, Any], chain: tuple[str, ...], fallback: bool) -> dict[str, Any]:
    merged = dict(config)
    backend = dict(merged.get("backend") or {})
    backend["default"] = chain[0]
    backend["priority"] = list(chain[1:])
    for name in chain:
        backend[name] = {**(backend.get(name) or {}), "enable_fallback": fallback}
    merged["backend"] = backend
    return merged


def _weak_references(handle: Any) -> dict[str, weakref.ref]:
    """Weak references to the handle and to each attribute of it that allows one."""
    candidates = {"handle": handle}
    candidates.update({f"handle.{k}": v for k, v in getattr(handle, "__dict__", {}).items()})
    held = {}
    for name, value in candidates.items():
        try:
            held[name] = weakref.ref(value)
        except TypeError:
            continue
    assert "handle" in held, f"{type(handle).__name__} handles must allow weak references (drop __slots__)"
    return held
