"""Errors of remote engines: :class:`EngineError` subclasses whose ``str()`` is one sentence for the user,
saying what happened and what to do next (the chat shows them like local engine errors)."""

from __future__ import annotations

import re

from gemmadesk.core.engine.errors import ContextOverflowError, EngineError

__all__ = [  # what ``gemmadesk.core.remote`` re-exports
    "RemoteAuthError",
    "RemoteBusyError",
    "RemoteConfigError",
    "RemoteContextError",
    "RemoteDisconnectedError",
    "RemoteError",
    "RemoteModelError",
    "RemoteProtocolError",
    "RemoteServerError",
    "RemoteTLSError",
    "RemoteTimeoutError",
    "RemoteUnreachableError",
]

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def server_text(text: object, limit: int = 300) -> str:
    """Text a server sent, made safe to put in a message: no control or bidi characters, one line, short."""
    cleaned = _CONTROL.sub(" ", str(text)).replace("\n", " ").strip()
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"


class RemoteError(EngineError):
    """Base class for failures talking to an OpenAI-compatible server."""


class RemoteConfigError(RemoteError):
    """The server address (or the saved list of servers) is not usable."""


class RemoteUnreachableError(RemoteError):
    """No connection could be made (refused, unknown host, network down)."""


class RemoteTLSError(RemoteError):
    """The server's TLS certificate could not be verified (verification is always on)."""


class RemoteAuthError(RemoteError):
    """The server refused the API key (401/403)."""


class RemoteTimeoutError(RemoteError):
    """The server did not answer, or stopped sending, within the time limit."""


class RemoteModelError(RemoteError):
    """The server does not have the model that was asked for."""


class RemoteBusyError(RemoteError):
    """The server is loading or overloaded (429/503)."""


class RemoteProtocolError(RemoteError):
    """The server's reply is not OpenAI's format (garbage, wrong content type, oversized events)."""


class RemoteDisconnectedError(RemoteError):
    """The connection broke off in the middle of a reply (e.g. the server was killed)."""


class RemoteServerError(RemoteError):
    """The server reported an error of its own."""


class RemoteContextError(ContextOverflowError, RemoteError):
    """The server says the conversation does not fit in the model's context window."""
