"""Continuous batching for backends whose decode steps can run many sequences in one call.

Each generation keeps its own thread and its own ``decode_loop``; its step hands the tokens to a
``StepBatcher``, which runs the steps waiting at that moment, of every sequence of the model, as one batch.
No thread of its own: the first thread that finds no batch running runs the next one for everybody (and
goes on until its own step is done), so one sequence alone runs its steps in its own thread.

A sequence joins between steps: its prompt (cut into chunks of at most ``max_batch_tokens``) runs in the
same call as the other sequences' decode tokens. The engine decides whether a sequence fits (``admit``);
one that does not waits in a bounded queue, in order of arrival.

An engine that also has ``truncate`` can verify speculative tokens: ``BatchedSequence.verify`` feeds several
tokens and gets the logits after each of them, and ``BatchedSequence.truncate`` rolls the sequence back to an
earlier length (the rejected tokens are fed again over, or masked).
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from muai_core.errors import InferenceError, ResourceExhausted, first_line

#: How long the thread running a batch waits for the sequences of the last batch to bring their next token.
GATHER_S = 0.01
#: How often a waiting thread looks at its cancel event.
CANCEL_POLL_S = 0.05


class Cancelled(Exception):
    """A sequence's generation was cancelled while its step waited; ``decode_loop`` ends quietly on it."""


class BatchedSequence:
    """One generation in a batch: call it with the next token ids ([1, n]) to get the logits after the last.

    ``state`` is the engine's own. ``cached`` (set by the engine's ``admit``) is how many leading tokens of
    the first feed the engine already holds (a prefix cache): they are not fed again.
    """

    def __init__(self, batcher: StepBatcher, number: int, longest: int, cancel: threading.Event | None) -> None:
        self.id = number
        self.longest = longest
        self.state: Any = None
        self.cached = 0
        self.queue_wait_s = 0.0
        self._batcher = batcher
        self._cancel = cancel
        self._admitted = False
        self._pending: np.ndarray | None = None  # tokens not yet fed
        self._position = 0  # tokens fed so far
        self._result: np.ndarray | None = None
        self._error: BaseException | None = None
        self._in_flight = False
        self._late = False  # missed the last gather: nobody waits for it
        self._queued_at = 0.0
        self._every = False  # the logits of every token fed are wanted
        self._rows: list[np.ndarray] = []  # those of the chunks fed so far
        self._rolled_back = False  # the engine has not been told of a truncate yet

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        return self._batcher._step(self, np.asarray(ids, dtype=np.int64).reshape(-1))

    @property
    def can_verify(self) -> bool:
        """Whether the engine can verify several tokens at once and roll back (``verify``, ``truncate``)."""
        return callable(getattr(self._batcher.engine, "truncate", None))

    @property
    def length(self) -> int:
        """Tokens fed so far (the position the next token takes)."""
        return self._position

    def verify(self, ids: np.ndarray) -> np.ndarray:
        """Feed ``ids`` ([1, n]) and return the logits after each of them, [n, vocab] (needs ``can_verify``)."""
        return self._batcher._step(self, np.asarray(ids, dtype=np.int64).reshape(-1), every=True)

    def truncate(self, length: int) -> None:
        """Forget the tokens fed after the first ``length``: the next feed continues at ``length``."""
        self._batcher._truncate(self, length)

    @property
    def cancelled(self) -> bool:
        return self._cancel is not None and self._cancel.is_set()

    def _done(self) -> bool:
        return self._result is not None or self._error is not None

    def _take(self) -> np.ndarray:
        error, self._error = self._error, None
        if error is not None:
            raise error
        result, self._result = self._result, None
        return result


@dataclass(frozen=True)
class Chunk:
    """One sequence's part of a batch: ``tokens`` at positions ``start``...; ``last``: logits wanted after it;
    ``every``: the logits after each of its tokens are wanted (a verify step; only for engines with ``truncate``)."""

    sequence: BatchedSequence
    tokens: np.ndarray
    start: int
    last: bool
    every: bool = False

    @property
    def wants_logits(self) -> bool:
        return self.last or self.every


class BatchEngine(Protocol):
    """What a backend implements to batch its decode steps."""

    def admit(self, sequence: BatchedSequence, tokens: np.ndarray) -> bool:
        """Reserve room for ``sequence.longest`` positions (``tokens``: its first feed); set ``sequence.state``.

        False: not now (it waits). Raise ``UnsupportedRequest`` when it can never fit.
        """

    def run(self, chunks: list[Chunk]) -> Sequence[np.ndarray]:
        """Feed every chunk in one batch; for each chunk that ``wants_logits``, in order: the logits after its
        last token ([vocab]), or with ``every`` set, after each of its tokens ([len(tokens), vocab])."""

    def release(self, sequence: BatchedSequence) -> None:
        """Free what ``admit`` reserved; called once, when the sequence ends for any reason."""

    # Optional: ``truncate(sequence, length)``: the sequence's tokens past ``length`` are gone; its next chunk
    # starts at ``length``. Called between batches, before the sequence's next chunk. An engine with it must
    # honour ``Chunk.every``; one without it runs every generation token by token.


class StepBatcher:
    """Runs the decode steps of a model's concurrent generations as batches.

    ``max_batch_tokens``: tokens in one call at most (prompts are cut into chunks to fit; each running
    sequence's decode token always goes in). ``max_waiting``: sequences waiting for admission at most; one
    more raises ``ResourceExhausted``.
    """

    def __init__(self, engine: BatchEngine, *, max_batch_tokens: int = 512, max_waiting: int = 256) -> None:
        self.engine = engine
        self.max_batch_tokens = max_batch_tokens
        self.max_waiting = max_waiting
        self._cond = threading.Condition()
        self._leading = False
        self._numbers = itertools.count()
        self._waiting: deque[BatchedSequence] = deque()
        self._active: list[BatchedSequence] = []
        self._running = False  # an engine call is under way (without the lock)
        self._released: list[BatchedSequence] = []  # released while it ran: handed to the engine after it
        self.peak_running = 0
        self.batches = 0

    @contextmanager
    def sequence(self, longest: int, cancel: threading.Event | None = None) -> Iterator[BatchedSequence]:
        """A sequence of at most ``longest`` positions; its room is freed when the block ends."""
        sequence = BatchedSequence(self, next(self._numbers), longest, cancel)
        try:
            yield sequence
        finally:
            self._close(sequence)

    def stats(self) -> dict[str, int]:
        with self._cond:
            return {
                "running": len(self._active),
                "waiting": len(self._waiting),
                "peak_running": self.peak_running,
                "batches": self.batches,
            }

    def _truncate(self, sequence: BatchedSequence, length: int) -> None:
        with self._cond:
            if sequence._in_flight or sequence._pending is not None or not 0 < length <= sequence._position:
                raise ValueError(f"cannot roll a sequence of {sequence._position} tokens back to {length}")
            if length < sequence._position:
                sequence._position, sequence._rolled_back = length, True

    def _step(self, sequence: BatchedSequence, tokens: np.ndarray, every: bool = False) -> np.ndarray:
        with self._cond:
            if not sequence._admitted and sequence not in self._waiting:
                sequence._queued_at = time.perf_counter()
                self._waiting.append(sequence)
            sequence._pending, sequence._result, sequence._late = tokens, None, False
            sequence._every, sequence._rows = every, []
            self._cond.notify_all()
            while not sequence._done():
                if sequence.cancelled and not sequence._in_flight:
                    self._forget(sequence)
                    raise Cancelled
                if not self._leading:
                    self._leading = True
                    try:
                        self._lead(sequence)
                    finally:
                        self._leading = False
                        self._cond.notify_all()
                else:
                    self._cond.wait(CANCEL_POLL_S if sequence._cancel is not None else None)
            return sequence._take()

    def _lead(self, own: BatchedSequence) -> None:
        """Run batches (holding the lock only between them) until ``own``'s step is done or cancelled."""
        while not own._done() and not (own.cancelled and not own._in_flight):
            self._gather()
            self._admit()
            chunks = self._chunks()
            if not chunks:
                self._cond.wait(CANCEL_POLL_S)
                continue
            for chunk in chunks:
                chunk.sequence._in_flight = True
            self._running, rows, error = True, [], InferenceError("the batched step was interrupted")
            self._cond.release()
            try:
                rows = list(self.engine.run(chunks))
                if len(rows) != sum(chunk.wants_logits for chunk in chunks):
                    raise InferenceError(f"the engine returned {len(rows)} rows of logits for this batch's chunks")
                error = None
            except Exception as exc:
                error = exc
            finally:  # whatever happened, the chunks are settled and the lock held again
                self._cond.acquire()
                self._running = False
                for sequence in self._released:
                    self.engine.release(sequence)
                self._released.clear()
                self._settle(chunks, rows, error)
                self._cond.notify_all()

    def _gather(self) -> None:
        """Wait (briefly) for the sequences that got logits last time to bring their next token."""
        deadline = time.perf_counter() + GATHER_S
        while True:
            missing = [s for s in self._active if s._pending is None and not s._late]
            left = deadline - time.perf_counter()
            if not missing or left <= 0:
                for sequence in missing:
                    sequence._late = True
                return
            self._cond.wait(left)

    def _admit(self) -> None:
        """Admit waiting sequences in order while they fit; past ``max_waiting`` the last to come are refused."""
        while self._waiting and len(self._active) < self.max_batch_tokens:
            sequence = self._waiting[0]
            try:
                if not self.engine.admit(sequence, sequence._pending):
                    break
            except Exception as exc:
                self._waiting.popleft()
                sequence._error = exc
                self._cond.notify_all()
                continue
            self._waiting.popleft()
            sequence._admitted = True
            sequence.queue_wait_s = time.perf_counter() - sequence._queued_at
            sequence._position = sequence.cached
            sequence._pending = sequence._pending[sequence.cached :]
            self._active.append(sequence)
            self.peak_running = max(self.peak_running, len(self._active))
        while len(self._waiting) > self.max_waiting:
            refused = self._waiting.pop()
            refused._error = ResourceExhausted(
                f"the model has no room for this request now: {self.max_waiting} requests already wait for it",
                hint="retry later, or raise the backend's max_waiting (e.g. backend.openvino.max_waiting)",
            )
            self._cond.notify_all()

    def _chunks(self) -> list[Chunk]:
        """Decode tokens first, then prompts (cut to the budget that is left)."""
        ready = [s for s in self._active if s._pending is not None and not s._in_flight]
        ready.sort(key=lambda s: len(s._pending) > 1)
        budget, chunks = self.max_batch_tokens, []
        for sequence in ready:
            take = min(len(sequence._pending), budget)
            if take <= 0 and chunks:
                break
            take = max(take, 1)
            last = take == len(sequence._pending)
            if sequence._rolled_back:
                sequence._rolled_back = False
                try:
                    self.engine.truncate(sequence, sequence._position)
                except Exception as exc:  # that sequence's error, raised in its own thread
                    sequence._pending, sequence._error = None, _batch_error(exc)
                    continue
            chunks.append(Chunk(sequence, sequence._pending[:take], sequence._position, last, sequence._every))
            budget -= take
        return chunks

    def _settle(self, chunks: list[Chunk], rows: Sequence[np.ndarray], error: Exception | None) -> None:
        self.batches += 1
        wanted = iter(rows)
        for chunk in chunks:
            sequence = chunk.sequence
            sequence._in_flight = False
            if error is not None:
                sequence._error = _batch_error(error)
                continue
            sequence._position += len(chunk.tokens)
            if chunk.every:
                sequence._rows.append(np.asarray(next(wanted), dtype=np.float32).reshape(len(chunk.tokens), -1))
            if not chunk.last:
                sequence._pending = sequence._pending[len(chunk.tokens) :]
            elif chunk.every:
                sequence._pending, sequence._result = None, np.concatenate(sequence._rows)
                sequence._rows = []
            else:
                sequence._pending, sequence._result = None, np.array(next(wanted), dtype=np.float32)

    def _forget(self, sequence: BatchedSequence) -> None:
        """Take ``sequence`` out of the queue and the batch and free its room (lock held, not in flight)."""
        if sequence in self._waiting:
            self._waiting.remove(sequence)
        if sequence in self._active:
            self._active.remove(sequence)
            if self._running:  # the engine's bookkeeping is in use: release after its call
                self._released.append(sequence)
            else:
                self.engine.release(sequence)
        sequence._pending = None
        self._cond.notify_all()

    def _close(self, sequence: BatchedSequence) -> None:
        with self._cond:
            while sequence._in_flight:  # its thread left while the batch holding it runs: wait for that batch
                self._cond.wait()
            self._forget(sequence)


def _batch_error(error: Exception) -> Exception:
    """An error of its own for each sequence of a failed batch (one exception object is raised in one thread):
    a copy of ``error`` (same type and message) caused by it, or an ``InferenceError`` where it cannot be copied."""
    try:
        duplicate = copy.copy(error)
    except Exception:
        duplicate = InferenceError(f"{type(error).__name__}: {first_line(error)}")
    duplicate.__cause__ = error
    return duplicate
