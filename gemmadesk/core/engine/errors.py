"""Errors the engine raises: each carries a message written for the person using the app.

Every error leaves the :class:`~gemmadesk.core.engine.Engine` usable (unloaded, or still holding the
previous model), so the GUI can show ``str(exc)`` and carry on.
"""

from __future__ import annotations


class EngineError(Exception):
    """Base class. ``str(exc)`` is a complete, user-facing sentence; ``detail`` holds technical context."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class ModelFileError(EngineError):
    """The file is missing, unreadable, not a GGUF, or truncated/corrupt."""


class UnsupportedModelError(EngineError):
    """A valid GGUF whose architecture this llama.cpp build does not know."""


class ModelTooLargeError(EngineError):
    """The model (or its context) does not fit in the memory this machine has."""


class ModelLoadError(EngineError):
    """llama.cpp refused the model for another reason (its log line is in ``detail``)."""


class LoadCancelled(EngineError):
    """The load was cancelled through the progress callback."""


class NotLoadedError(EngineError):
    """A chat was requested while no model is loaded."""


class ContextOverflowError(EngineError):
    """Even the system prompt plus the newest message do not fit in the context window."""


class GenerationError(EngineError):
    """llama.cpp failed while decoding (the engine stays loaded)."""


class AttachmentError(EngineError):
    """An attached image or audio file the loaded model cannot take: no projector, a projector without
    that kind of input, a file that is not what it claims, changed on disk, or that fails to decode."""


class ChatTemplateError(EngineError):
    """The model's chat template (Jinja code inside the GGUF) failed, refused the conversation, or hit a
    safety limit (time, memory, size). The engine stays loaded; another model or conversation works."""
