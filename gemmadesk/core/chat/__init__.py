"""The chat core the window, the command line and the API server share (docs/design/chat-core.md).

- :mod:`~gemmadesk.core.chat.backend`: :class:`ChatBackend`, what a session drives (the local Engine or a
  remote server), and :class:`BackendInfo`.
- :mod:`~gemmadesk.core.chat.host`: :class:`ModelHost`, the one owner of what is loaded; one worker runs
  every request, client queues served round-robin; :class:`RequestHandle` per request.
- :mod:`~gemmadesk.core.chat.session`: :class:`ChatSession`, history + prompt + trimming + thinking rules
  + partial saving.
"""

from gemmadesk.core.chat.backend import BackendInfo, ChatBackend
from gemmadesk.core.chat.host import WINDOW, HostState, HostStatus, ModelHost, RequestHandle
from gemmadesk.core.chat.session import ChatSession, ReplyHandle, api_messages, latest_sampling, sampling_from_row

__all__ = [
    "WINDOW",
    "BackendInfo",
    "ChatBackend",
    "ChatSession",
    "HostState",
    "HostStatus",
    "ModelHost",
    "ReplyHandle",
    "RequestHandle",
    "api_messages",
    "latest_sampling",
    "sampling_from_row",
]
