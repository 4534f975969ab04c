"""The context-overflow rule: which turns a prompt keeps when the conversation no longer fits.

Rule (the UI states it in the notice): the system prompt and the newest user message are always kept;
the oldest other messages are left out, one at a time, until the prompt leaves room for a reply of
``min(max_tokens, n_ctx // 4)`` tokens. A leading assistant message left without its question is
dropped too. If the system prompt and newest message alone leave less than ``min_reply`` tokens,
:class:`ContextOverflowError` is raised: the newest message is never cut short silently.
Dropped turns stay in the saved history; they are only left out of what the model sees.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from gemmadesk.core.engine.errors import ContextOverflowError
from gemmadesk.core.types import ChatMessage


@dataclass(frozen=True)
class Fitted:
    tokens: list[int]
    dropped: int
    notice: str


def _candidate(messages: Sequence[ChatMessage], drop: int) -> list[ChatMessage]:
    system = [m for m in messages[:1] if m.role == "system"]
    body = list(messages[len(system) :])
    kept = body[drop:]
    while len(kept) > 1 and kept[0].role == "assistant":
        kept = kept[1:]
    return system + kept


def fit_messages(
    messages: Sequence[ChatMessage],
    tokenize: Callable[[Sequence[ChatMessage]], list[int]],
    n_ctx: int,
    max_tokens: int,
    min_reply: int,
) -> Fitted:
    if not messages or messages[-1].role != "user":
        raise ValueError("the last message must be the user's")
    limit = n_ctx - max(min_reply, min(max_tokens, n_ctx // 4))
    tokens = tokenize(messages)
    if len(tokens) <= limit:
        return Fitted(tokens, 0, "")
    n_system = 1 if messages[0].role == "system" else 0
    droppable = len(messages) - n_system - 1
    minimal = tokenize(_candidate(messages, droppable))
    if len(minimal) > n_ctx - min_reply:
        raise ContextOverflowError(
            f"Your message is too long for this model's context window: the prompt needs {len(minimal):,} "
            f"tokens and the window holds {n_ctx:,} (with room for a reply). Shorten the message or load "
            "the model with a longer context."
        )
    if droppable == 0:
        return Fitted(minimal, 0, "")
    # Binary search for the fewest dropped messages that fit (the token count only falls as we drop).
    lo, hi, best = 1, droppable, minimal
    while lo < hi:
        mid = (lo + hi) // 2
        candidate = tokenize(_candidate(messages, mid))
        if len(candidate) <= limit:
            hi, best = mid, candidate
        else:
            lo = mid + 1
    if lo == droppable:
        best = minimal
    kept = len(_candidate(messages, lo))
    dropped = len(messages) - kept
    notice = (
        f"The conversation is longer than the model's context window ({n_ctx:,} tokens): the "
        f"{dropped} oldest message{'s' if dropped != 1 else ''} {'were' if dropped != 1 else 'was'} left out "
        "of what the model sees (the system prompt and your newest message are always kept)."
    )
    return Fitted(best, dropped, notice)
