"""A small OpenAI-like server that misbehaves on purpose, for the faults real servers cannot be made to
produce on demand: garbage SSE, a stall in the middle of a reply, a slow but steady trickle, an event
larger than any sane one, an HTML page instead of a stream, an error event mid-reply, a connection cut
without the end of the chunked body. Base URL per fault: ``http://127.0.0.1:PORT/<fault>/v1``."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def _chunk(text: str, finish: str | None = None) -> bytes:
    obj: dict[str, Any] = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m",
                           "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}  # fmt: skip
    return f"data: {json.dumps(obj)}\n\n".encode()


async def _models(request: Request) -> Response:
    return JSONResponse({"object": "list", "data": [{"id": "m", "object": "model", "owned_by": "fault"}]})


async def _chat(request: Request) -> Response:
    fault = request.path_params["fault"]
    await request.body()
    if fault == "html":
        return HTMLResponse("<html><body>Welcome to nginx!</body></html>")
    if fault == "busy":
        return JSONResponse({"error": {"message": "Loading model", "type": "unavailable_error"}}, status_code=503)

    async def stream() -> AsyncIterator[bytes]:
        yield _chunk("Hello")
        if fault == "garbage":
            yield b"data: {this is not json\n\n"
        elif fault == "stall":
            await asyncio.sleep(30)
        elif fault == "trickle":
            for word in (" there", ",", " friend", "."):
                await asyncio.sleep(0.3)
                yield _chunk(word)
            yield _chunk("", "stop")
            yield b"data: [DONE]\n\n"
        elif fault == "huge":
            yield b"data: " + b"x" * (3 * 2**20) + b"\n\n"
        elif fault == "error-event":
            yield b'data: {"error": {"message": "CUDA out of memory\\u001b[31m"}}\n\n'
        elif fault == "no-done":
            return  # the body ends cleanly, but without a finish_reason or [DONE]
        elif fault == "endless":  # ignores max_tokens (bounded here, and stops when the client leaves)
            for i in range(5000):
                if i % 50 == 0 and await request.is_disconnected():
                    return
                yield _chunk(" x")

    return StreamingResponse(stream(), media_type="text/event-stream")


def fault_app() -> Starlette:
    return Starlette(routes=[Route("/{fault}/v1/models", _models), Route("/{fault}/v1/chat/completions", _chat,
                                                                             methods=["POST"])])  # fmt: skip
