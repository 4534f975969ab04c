"""The chat core's rules for stateless (API) requests: the context rule, requests dropped before they ran,
and a request refused when the model it was accepted for is no longer loaded. Real Gemma 3 270M."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from gemmadesk.core.chat import ChatSession, ModelHost
from gemmadesk.core.chat.backend import ChatBackend
from gemmadesk.core.chat.budget import MIN_REPLY_TOKENS, ContextTooLongError, reply_budget
from gemmadesk.core.chat.session import ModelChangedError
from gemmadesk.core.types import ChatMessage, ReplyDone, SamplingParams, StopReason

GREEDY = SamplingParams(temperature=0.0, max_tokens=8)


def test_reply_budget_refuses_with_the_numbers_and_fills_the_window_when_no_limit_is_given() -> None:
    assert reply_budget(100, 1024, 50) == 50
    assert reply_budget(100, 1024, 0) == 924  # no limit given: up to the end of the window
    assert reply_budget(1024 - MIN_REPLY_TOKENS, 1024, 1) == 1  # a short reply still needs the minimum room
    with pytest.raises(ContextTooLongError) as info:
        reply_budget(1024 - MIN_REPLY_TOKENS + 1, 1024, 1)
    assert info.value.prompt_tokens == 961 and info.value.n_ctx == 1024
    with pytest.raises(ContextTooLongError) as info:
        reply_budget(600, 1024, 900)
    assert str(info.value) == (
        "This model's context window holds 1,024 tokens, but the request needs 1,500 (600 in the prompt and up "
        "to 900 for the reply). Shorten the messages or lower max_tokens."
    )
    with pytest.raises(ContextTooLongError):
        reply_budget(1000, 1024, 0)


@pytest.mark.slow
def test_api_turns_are_refused_not_trimmed(host3: ModelHost) -> None:
    """The window trims old turns and says so; an API request that does not fit is refused with the numbers,
    for chats and raw completions alike (Engine.complete_stream alone would cut the reply short)."""
    session = ChatSession(host3, None, client="api:test")
    long_chat = [ChatMessage("user", "word " * 600)]
    handle = session.run(long_chat, SamplingParams(temperature=0.0, max_tokens=900), strict_context=True)
    with pytest.raises(ContextTooLongError, match="up to 900 for the reply"):
        list(handle)
    handle = session.complete("word " * 600, SamplingParams(temperature=0.0, max_tokens=900), strict_context=True)
    with pytest.raises(ContextTooLongError, match="up to 900 for the reply"):
        list(handle)
    # Without strict_context (the window's rules) the same chat is answered, the reply cut to what fits.
    loose = [e for e in session.run(long_chat, SamplingParams(temperature=0.0, max_tokens=900))
             if isinstance(e, ReplyDone)]  # fmt: skip
    assert loose and loose[0].stats.completion_tokens >= 1
    # With no limit given the reply may run to the end of the window.
    done = [e for e in session.complete("word " * 900, SamplingParams(temperature=0.0, max_tokens=0),
                                        strict_context=True) if isinstance(e, ReplyDone)]  # fmt: skip
    assert done and done[0].stats.prompt_tokens + done[0].stats.completion_tokens <= 1024
    assert done[0].stats.completion_tokens >= 1


def _blocking_job(started: threading.Event, release: threading.Event):  # type: ignore[no-untyped-def]
    def job(_backend: ChatBackend, _stop: threading.Event) -> Iterator[object]:
        started.set()
        assert release.wait(30)
        yield "held"

    return job


@pytest.mark.slow
def test_a_request_stopped_while_waiting_ends_without_evaluating_anything(host3: ModelHost) -> None:
    started, release = threading.Event(), threading.Event()
    holder = host3.submit(_blocking_job(started, release), "window")
    assert started.wait(30)
    session = ChatSession(host3, None, client="api:gone")
    handle = session.run([ChatMessage("user", "Hello")], GREEDY)
    handle.stop()  # the client went away while its request waited
    release.set()
    assert holder.wait(30) and handle.wait(30)
    assert handle.error is None and handle.last_event is None  # no event at all: nothing was evaluated


@pytest.mark.slow
def test_a_request_for_a_model_switched_off_meanwhile_is_refused(host3: ModelHost) -> None:
    session = ChatSession(host3, None, client="api:late")
    with pytest.raises(ModelChangedError, match="“other-model” was switched off"):
        list(session.run([ChatMessage("user", "Hello")], GREEDY, model_id="other-model"))
    done = [e for e in session.run([ChatMessage("user", "Hello")], GREEDY, model_id="gemma3-270m")
            if isinstance(e, ReplyDone)]  # fmt: skip
    assert done and done[0].stats.stop_reason in (StopReason.LENGTH, StopReason.EOS)
