"""GemmaDesk's local OpenAI-compatible server (an adapter beside ``ui`` and ``cli``; core never imports it).

    from gemmadesk.server import EngineChatService, ServerOptions, ServerThread, create_app

    service = EngineChatService("gemma-4-e2b", load_settings)      # loads on its worker thread
    with ServerThread(create_app(service, ServerOptions(api_key=None))) as http:
        print(http.base_url)                                        # http://127.0.0.1:PORT/v1
    service.shutdown()

- :mod:`.service`: what the server needs from the model (``ChatService``, ``RequestHandle``) and the
  phase-1 implementation over the Engine (one worker thread, FIFO).
- :mod:`.protocol`: OpenAI request checking (bounds on every field) and reply shapes.
- :mod:`.app`: the Starlette app (routes, auth, errors, SSE streaming, disconnect → stop).
- :mod:`.runner`: uvicorn on a socket we bind; the loopback-only rule (:func:`check_bind`).
"""

from gemmadesk.server.app import ServerOptions, create_app
from gemmadesk.server.runner import BindRefused, ServerThread, check_bind
from gemmadesk.server.service import ChatJob, ChatService, CompletionJob, EngineChatService, RequestHandle

__all__ = [
    "BindRefused",
    "ChatJob",
    "ChatService",
    "CompletionJob",
    "EngineChatService",
    "RequestHandle",
    "ServerOptions",
    "ServerThread",
    "check_bind",
    "create_app",
]
