"""The context-overflow rule, with the real Gemma 3 tokenizer and chat format."""

from __future__ import annotations

import pytest

from gemmadesk.core.engine import ChatMessage, ContextOverflowError, Engine
from gemmadesk.core.engine.trim import _candidate, fit_messages


def _conversation(turns: int) -> list[ChatMessage]:
    msgs = [ChatMessage("system", "SYSTEM")]
    for i in range(turns):
        msgs += [ChatMessage("user", f"question {i} " + "pad " * 20), ChatMessage("assistant", f"answer {i} " * 5)]
    return [*msgs, ChatMessage("user", "NEWEST")]


def test_everything_fits_nothing_dropped(engine3: Engine) -> None:
    msgs = _conversation(2)
    fitted = fit_messages(msgs, engine3.tokenize_prompt, n_ctx=1024, max_tokens=256, min_reply=64)
    assert fitted.dropped == 0
    assert fitted.notice == ""
    assert fitted.tokens == engine3.tokenize_prompt(msgs)


def test_fewest_oldest_messages_are_dropped(engine3: Engine) -> None:
    msgs = _conversation(10)
    full = len(engine3.tokenize_prompt(msgs))
    n_ctx = full  # the limit is n_ctx minus the reply reserve: some turns must go
    fitted = fit_messages(msgs, engine3.tokenize_prompt, n_ctx=n_ctx, max_tokens=100, min_reply=64)
    kept = [msgs[0], *msgs[1 + fitted.dropped :]]
    assert fitted.tokens == engine3.tokenize_prompt(kept)
    assert len(fitted.tokens) <= n_ctx - 100
    # Minimal: the first number of dropped messages (brute force) whose prompt fits.
    fits = next(d for d in range(len(msgs)) if len(engine3.tokenize_prompt(_candidate(msgs, d))) <= n_ctx - 100)
    assert fitted.dropped == len(msgs) - len(_candidate(msgs, fits))
    assert kept[1].role == "user", "the kept history starts with a question, not an orphaned answer"
    assert f"{fitted.dropped} oldest messages" in fitted.notice


def test_only_system_and_newest_left_when_needed(engine3: Engine) -> None:
    msgs = _conversation(3)
    minimal = len(engine3.tokenize_prompt([msgs[0], msgs[-1]]))
    fitted = fit_messages(msgs, engine3.tokenize_prompt, n_ctx=minimal + 64, max_tokens=512, min_reply=64)
    assert fitted.dropped == len(msgs) - 2
    assert fitted.tokens == engine3.tokenize_prompt([msgs[0], msgs[-1]])


def test_newest_message_alone_too_long(engine3: Engine) -> None:
    msgs = [ChatMessage("system", "SYSTEM"), ChatMessage("user", "long " * 300)]
    with pytest.raises(ContextOverflowError, match="too long"):
        fit_messages(msgs, engine3.tokenize_prompt, n_ctx=256, max_tokens=64, min_reply=64)


def test_last_message_must_be_the_users(engine3: Engine) -> None:
    with pytest.raises(ValueError, match="last message"):
        fit_messages([ChatMessage("assistant", "hi")], engine3.tokenize_prompt, 256, 64, 64)
