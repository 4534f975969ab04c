"""Remote engines: a chat backend on any OpenAI-compatible server, and the user's list of servers.

    from gemmadesk.core.remote import RemoteBackend, ServerStore

    store = ServerStore()                                        # <config>/servers.json, mode 0600
    entry = store.add("GPU box", "http://gpu-box:8000/v1", api_key=None)
    with RemoteBackend(entry.base_url, api_key=entry.api_key) as probe:
        models = probe.list_models()
    backend = RemoteBackend(entry.base_url, model=models[0].id, api_key=entry.api_key)
    for event in backend.chat_stream(messages, params, stop_event): ...   # like Engine.chat_stream

Errors are :class:`RemoteError` subclasses (EngineError): one sentence each.
"""

from gemmadesk.core.remote import errors
from gemmadesk.core.remote.backend import (
    ChatBackendInfo,
    RemoteBackend,
    RemoteModel,
    RemoteTimeouts,
    normalize_base_url,
)
from gemmadesk.core.remote.errors import *  # noqa: F403 (the errors, listed once in errors.__all__)
from gemmadesk.core.remote.servers import ServerEntry, ServerStore

__all__ = [
    "ChatBackendInfo",
    "RemoteBackend",
    "RemoteModel",
    "RemoteTimeouts",
    "ServerEntry",
    "ServerStore",
    "normalize_base_url",
]
__all__ += errors.__all__
