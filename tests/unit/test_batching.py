"""The step batcher: concurrent sequences share batches, wait for room in order, fail and cancel cleanly."""

from __future__ import annotations

import threading
import time
from functools import partial

import numpy as np
import pytest

from muai_core import batching
from muai_core.batching import Cancelled, Chunk, StepBatcher
from muai_core.contracts import GenerationRequest
from muai_core.decoding import decode_loop
from muai_core.errors import InferenceError, ResourceExhausted, UnsupportedRequest
from muai_core.testing.threads import in_threads as run_in_threads

in_threads = partial(run_in_threads, timeout_s=30)

VOCAB = 50


class CountingEngine:
    """A toy model: the logits after a token favour a token computed from the whole history fed so far.

    Room is counted in positions (``capacity``); every batch is recorded.
    """

    def __init__(self, capacity: int = 10_000, fail_on: int | None = None) -> None:
        self.capacity, self.used = capacity, 0
        self.fail_on = fail_on  # a token that makes the batch holding it fail
        self.batches: list[list[Chunk]] = []
        self.released: list[int] = []

    def admit(self, sequence, tokens) -> bool:
        if sequence.longest > self.capacity:
            raise UnsupportedRequest(f"{sequence.longest} positions never fit in {self.capacity}")
        if self.used + sequence.longest > self.capacity:
            return False
        self.used += sequence.longest
        sequence.state = []
        return True

    def run(self, chunks):
        time.sleep(0.002)  # a step takes a while, as a real one does: steps of other threads pile up
        self.batches.append(list(chunks))
        rows = []
        for chunk in chunks:
            assert chunk.start == len(chunk.sequence.state), "a chunk must start where its sequence left off"
            if self.fail_on is not None and self.fail_on in chunk.tokens:
                raise RuntimeError("injected fault")
            chunk.sequence.state.extend(int(t) for t in chunk.tokens)
            if chunk.last:
                rows.append(expected_logits(chunk.sequence.state))
        return rows

    def release(self, sequence) -> None:
        self.used -= sequence.longest
        self.released.append(sequence.id)


def expected_logits(history: list[int]) -> np.ndarray:
    logits = np.zeros(VOCAB, dtype=np.float32)
    logits[(sum(history) * 7 + len(history)) % VOCAB] = 1.0
    return logits


def alone(prompt: list[int], new: int) -> list[int]:
    history, out = list(prompt), []
    for _ in range(new):
        token = int(np.argmax(expected_logits(history)))
        out.append(token)
        history.append(token)
    return out


def generate(batcher: StepBatcher, prompt: list[int], new: int, cancel: threading.Event | None = None):
    request = GenerationRequest(prompt="x", max_new_tokens=new, ignore_eos=True, cancel=cancel)
    with batcher.sequence(len(prompt) + new, cancel) as step:
        return decode_loop(step, prompt, request, lambda ids: " ".join(map(str, ids)))


def test_concurrent_sequences_share_batches_and_each_gets_its_own_tokens() -> None:
    engine = CountingEngine()
    batcher = StepBatcher(engine)
    prompts = [[i + 1] * (3 + i) for i in range(6)]
    results = in_threads(6, lambda i: generate(batcher, prompts[i], 12))
    for prompt, result in zip(prompts, results, strict=True):
        assert list(result.token_ids) == alone(prompt, 12)
    assert max(len(batch) for batch in engine.batches) > 1, "steps of different sequences never shared a batch"
    assert len(engine.batches) < 6 * 12
    assert engine.used == 0 and sorted(engine.released) == list(range(6))
    assert batcher.stats()["running"] == 0 and batcher.stats()["peak_running"] > 1


def test_long_prompts_are_cut_to_the_batch_budget() -> None:
    engine = CountingEngine()
    batcher = StepBatcher(engine, max_batch_tokens=8)
    prompt = list(range(1, 30))
    result = generate(batcher, prompt, 3)
    assert list(result.token_ids) == alone(prompt, 3)
    assert [len(chunk.tokens) for batch in engine.batches[:4] for chunk in batch] == [8, 8, 8, 5]
    assert all(sum(len(c.tokens) for c in batch) <= 8 for batch in engine.batches)


def test_a_sequence_waits_for_room_then_runs_and_reports_its_wait() -> None:
    engine = CountingEngine(capacity=20)  # one sequence of 20 positions at a time
    batcher = StepBatcher(engine)
    results = in_threads(3, lambda i: generate(batcher, [i + 1] * 4, 16))
    for i, result in enumerate(results):
        assert list(result.token_ids) == alone([i + 1] * 4, 16)
    assert max(len(batch) for batch in engine.batches) == 1
    assert engine.used == 0


def test_queue_wait_is_measured_on_the_sequence() -> None:
    engine = CountingEngine(capacity=20)
    batcher = StepBatcher(engine)
    waits: list[float] = []

    def work(index: int):
        request = GenerationRequest(prompt="x", max_new_tokens=16, ignore_eos=True)
        with batcher.sequence(20) as step:
            decode_loop(step, [index + 1] * 4, request, str)
            waits.append(step.queue_wait_s)

    in_threads(2, work)
    assert min(waits) < 0.01 < max(waits), waits


def test_a_sequence_that_never_fits_is_unsupported_and_others_run() -> None:
    engine = CountingEngine(capacity=20)
    batcher = StepBatcher(engine)
    with pytest.raises(UnsupportedRequest, match="never fit"):
        generate(batcher, [1] * 30, 5)
    assert list(generate(batcher, [2] * 4, 5).token_ids) == alone([2] * 4, 5)


def test_past_max_waiting_the_last_to_come_are_refused() -> None:
    engine = CountingEngine(capacity=20)  # room for one sequence at a time
    batcher = StepBatcher(engine, max_waiting=1)
    results = in_threads(4, lambda i: generate(batcher, [i + 1] * 4, 16))
    refused = [r for r in results if isinstance(r, ResourceExhausted)]
    answered = [r for r in results if not isinstance(r, Exception)]
    assert len(refused) == 2 and len(answered) == 2, results  # one runs, one waits, two are refused
    assert "1 requests already wait" in str(refused[0]) and "max_waiting" in str(refused[0])
    assert engine.used == 0 and batcher.stats()["running"] == batcher.stats()["waiting"] == 0


def test_max_waiting_zero_refuses_only_when_there_is_no_room() -> None:
    engine = CountingEngine(capacity=200)
    batcher = StepBatcher(engine, max_waiting=0)
    results = in_threads(4, lambda i: generate(batcher, [i + 1] * 4, 16))
    assert [list(r.token_ids) for r in results] == [alone([i + 1] * 4, 16) for i in range(4)]


def test_decoding_sequences_ride_every_batch(monkeypatch) -> None:
    monkeypatch.setattr(batching, "GATHER_S", 5.0)  # however busy the machine, no thread counts as late
    engine = CountingEngine()
    batcher = StepBatcher(engine)
    prompts = [[i + 1] * 3 for i in range(6)]
    in_threads(6, lambda i: generate(batcher, prompts[i], 40))
    steps = [len(batch) for batch in engine.batches]
    # sequences join as they arrive and leave as they end, never missing a step in between: the batch sizes
    # rise, then fall. Not waiting for threads whose logits were still untaken made ~60-70 batches, alternating.
    peak = steps.index(6)
    assert steps[:peak] == sorted(steps[:peak]) and steps[peak:] == sorted(steps[peak:], reverse=True), steps
    assert len(steps) <= 40 + 6, steps


def test_cancelling_a_queued_sequence_frees_its_place() -> None:
    engine = CountingEngine(capacity=20)
    batcher = StepBatcher(engine)
    cancel = threading.Event()
    started = threading.Event()
    results: dict[str, object] = {}

    def first() -> None:  # holds the room until the second request is cancelled
        request = GenerationRequest(prompt="x", max_new_tokens=16, ignore_eos=True, streamer=lambda _: cancel.wait(5))
        with batcher.sequence(20) as step:
            started.set()
            results["first"] = decode_loop(step, [1] * 4, request, str, eos_ids=())

    thread = threading.Thread(target=first)
    thread.start()
    started.wait(5)
    time.sleep(0.01)
    timer = threading.Timer(0.02, cancel.set)
    timer.start()
    second = generate(batcher, [2] * 4, 16, cancel)  # waits for room, then is cancelled
    thread.join(10)
    assert second.finish_reason == "stopped" and second.token_ids == ()
    assert results["first"].new_tokens == 16
    assert batcher.stats()["waiting"] == 0 and engine.used == 0


def test_cancel_raises_cancelled_from_a_waiting_step() -> None:
    engine = CountingEngine(capacity=0)  # never any room: the step waits
    engine.admit = lambda sequence, tokens: False
    batcher = StepBatcher(engine)
    cancel = threading.Event()
    threading.Timer(0.05, cancel.set).start()
    with batcher.sequence(4, cancel) as step, pytest.raises(Cancelled):
        step(np.array([[1, 2]]))
    assert batcher.stats()["waiting"] == 0


def test_a_failed_batch_fails_each_of_its_sequences_and_the_rest_finish() -> None:
    engine = CountingEngine(fail_on=49)
    batcher = StepBatcher(engine)
    prompts = [[49, 1, 1], [2, 2, 2], [3, 3, 3, 3]]
    results = in_threads(3, lambda i: generate(batcher, prompts[i], 8))
    assert isinstance(results[0], InferenceError) and "injected fault" in str(results[0])
    failed = [r for r in results if isinstance(r, Exception)]
    for prompt, result in zip(prompts, results, strict=True):
        if not isinstance(result, Exception):
            assert list(result.token_ids) == alone(prompt, 8)
    assert len({id(r) for r in failed}) == len(failed), "each thread raises an exception object of its own"
    assert engine.used == 0


def test_cached_prefix_is_not_fed_again() -> None:
    engine = CountingEngine()
    admit = engine.admit

    def admit_with_cache(sequence, tokens) -> bool:
        admit(sequence, tokens)
        sequence.cached = 3
        sequence.state = [int(t) for t in tokens[:3]]  # the engine holds them already
        return True

    engine.admit = admit_with_cache
    batcher = StepBatcher(engine)
    prompt = [5, 6, 7, 8, 9]
    assert list(generate(batcher, prompt, 4).token_ids) == alone(prompt, 4)
    first = engine.batches[0][0]
    assert first.start == 3 and list(first.tokens) == [8, 9]
