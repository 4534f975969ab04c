"""GemmaDesk's local OpenAI-compatible server (an adapter beside ``ui`` and ``cli``; core never imports it).

    from gemmadesk.server import HostChatService, ServerOptions, ServerThread, create_app, serve_model

    service = HostChatService(host)                     # the window's ModelHost: API clients queue beside it
    service = serve_model("gemma-4-e2b", load_settings)   # or a host of its own (loads on its worker)
    with ServerThread(create_app(service, ServerOptions(api_key=None))) as http:
        print(http.base_url)                            # http://127.0.0.1:PORT/v1
    service.shutdown()

- :mod:`.service`: what the server needs from the model (``ChatService``) and its implementation over the
  chat core (``ModelHost`` + ``ChatSession.run`` / ``complete``; one client queue per API client).
- :mod:`.protocol`: OpenAI request checking (bounds on every field) and reply shapes.
- :mod:`.app`: the Starlette app (routes, auth, errors, SSE streaming, disconnect → stop).
- :mod:`.runner`: uvicorn on a socket we bind; the loopback-only rule (:func:`check_bind`).
"""

from gemmadesk.server.app import ServerOptions, create_app
from gemmadesk.server.runner import BindRefused, ServerThread, check_bind
from gemmadesk.server.service import (
    ChatJob,
    ChatService,
    CompletionJob,
    HostChatService,
    RequestRecord,
    ServiceState,
    serve_model,
)

__all__ = [
    "BindRefused",
    "ChatJob",
    "ChatService",
    "CompletionJob",
    "HostChatService",
    "RequestRecord",
    "ServerOptions",
    "ServerThread",
    "ServiceState",
    "check_bind",
    "create_app",
    "serve_model",
]
