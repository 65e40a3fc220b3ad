"""A replica's ASGI bridge without a cluster: the app's messages come back, and cancelling the call (what Ray does
when the client leaves) stops the generation."""

from __future__ import annotations

import asyncio
import json
import time

from muai_core.serving.ray_replica import MuaiReplica
from tests.ray.conftest import LONG_MODEL, MODEL

BUDGET = 4000


def scope(path: str) -> dict:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000), "headers": [(b"content-type", b"application/json")],
    }  # fmt: skip


def test_the_replica_answers_through_asgi_messages(ray_config):
    replica = MuaiReplica.func_or_class(ray_config, None, [MODEL])
    body = json.dumps({"model": MODEL, "prompt": "Hi", "max_tokens": 3}).encode()

    async def call() -> list[dict]:
        return [message async for message in replica.asgi(scope("/v1/completions"), body)]

    messages = asyncio.run(call())
    assert messages[0]["type"] == "http.response.start" and messages[0]["status"] == 200
    answer = json.loads(b"".join(m.get("body", b"") for m in messages[1:]))
    assert answer["usage"]["completion_tokens"] == 3


def test_cancelling_a_streamed_call_stops_its_generation(ray_config):
    replica = MuaiReplica.func_or_class(ray_config, None, [LONG_MODEL])
    request = {"model": LONG_MODEL, "prompt": "Once", "max_tokens": BUDGET, "stream": True, "ignore_eos": True}

    async def leave_after_the_first_tokens() -> None:
        first = asyncio.Event()

        async def consume() -> None:
            async for message in replica.asgi(scope("/v1/completions"), json.dumps(request).encode()):
                if b'"text"' in message.get("body", b""):
                    first.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(first.wait(), 60)
        task.cancel()  # as Ray cancels the call when the client disconnects
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(leave_after_the_first_tokens())
    monitor = replica.manager.performance_monitor
    deadline = time.monotonic() + 60
    while not monitor.inferences(model_name=LONG_MODEL):
        assert time.monotonic() < deadline, "the cancelled generation never ended"
        time.sleep(0.1)
    assert monitor.inferences(model_name=LONG_MODEL)[-1].tokens_generated < BUDGET / 2
