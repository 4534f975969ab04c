"""What a chat session drives: the local :class:`~gemmadesk.core.engine.Engine` or a remote server.

Both implement :class:`ChatBackend`, so chat, history, thinking display, stop and stats work the same for
both. Errors are :class:`~gemmadesk.core.engine.errors.EngineError` subclasses whose ``str()`` is a
user-facing sentence (remote failures too).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

from gemmadesk.core.types import BackendInfo, ChatMessage, SamplingParams, StreamEvent

__all__ = ["BackendInfo", "ChatBackend"]


@runtime_checkable
class ChatBackend(Protocol):
    @property
    def info(self) -> BackendInfo:
        """Name, context size and abilities of what is loaded."""
        ...

    def chat_stream(
        self, messages: Sequence[ChatMessage], params: SamplingParams, stop: threading.Event
    ) -> Iterator[StreamEvent]:
        """A reply to ``messages`` (the last is the user's): ContextTrimmed?, TextChunk*, then exactly one
        ReplyDone, also after ``stop`` was set."""
        ...

    def complete_stream(self, prompt: str, params: SamplingParams, stop: threading.Event) -> Iterator[StreamEvent]:
        """A raw completion of ``prompt`` (``/v1/completions``): TextChunk*, then one ReplyDone."""
        ...

    def count_prompt_tokens(self, messages: Sequence[ChatMessage], params: SamplingParams) -> int:
        """Tokens the prompt for ``messages`` takes before any trimming."""
        ...

    def count_text_tokens(self, prompt: str) -> int:
        """Tokens a raw ``prompt`` takes as :meth:`complete_stream` gives it to the model."""
        ...
