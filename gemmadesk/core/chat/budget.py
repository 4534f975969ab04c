"""The context rule for stateless requests (the API server): answered in full, or refused with the numbers.

The window trims the oldest turns of a long conversation and says so (:mod:`gemmadesk.core.engine.trim`);
an API client sent its messages on purpose and cannot see a notice, so its request is never trimmed
silently: the prompt plus ``max(max_tokens, MIN_REPLY_TOKENS)`` must fit in the context window, else
:class:`ContextTooLongError` (OpenAI's ``context_length_exceeded``) says how many tokens were asked for.
The limit matches the engine's trimming limit, so a request that passes is never trimmed.

``max_tokens == 0`` means "no limit given": the reply may run to the end of the window.
"""

from __future__ import annotations

from gemmadesk.core.engine.engine import MIN_REPLY_TOKENS
from gemmadesk.core.engine.errors import ContextOverflowError

__all__ = ["MIN_REPLY_TOKENS", "ContextTooLongError", "reply_budget"]


class ContextTooLongError(ContextOverflowError):
    """The prompt plus the reply asked for do not fit in the model's context window."""

    def __init__(self, prompt_tokens: int, max_tokens: int, n_ctx: int) -> None:
        self.prompt_tokens, self.max_tokens, self.n_ctx = prompt_tokens, max_tokens, n_ctx
        super().__init__(
            f"This model's context window holds {n_ctx:,} tokens, but the request needs {prompt_tokens + max_tokens:,} "
            f"({prompt_tokens:,} in the prompt and up to {max_tokens:,} for the reply). Shorten the messages or "
            "lower max_tokens."
        )


def reply_budget(prompt_tokens: int, n_ctx: int, max_tokens: int) -> int:
    """The reply's token limit for a prompt of ``prompt_tokens`` in a window of ``n_ctx``, or
    :class:`ContextTooLongError`. ``max_tokens`` 0: up to the end of the window."""
    if max_tokens > 0:
        if prompt_tokens + max(max_tokens, MIN_REPLY_TOKENS) > n_ctx:
            raise ContextTooLongError(prompt_tokens, max_tokens, n_ctx)
        return max_tokens
    if prompt_tokens + MIN_REPLY_TOKENS > n_ctx:
        raise ContextTooLongError(prompt_tokens, MIN_REPLY_TOKENS, n_ctx)
    return n_ctx - prompt_tokens
