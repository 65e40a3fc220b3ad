"""Generation off the caller's thread: iterator and async streams, and awaitable calls that can be cancelled.

Each generation runs in a thread of its own, with a streamer that hands its pieces to the consumer and
returns ``False`` (stop) once the consumer has left, so the model is free again after one more token.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from muai_core.contracts import GenerationResult, Streamer

T = TypeVar("T")

#: Runs one generation with the given streamer and returns its result.
Start = Callable[[Streamer, threading.Event], GenerationResult]

_PIECE, _DONE, _ERROR = "piece", "done", "error"


def stopping(streamer: Streamer | None, stop: threading.Event) -> Streamer:
    """``streamer`` (if any), answering ``False`` (stop generating) once ``stop`` is set."""

    def call(piece: str) -> bool | None:
        if stop.is_set():
            return False
        return None if streamer is None else streamer(piece)

    return call


class _Worker:
    """One generation in a thread of its own; every message goes to ``emit``, the last being done or error."""

    def __init__(self, start: Start, emit: Callable[[tuple[str, Any]], None]) -> None:
        self.stop = threading.Event()
        self._start, self._emit = start, emit
        self.thread = threading.Thread(target=self._run, name="muai-generate")
        self.thread.start()

    def _run(self) -> None:
        try:
            result = self._start(stopping(lambda piece: self._emit((_PIECE, piece)), self.stop), self.stop)
        except BaseException as exc:  # handed to the consumer, who raises it
            self._emit((_ERROR, exc))
        else:
            self._emit((_DONE, result))


class Stream:
    """The pieces of one generation, as they are decoded: ``for piece in stream: ...``.

    The pieces join to the completion. ``result`` is the ``GenerationResult`` once the last piece has been
    read (``None`` before). Leaving the loop early (``break``, an exception) stops generation after at most
    one more token and returns once the model is free; an error in generation is raised in the loop.
    Generation starts when iteration does. ``close()`` (or ``with``) stops it explicitly.
    """

    def __init__(self, start: Start) -> None:
        self._begin = start
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._worker: _Worker | None = None
        self._finished = False
        self.result: GenerationResult | None = None

    def __iter__(self) -> Iterator[str]:
        if self._worker is None and not self._finished:
            self._worker = _Worker(self._begin, self._queue.put)
        try:
            while not self._finished:
                kind, value = self._queue.get()
                if kind == _PIECE:
                    yield value
                else:
                    self._settle(kind, value)
        finally:
            self.close()

    def close(self) -> None:
        """Stop generating (if it still runs) and wait until the model is free; the result is kept if any."""
        worker, self._worker = self._worker, None
        if worker is None:
            self._finished = True
            return
        worker.stop.set()
        worker.thread.join()
        while not self._finished:
            kind, value = self._queue.get()
            if kind == _DONE:
                self.result = value
            self._finished = kind != _PIECE

    def _settle(self, kind: str, value: Any) -> None:
        self._finished = True
        if kind == _ERROR:
            raise value
        self.result = value

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class AsyncStream:
    """``async for piece in stream``: a ``Stream`` that waits without blocking the event loop.

    Cancelling the consuming task, or leaving the loop and closing the stream (``aclose()``, ``async with``),
    stops generation; both return once the model is free.
    """

    def __init__(self, start: Start) -> None:
        self._begin = start
        self._queue: asyncio.Queue[tuple[str, Any]] | None = None
        self._worker: _Worker | None = None
        self._finished = False
        self.result: GenerationResult | None = None

    def __aiter__(self) -> AsyncIterator[str]:
        return self._pieces()

    async def _pieces(self) -> AsyncIterator[str]:
        if self._worker is None and not self._finished:
            self._queue = asyncio.Queue()
            self._worker = _Worker(self._begin, _threadsafe(self._queue.put_nowait))
        try:
            while not self._finished:
                kind, value = await self._next()
                if kind == _PIECE:
                    yield value
                    continue
                self._finished = True
                if kind == _ERROR:
                    raise value
                self.result = value
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Stop generating (if it still runs) and wait, without blocking the loop, until the model is free."""
        worker, self._worker = self._worker, None
        if worker is None:
            self._finished = True
            return
        worker.stop.set()
        while not self._finished:
            kind, value = await self._next()
            if kind == _DONE:
                self.result = value
            self._finished = kind != _PIECE

    async def _next(self) -> tuple[str, Any]:
        assert self._queue is not None
        return await self._queue.get()

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


async def call_in_thread(work: Callable[[threading.Event], T]) -> T:
    """``work(stop)`` in a thread of its own, awaited without blocking the loop.

    Cancelling the awaiting task sets ``stop`` and waits for ``work`` to return before raising
    ``CancelledError``; ``work`` should stop soon after (e.g. a request whose ``cancel`` is ``stop``).
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    stop = threading.Event()

    def run() -> None:
        try:
            outcome: tuple[str, Any] = (_DONE, work(stop))
        except BaseException as exc:
            outcome = (_ERROR, exc)
        _threadsafe(lambda item: _settle_future(future, item), loop)(outcome)

    threading.Thread(target=run, name="muai-generate").start()
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        stop.set()
        await asyncio.wait({future})
        if not future.cancelled():
            future.exception()  # retrieved: the caller cancelled, so an error after that is no news
        raise


def _settle_future(future: asyncio.Future[Any], item: tuple[str, Any]) -> None:
    kind, value = item
    if future.cancelled():
        return
    if kind == _ERROR:
        future.set_exception(value)
    else:
        future.set_result(value)


def _threadsafe(
    deliver: Callable[[tuple[str, Any]], None], loop: asyncio.AbstractEventLoop | None = None
) -> Callable[[tuple[str, Any]], None]:
    """``deliver`` called on the event loop from any thread; dropped once the loop has closed."""
    loop = loop or asyncio.get_running_loop()

    def call(item: tuple[str, Any]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting any more
            loop.call_soon_threadsafe(deliver, item)

    return call
