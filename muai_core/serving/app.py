"""The ASGI app: OpenAI's chat and completions routes, models, health, metrics and the chat page."""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.exceptions import HTTPException

from muai_core.errors import ConfigurationError
from muai_core.manager import ModelManager
from muai_core.serving import catalogue
from muai_core.serving.answers import DONE, Answer, event
from muai_core.serving.errors import ApiError, from_exception
from muai_core.serving.metrics import ServerMetrics
from muai_core.serving.requests import ParsedRequest, parse_chat, parse_completion
from muai_core.serving.settings import ServeSettings
from muai_core.streaming import AsyncStream

PAGE = Path(__file__).with_name("static") / "index.html"
#: Routes answered without the API key: the health check, and the static page (it holds no data; its calls
#: to the API carry the key the user types in).
OPEN_PATHS = ("/health", "/")
BACKEND_HEADER = "x-muai-backend"


def create_app(
    manager_or_config: ModelManager | str | os.PathLike[str] | None = None,
    *,
    settings: ServeSettings | None = None,
    api_key: str | None = None,
    preload: Sequence[str] = (),
) -> FastAPI:
    """The server over a ``ModelManager`` (or one made from a config path; None: the default config).

    ``settings`` default to the config's ``serve:`` section with ``api_key`` (else ``$MUAI_API_KEY``).
    ``preload`` models are loaded now; the others on their first request.
    """
    manager = manager_or_config
    if not isinstance(manager, ModelManager):
        manager = ModelManager(config_path=manager)
    settings = settings or ServeSettings.from_section(manager.config.serve, api_key)
    for name in preload:
        if not catalogue.is_servable(manager, name):
            raise ConfigurationError(
                f"--models: unknown model {name!r}", hint=f"serve one of: {', '.join(catalogue.model_names(manager))}"
            )
        manager.load_model(name)
    server = _Server(manager, settings)
    app = FastAPI(title="muai", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.muai = server

    @app.middleware("http")
    async def check_key(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if settings.api_key is None or request.url.path in OPEN_PATHS or _key_matches(request, settings.api_key):
            return await call_next(request)
        return _error(ApiError(401, "missing or wrong API key", code="invalid_api_key"))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _error(ApiError(exc.status_code, str(exc.detail), code="not_found" if exc.status_code == 404 else None))

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        return await server.answer(request, "chat", parse_chat)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await server.answer(request, "completion", parse_completion)

    @app.get("/v1/models")
    async def models() -> Response:
        names = catalogue.model_names(manager)
        return JSONResponse({"object": "list", "data": [catalogue.describe(manager, name) for name in names]})

    @app.get("/health")
    async def health() -> Response:
        return JSONResponse({"status": "ok", "loaded": manager.loaded_models()})

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(server.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/")
    async def page() -> Response:
        return FileResponse(PAGE, media_type="text/html")

    return app


class _Server:
    """One server's manager, limits and metrics; answers the generation routes."""

    def __init__(self, manager: ModelManager, settings: ServeSettings) -> None:
        self.manager, self.settings = manager, settings
        self.metrics = ServerMetrics(manager.performance_monitor)

    async def answer(
        self, request: Request, kind: str, parse: Callable[[Any, ServeSettings], ParsedRequest]
    ) -> Response:
        """Parse, check the model, start the generation and answer whole or streamed; every error in OpenAI's shape.

        A streamed answer starts once the first piece is out, so that errors before it get their own status.
        """
        model = "?"
        try:
            parsed = parse(await self._body(request), self.settings)
            model = parsed.model
            if not catalogue.is_servable(self.manager, model):
                raise ApiError(
                    404, f"model {model!r} is not served here; GET /v1/models lists the models", param="model",
                    code="model_not_found",
                )  # fmt: skip
            stream = self.manager.astream(model, **parsed.arguments)
            pieces = stream.__aiter__()
            first = await self._first(model, stream, pieces)
            answer = Answer(kind, model)
            if parsed.stream:
                backend = self._backend_now(model)
                body = self._events(answer, stream, pieces, first)
                headers = {BACKEND_HEADER: backend, "Cache-Control": "no-cache"}
                return StreamingResponse(body, media_type="text/event-stream", headers=headers)
            if first is not None:
                async for _ in pieces:
                    pass
            result = stream.result
            assert result is not None
            self.metrics.answered(kind, model, result)
            whole = answer.whole(result, catalogue.precision(self.manager, model, result.backend))
            return JSONResponse(whole, headers={BACKEND_HEADER: result.backend})
        except Exception as exc:
            error = from_exception(exc)
            if kind == "chat" and error.param == "prompt":  # a chat's prompt is its messages
                error.param = "messages"
            self.metrics.failed(kind, model, error.status)
            return _error(error)

    async def _first(self, model: str, stream: AsyncStream, pieces: AsyncIterator[str]) -> str | None:
        """The first piece (None when the answer is empty), counted in the model's queue depth until it comes."""
        depth = self.metrics.queue_depth.labels(model)
        depth.inc()
        try:
            return await pieces.__anext__()
        except StopAsyncIteration:
            return None
        except BaseException:
            await stream.aclose()
            raise
        finally:
            depth.dec()

    async def _events(
        self, answer: Answer, stream: AsyncStream, pieces: AsyncIterator[str], first: str | None
    ) -> AsyncIterator[bytes]:
        """The answer's server-sent events; a client that leaves closes this, which stops the generation."""
        try:
            yield answer.chunk(first or "", first=True)
            if first is not None:
                async for piece in pieces:
                    yield answer.chunk(piece)
            result = stream.result
            assert result is not None
            self.metrics.answered(answer.kind, answer.model, result)
            yield answer.last_chunk(result, catalogue.precision(self.manager, answer.model, result.backend))
        except Exception as exc:  # the status line is sent already: the error goes in the stream
            error = from_exception(exc)
            self.metrics.failed(answer.kind, answer.model, error.status)
            yield event(error.body())
        finally:
            await stream.aclose()
        yield DONE

    def _backend_now(self, model: str) -> str:
        """The backend holding ``model`` as its answer starts (the last chunk says which one finished it)."""
        try:
            return self.manager.get_model(model).backend_name
        except Exception:
            return ""

    async def _body(self, request: Request) -> Any:
        """The request's JSON, refused (413) past ``max_request_bytes`` before all of it is read."""
        limit = self.settings.max_request_bytes
        declared = request.headers.get("content-length", "")
        too_large = ApiError(413, f"the request body is larger than this server accepts ({limit} bytes)")
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise too_large
        try:
            return json.loads(body)
        except ValueError as exc:
            raise ApiError(400, f"the request body is not valid JSON: {exc}", param="body") from None


def _key_matches(request: Request, key: str) -> bool:
    """Whether the request carries ``Authorization: Bearer <key>``, compared in constant time."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), key.encode())


def _error(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)
