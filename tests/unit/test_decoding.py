"""``token_loop``: an engine's own generation loop, run as ``muai_generate``."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from muai_core.contracts import GenerationRequest
from muai_core.decoding import token_loop
from muai_core.errors import PartialGeneration


def decode(ids):
    return "".join(chr(ord("a") + i) for i in ids if i != 9)  # id 9 is the EOS, a special token


class Engine:
    """Counts up from the last id it was given, for ever; remembers what it was given and whether it was closed."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at, self.given, self.closed = fail_at, None, False

    def __call__(self, ids, budget):
        self.given = (list(ids), budget)
        return self._tokens(ids[-1])

    def _tokens(self, last):
        try:
            while True:
                last += 1
                if last == self.fail_at:
                    raise RuntimeError("engine fault")
                yield last
        finally:
            self.closed = True


def run(engine, prompt_ids=(0,), **kwargs):
    request = GenerationRequest.from_kwargs("a", **kwargs)
    return token_loop(engine, list(prompt_ids), request, decode, eos_ids={9}, context_length=64)


def test_ends_on_eos_without_its_text_and_closes_the_engine():
    engine = Engine()
    pieces = []
    result = run(engine, prompt_ids=(5,), max_new_tokens=10, streamer=pieces.append, return_full_text=False)
    assert result.token_ids == (6, 7, 8, 9) and result.finish_reason == "eos"
    assert result.completion == "".join(pieces) == "ghi"
    assert len(result.token_latencies_s) == 3 and result.ttft_s >= 0
    assert engine.given == ([5], 10) and engine.closed


def test_a_stop_string_or_the_budget_closes_the_engine():
    engine = Engine()
    result = run(engine, max_new_tokens=10, stop="cd")
    assert result.token_ids == (1, 2, 3) and result.finish_reason == "stop" and result.completion == "b"
    assert engine.closed
    engine = Engine()
    assert run(engine, max_new_tokens=2).finish_reason == "length" and engine.closed


def test_min_new_tokens_keeps_an_early_stop_token_from_ending_generation():
    result = run(Engine(), max_new_tokens=6, stop_token_ids=[1, 3], min_new_tokens=2)
    assert result.token_ids == (1, 2, 3) and result.finish_reason == "stop"


def test_ignore_eos_goes_on_past_an_eos_the_engine_yields():
    assert run(Engine(), prompt_ids=(7,), max_new_tokens=4, ignore_eos=True).token_ids == (8, 9, 10, 11)


def test_an_engine_that_ends_early_ends_generation():
    result = run(lambda ids, budget: iter([1, 2]), max_new_tokens=5)
    assert result.token_ids == (1, 2) and result.finish_reason == "length"


def test_a_resumed_generation_continues_after_its_resume_ids():
    engine = Engine()
    request = dataclasses.replace(GenerationRequest.from_kwargs("a", max_new_tokens=4), resume_ids=(1, 2))
    result = token_loop(engine, [0], request, decode, eos_ids={9})
    assert engine.given == ([0, 1, 2], 2)
    assert result.token_ids == (1, 2, 3, 4) and result.completion == "bcde"


def test_an_engine_failure_is_a_partial_generation_with_what_it_produced():
    engine = Engine(fail_at=4)
    with pytest.raises(PartialGeneration) as caught:
        run(engine, max_new_tokens=8)
    assert caught.value.produced_ids == (1, 2, 3) and isinstance(caught.value.__cause__, RuntimeError)
    assert engine.closed


def test_a_cancelled_request_without_a_streamer_stops_at_the_next_token():
    cancel = threading.Event()
    engine = Engine()
    ids = iter(range(1000))

    def cancel_after_three(prompt, budget):
        for token in engine(prompt, budget):
            if next(ids) == 3:
                cancel.set()
            yield token

    request = dataclasses.replace(GenerationRequest.from_kwargs("a", max_new_tokens=500), cancel=cancel)
    result = token_loop(cancel_after_three, [0], request, decode)
    assert result.finish_reason == "stopped" and result.token_ids == (1, 2, 3, 4) and engine.closed


def test_an_engine_that_fails_to_close_does_not_turn_a_finished_run_into_a_failure(caplog):
    def engine(ids, budget):
        try:
            while True:
                yield 1
        finally:
            raise OSError("cannot stop")  # noqa: B012 - an engine whose close fails

    result = token_loop(engine, [0], GenerationRequest.from_kwargs("a", max_new_tokens=3), decode)
    assert result.token_ids == (1, 1, 1) and result.finish_reason == "length"
    assert "the engine failed to stop its generation: OSError: cannot stop" in caplog.text
