"""The Ray Serve ingress in front of the replicas: each HTTP request goes to a replica through a deployment handle.

A replica that dies before its answer starts is replaced by another (``ATTEMPTS`` in all); past that, or once a
streamed answer has started, the client gets a 503 in OpenAI's error shape (in the stream: an error event and
``[DONE]``) instead of a cut connection or Ray's bare 500.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ray import serve
from ray.exceptions import RayActorError
from ray.serve.exceptions import RayServeException
from ray.serve.handle import DeploymentHandle

from muai_core.serving.answers import DONE, event
from muai_core.serving.errors import ApiError

log = logging.getLogger("muai.serve")

#: Replicas one request is tried on before it is answered with a 503.
ATTEMPTS = 3
#: The parts of an HTTP scope that travel to the replica (the rest belongs to this process).
SCOPE_KEYS = ("type", "asgi", "http_version", "method", "scheme", "path", "raw_path", "query_string", "headers")
SCOPE_KEYS += ("client", "server")
REPLICA_LOST = ApiError(
    503, "the replica serving this request stopped; retry it", "service_unavailable", code="replica_unavailable"
)

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


@serve.deployment(name="muai", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1024)
@serve.ingress()
class MuaiGateway:
    """Ray Serve's HTTP proxy hands requests here; ``replicas`` answer them."""

    def __init__(self, replicas: DeploymentHandle, max_request_bytes: int) -> None:
        self.replicas = replicas.options(method_name="asgi", stream=True)
        self.max_request_bytes = max_request_bytes

    def __serve_build_asgi_app__(self) -> Callable[[dict[str, Any], Receive, Send], Awaitable[None]]:
        async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:  # a function: ASGI 3 to uvicorn
            await self.route(scope, receive, send)

        return app

    async def route(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        body = await self._body(receive)
        if body is None:
            limit = self.max_request_bytes
            await _send_error(
                send, ApiError(413, f"the request body is larger than this server accepts ({limit} bytes)")
            )
            return
        request = {key: scope[key] for key in SCOPE_KEYS if key in scope}
        for attempt in range(1, ATTEMPTS + 1):
            sent = _Sent()
            try:
                async for message in self.replicas.remote(request, body):
                    await send(message)
                    sent.note(message)
                return
            except (RayActorError, RayServeException) as exc:
                where = f"{scope['method']} {scope['path']}"
                log.warning("muai serve: replica lost on attempt %d of %s: %s", attempt, where, exc)
                if sent.started:
                    await sent.cut_short(send)
                    return
        await _send_error(send, REPLICA_LOST)

    async def _body(self, receive: Receive) -> bytes | None:
        """The request's body; None past ``max_request_bytes`` (the replicas check the exact limit again)."""
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if len(body) > self.max_request_bytes:
                return None
            if not message.get("more_body"):
                return bytes(body)


class _Sent:
    """What of an answer has reached the client."""

    def __init__(self) -> None:
        self.started = self.streamed = self.finished = False

    def note(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            self.streamed = (b"content-type", b"text/event-stream") in [
                (name.lower(), value.split(b";")[0]) for name, value in message.get("headers", [])
            ]
        elif message["type"] == "http.response.body" and not message.get("more_body"):
            self.finished = True

    async def cut_short(self, send: Send) -> None:
        """End an answer already started: a stream with the error event and ``[DONE]``, any other as it is."""
        if not self.finished:
            await send(
                {"type": "http.response.body", "body": event(REPLICA_LOST.body()) + DONE if self.streamed else b""}
            )


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _send_error(send: Send, error: ApiError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(name.lower().encode(), value.encode()) for name, value in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
