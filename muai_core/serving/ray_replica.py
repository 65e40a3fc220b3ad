"""One Ray Serve replica of the server: its own ``ModelManager`` and ``create_app``'s routes (needs Ray Serve).

The gateway hands each HTTP request to a replica as an ASGI scope and body; ``asgi`` runs the app on it and
yields the app's ASGI messages back. Cancelling the call (the client left) cancels the app's request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ray import serve

from muai_core.manager import ModelManager
from muai_core.serving.app import create_app
from muai_core.serving.ray import check_usable


@serve.deployment(name="muai-replica", health_check_period_s=5, health_check_timeout_s=30)
class MuaiReplica:
    """The server on one replica; Ray calls ``check_health`` every few seconds and replaces a replica that fails."""

    def __init__(self, config_path: str, api_key: str | None, preload: Sequence[str]) -> None:
        self.manager = ModelManager(config_path=config_path)
        self.app = create_app(self.manager, api_key=api_key, preload=preload)

    def check_health(self) -> None:
        check_usable(self.manager)

    async def asgi(self, scope: dict[str, Any], body: bytes) -> AsyncIterator[dict[str, Any]]:
        """The app's ASGI messages answering one HTTP request (``scope`` and its whole ``body``)."""
        messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        request = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if request:
                return request.pop()
            return await asyncio.Future()  # never: a client that leaves reaches the app as this call's cancellation

        task = asyncio.ensure_future(self.app(scope, receive, messages.put))
        try:
            while not (task.done() and messages.empty()):
                getting = asyncio.ensure_future(messages.get())
                await asyncio.wait((getting, task), return_when=asyncio.FIRST_COMPLETED)
                if getting.done():
                    yield getting.result()
                else:
                    getting.cancel()
            task.result()
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
