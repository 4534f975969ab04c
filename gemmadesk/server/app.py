"""The HTTP layer: an ASGI app (Starlette) with OpenAI's endpoints over a :class:`ChatService`.

- ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions`` (SSE streaming or one
  JSON reply), ``GET /health`` (no key needed: "ok", "loading" or "error").
- Errors in OpenAI's shape: 400 bad request (also context too long, code ``context_length_exceeded``,
  with the numbers), 401 missing/wrong API key, 404 unknown model, 413 body too large, 415 not JSON,
  503 while the model loads or when too many requests wait.
- A client that disconnects stops its request: generation ends before the next token, and a request
  still waiting is dropped.
- Hostile input: the body is read with a size and time limit and parsed by :mod:`.protocol` with
  bounds on every field; only JSON bodies are accepted (so a web page cannot post to the server
  without a CORS preflight, which the server never grants); on loopback only ``localhost`` /
  ``127.0.0.1`` / ``[::1]`` Host headers are accepted (no DNS-rebinding from a web page).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from gemmadesk.core.engine import (
    AttachmentError,
    ContextOverflowError,
    EngineError,
    NotLoadedError,
    ReplyDone,
    TextChunk,
)
from gemmadesk.core.types import StreamEvent
from gemmadesk.server import protocol
from gemmadesk.server.protocol import ApiError
from gemmadesk.server.service import ChatService, QueueFullError, RequestHandle, TemplateRefusedError

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = ["localhost", "127.0.0.1", "[::1]", "::1"]


@dataclass(frozen=True)
class ServerOptions:
    api_key: str | None = None
    loopback_only: bool = True  # accept only loopback Host headers
    max_body_bytes: int = protocol.MAX_BODY_BYTES
    body_timeout_s: float = 30.0  # the whole body must arrive within this (slow-loris clients)


@dataclass(frozen=True)
class _Finished:
    error: EngineError | None


class _Bridge:
    """A RequestHandle's events, delivered from the worker thread into this event loop."""

    def __init__(self, handle: RequestHandle, loop: asyncio.AbstractEventLoop) -> None:
        self.handle = handle
        self._loop = loop
        self._queue: asyncio.Queue[StreamEvent | _Finished] = asyncio.Queue()
        handle.subscribe(self._put, lambda error: self._put(_Finished(error)))

    def _put(self, item: StreamEvent | _Finished) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the event loop is gone (server shut down): nobody is listening
            self.handle.stop()

    async def get(self) -> StreamEvent | _Finished:
        return await self._queue.get()


def _error_response(error: ApiError) -> JSONResponse:
    headers = {"Retry-After": "2"} if error.status == 503 else None
    if error.status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def engine_error_to_api(error: EngineError) -> ApiError:
    if isinstance(error, ContextOverflowError):
        return ApiError(400, str(error), param="messages", code="context_length_exceeded")
    if isinstance(error, QueueFullError):
        return ApiError(503, str(error), type="unavailable_error", code="server_busy")
    if isinstance(error, NotLoadedError):
        return ApiError(503, str(error), type="unavailable_error", code="model_not_loaded")
    if isinstance(error, TemplateRefusedError | AttachmentError):
        return ApiError(400, str(error), param="messages")
    return ApiError(500, str(error), type="server_error")


class _Api:
    def __init__(self, service: ChatService, options: ServerOptions) -> None:
        self.service = service
        self.options = options

    # ------------------------------------------------------------------ checks
    def check_key(self, request: Request) -> None:
        key = self.options.api_key
        if not key:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), key.encode()):
            message = "Missing API key" if not header else "Wrong API key"
            raise ApiError(
                401, f"{message}: send “Authorization: Bearer <key>” with the key the server was started with.",
                type="authentication_error", code="invalid_api_key",
            )  # fmt: skip

    def check_model(self, model: str) -> None:
        state = self.service.state
        if model != state.model_id:
            raise ApiError(
                404, f"The model “{model[:80]}” is not served here; this server has “{state.model_id}”.",
                type="not_found_error", param="model", code="model_not_found",
            )  # fmt: skip
        if state.status == "loading":
            raise ApiError(503, f"“{state.model_id}” is still loading; try again in a few seconds.",
                           type="unavailable_error", code="model_loading")  # fmt: skip
        if state.status != "ready":
            raise ApiError(503, state.error or f"“{state.model_id}” is not loaded.",
                           type="unavailable_error", code="model_not_loaded")  # fmt: skip

    async def read_json(self, request: Request) -> Any:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise ApiError(415, "Send the request body as JSON with “Content-Type: application/json”.")
        limit = self.options.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            raise ApiError(413, f"The request body is larger than {limit // 2**20} MiB; send less text.")
        body = bytearray()
        try:
            async with asyncio.timeout(self.options.body_timeout_s):
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > limit:
                        raise ApiError(413, f"The request body is larger than {limit // 2**20} MiB; send less text.")
        except TimeoutError:
            raise ApiError(408, f"The request body did not arrive within {self.options.body_timeout_s:g} s.") from None
        try:
            return json.loads(body)
        except (ValueError, RecursionError):
            raise ApiError(400, "The request body is not valid JSON (or is nested too deeply).") from None

    # ------------------------------------------------------------------ endpoints
    async def health(self, request: Request) -> Response:
        state = self.service.state
        status = {"ready": "ok", "loading": "loading"}.get(state.status, "error")
        return JSONResponse({"status": status}, status_code=200 if status == "ok" else 503)

    async def models(self, request: Request) -> Response:
        try:
            self.check_key(request)
        except ApiError as exc:
            return _error_response(exc)
        state = self.service.state
        data = [{"id": state.model_id, "object": "model", "created": 0, "owned_by": "gemmadesk",
                 "meta": {"n_ctx": state.n_ctx, "supports_thinking": state.supports_thinking,
                          "status": state.status}}]  # fmt: skip
        return JSONResponse({"object": "list", "data": data})

    async def chat(self, request: Request) -> Response:
        return await self._run(request, chat=True)

    async def completions(self, request: Request) -> Response:
        return await self._run(request, chat=False)

    async def _run(self, request: Request, *, chat: bool) -> Response:
        try:
            self.check_key(request)
            body = await self.read_json(request)
            parsed = protocol.parse_chat(body) if chat else protocol.parse_completion(body)
            self.check_model(parsed.model)
            client = f"api:{request.client.host if request.client else '?'}"
            handle = self.service.submit(parsed.job, client=client)
        except ApiError as exc:
            return _error_response(exc)
        except EngineError as exc:
            return _error_response(engine_error_to_api(exc))
        bridge = _Bridge(handle, asyncio.get_running_loop())
        watcher = asyncio.create_task(_stop_on_disconnect(request, handle))
        try:
            first = await bridge.get()
        except BaseException:
            handle.stop()
            watcher.cancel()
            raise
        if isinstance(first, _Finished) and first.error is not None:
            watcher.cancel()
            return _error_response(engine_error_to_api(first.error))
        rid = protocol.new_id("chatcmpl" if chat else "cmpl")
        if not parsed.stream:
            try:
                return await _collect(bridge, first, rid, parsed.model, chat)
            finally:
                handle.stop()
                watcher.cancel()
        stream = _sse(bridge, first, rid, parsed.model, chat, parsed.include_usage, watcher)
        return StreamingResponse(stream, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})  # fmt: skip


async def _stop_on_disconnect(request: Request, handle: RequestHandle) -> None:
    """Stop the request when the client goes away (also while it is still waiting for the model)."""
    while not handle.done.is_set():
        message = await request.receive()
        if message["type"] == "http.disconnect":
            handle.stop()
            return


async def _collect(bridge: _Bridge, first: StreamEvent | _Finished, rid: str, model: str, chat: bool) -> Response:
    item = first
    text: list[str] = []  # a raw completion keeps its leading whitespace (ReplyDone.answer is stripped)
    while True:
        if isinstance(item, _Finished):
            if item.error is not None:
                return _error_response(engine_error_to_api(item.error))
            return _error_response(ApiError(500, "The model ended without a reply.", type="server_error"))
        if isinstance(item, TextChunk) and item.kind == "answer":
            text.append(item.text)
        if isinstance(item, ReplyDone):
            if chat:
                return JSONResponse(protocol.chat_completion(rid, model, item.answer, item.thoughts, item.stats))
            return JSONResponse(protocol.text_completion(rid, model, "".join(text), item.stats))
        item = await bridge.get()


def _sse_line(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


async def _sse(
    bridge: _Bridge,
    first: StreamEvent | _Finished,
    rid: str,
    model: str,
    chat: bool,
    include_usage: bool,
    watcher: asyncio.Task[None],
) -> AsyncIterator[bytes]:
    created = int(time.time())
    obj = "chat.completion.chunk" if chat else "text_completion"
    item = first
    try:
        if chat:
            yield _sse_line(protocol.chat_chunk(rid, model, created, {"role": "assistant", "content": ""}))
        while True:
            if isinstance(item, _Finished):
                if item.error is not None:
                    yield _sse_line(engine_error_to_api(item.error).body())
                break
            if isinstance(item, TextChunk):
                if chat:
                    key = "content" if item.kind == "answer" else "reasoning_content"
                    yield _sse_line(protocol.chat_chunk(rid, model, created, {key: item.text}))
                elif item.kind == "answer":
                    yield _sse_line(protocol.text_chunk(rid, model, created, item.text))
            elif isinstance(item, ReplyDone):
                finish = protocol.finish_reason(item.stats)
                if chat:
                    last = protocol.chat_chunk(rid, model, created, {}, finish)
                else:
                    last = protocol.text_chunk(rid, model, created, "", finish)
                last["timings"] = protocol.timings(item.stats)
                yield _sse_line(last)
                if include_usage:
                    yield _sse_line(protocol.usage_chunk(rid, model, created, obj, item.stats))
            item = await bridge.get()
        yield _sse_line("[DONE]")
    finally:
        bridge.handle.stop()  # a no-op when it finished; stops generation when the client went away
        watcher.cancel()


def create_app(service: ChatService, options: ServerOptions | None = None) -> Starlette:
    options = options or ServerOptions()
    api = _Api(service, options)
    routes = [
        Route("/health", api.health, methods=["GET"]),
        Route("/v1/models", api.models, methods=["GET"]),
        Route("/v1/chat/completions", api.chat, methods=["POST"]),
        Route("/v1/completions", api.completions, methods=["POST"]),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_HOSTS)] if options.loopback_only else []
    return Starlette(routes=routes, middleware=middleware)
