"""ChatSession: one set of rules for the prompt, the saved rows and partial replies (real models, real SQLite)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from gemmadesk.core.chat import ChatSession, ModelHost, api_messages, sampling_from_row
from gemmadesk.core.chat.stops import cut_at_stop_strings
from gemmadesk.core.engine import Engine
from gemmadesk.core.engine.errors import NotLoadedError
from gemmadesk.core.history import HistoryError, HistoryStore
from gemmadesk.core.types import (
    ChatMessage,
    ChunkKind,
    ContextTrimmed,
    LoadSettings,
    ReplyDone,
    ReplyStats,
    SamplingParams,
    StopReason,
    StreamEvent,
    TextChunk,
)
from tests.chat.conftest import load

GREEDY = SamplingParams(temperature=0.0, max_tokens=12, seed=1)


def _done(handle: object) -> ReplyDone:
    events = list(handle)  # type: ignore[call-overload]
    assert isinstance(events[-1], ReplyDone) and sum(isinstance(e, ReplyDone) for e in events) == 1
    return events[-1]


def test_nothing_is_saved_when_no_model_is_loaded(host: ModelHost, history: HistoryStore) -> None:
    session = ChatSession(host, history)
    with pytest.raises(NotLoadedError, match="No model is loaded"):
        session.send("Hello", GREEDY)
    assert history.list_conversations() == []


@pytest.mark.slow
def test_send_saves_the_turn_and_the_reply_with_its_settings(host3: ModelHost, history: HistoryStore) -> None:
    session = ChatSession(host3, history)
    cid = session.new("Be brief.")
    handle = session.send("The capital of France is", GREEDY)
    done = _done(handle)
    rows = history.messages(cid)
    assert [r.role for r in rows] == ["user", "assistant"]
    assert handle.user_message is not None and handle.user_message.id == rows[0].id
    assert handle.reply_id == rows[1].id
    assert rows[1].content == done.answer and rows[1].status == "complete"
    assert rows[1].model == "gemma3-270m"
    assert rows[1].settings == GREEDY.to_dict()
    assert rows[1].stats["completion_tokens"] == done.stats.completion_tokens
    assert sampling_from_row(rows[1].settings, SamplingParams()) == GREEDY
    assert session.prompt_messages()[0] == ChatMessage("system", "Be brief.")


@pytest.mark.slow
def test_a_long_reply_is_saved_while_it_streams_and_kept_as_partial_when_stopped(
    host3: ModelHost, history: HistoryStore
) -> None:
    session = ChatSession(host3, history, save_interval_s=0.05)
    session.new()
    handle = session.send("Tell me a very long story about the sea.", SamplingParams(max_tokens=400, seed=3))
    assert handle.reply_id is not None
    seen: list[str] = []
    deadline = time.monotonic() + 120
    while len(seen) < 3 and time.monotonic() < deadline and not handle.done.is_set():
        content = history.get_message(handle.reply_id).content
        if content and (not seen or content != seen[-1]):
            seen.append(content)  # the row grows while the reply streams
        time.sleep(0.02)
    handle.stop()
    done = _done(handle)
    assert len(seen) >= 2, "the reply row was saved more than once while streaming"
    assert all(seen[i] in seen[i + 1] for i in range(len(seen) - 1))
    row = history.get_message(handle.reply_id)
    assert done.stats.stop_reason is StopReason.STOPPED
    assert row.status == "partial" and row.content == done.answer


@pytest.mark.slow
def test_an_edit_of_another_conversations_message_is_refused(host3: ModelHost, history: HistoryStore) -> None:
    """Issue 10 item 1, in the core: an edit belongs to one conversation."""
    session = ChatSession(host3, history)
    a = session.new()
    _done(session.send("First chat", GREEDY))
    message_in_a = history.messages(a)[0].id
    b = session.new()
    _done(session.send("Second chat", GREEDY))
    rows_b = history.messages(b)
    with pytest.raises(HistoryError, match="another conversation"):
        session.edit(message_in_a, "replaced", GREEDY)
    assert history.messages(b) == rows_b, "the open conversation was not touched"
    assert history.messages(a)[0].content == "First chat"
    session.open(a)
    handle = session.edit(message_in_a, "First chat, edited", GREEDY)
    _done(handle)
    assert [m.content for m in history.messages(a)][0] == "First chat, edited"
    assert len(history.messages(a)) == 2


@pytest.mark.slow
def test_regenerate_replaces_the_last_reply(host3: ModelHost, history: HistoryStore) -> None:
    session = ChatSession(host3, history)
    cid = session.new()
    _done(session.send("One two three", GREEDY))
    first = history.messages(cid)[1]
    handle = session.regenerate(GREEDY)
    _done(handle)
    rows = history.messages(cid)
    assert [r.role for r in rows] == ["user", "assistant"]
    assert rows[1].id == handle.reply_id
    assert rows[1].created_at > first.created_at, "a new row (SQLite may reuse the id of the deleted one)"


@pytest.mark.slow
def test_a_reply_stopped_before_its_first_word_leaves_an_empty_model_turn(
    host: ModelHost, history: HistoryStore, gemma4_tiny: Path
) -> None:
    """Issue 10 item 10's last sentence: a stopped reply (e.g. while thinking) is still a model turn, so the
    prompt never has two user turns in a row (the old history.chat_messages dropped the empty reply)."""
    load(host, gemma4_tiny, "gemma4-tiny")
    session = ChatSession(host, history)
    cid = session.new()
    handle = session.send("First question", SamplingParams(max_tokens=50, thinking=True))
    handle.stop()  # before the worker got to it: stopped before the first token
    done = _done(handle)
    assert done.stats.completion_tokens == 0 and done.answer == ""
    assert history.messages(cid)[1].status == "partial"
    history.add_message(cid, "user", "Second question")
    roles = [m.role for m in session.prompt_messages()]
    assert roles == ["user", "assistant", "user"]
    engine = Engine()
    engine.load(LoadSettings(model_path=str(gemma4_tiny), n_ctx=512, n_threads=1))
    try:
        text = engine.prompt_format.render(session.prompt_messages())
        tokens = engine.tokenize_prompt(session.prompt_messages())
    finally:
        engine.unload()
    assert "<|turn>model\n<turn|>" in text.replace("<turn|>\n", "<turn|>"), text
    assert text.index("First question") < text.index("<|turn>model") < text.index("Second question")
    assert tokens, "the prompt tokenizes"


@pytest.mark.slow
def test_stateless_run_saves_nothing_and_applies_stop_strings(host3: ModelHost, history: HistoryStore) -> None:
    session = ChatSession(host3, None)
    messages = [ChatMessage("user", "Count: one, two, three, four, five, six,")]
    free = _done(session.run(messages, SamplingParams(temperature=0.0, max_tokens=16)))
    assert len(free.answer) >= 6, free.answer
    stop_word = free.answer[len(free.answer) // 2 :][:2]  # greedy: the same text comes again
    cut = _done(session.run(messages, SamplingParams(temperature=0.0, max_tokens=16, stop=(stop_word,))))
    assert cut.stats.stop_reason is StopReason.STOP_STRING
    assert cut.answer == free.answer[: free.answer.index(stop_word)].strip()
    assert stop_word not in cut.answer
    assert history.list_conversations() == []
    with pytest.raises(HistoryError):
        session.send("Hi", GREEDY)


@pytest.mark.slow
def test_raw_completion_and_token_count(host3: ModelHost) -> None:
    session = ChatSession(host3, None, client="api:test")
    done = _done(session.complete("The capital of France is", SamplingParams(temperature=0.0, max_tokens=6)))
    assert done.answer.strip() and done.thoughts == ""
    assert 1 <= done.stats.completion_tokens <= 6
    messages = [ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")]
    (count,) = list(session.count_prompt_tokens(messages, SamplingParams()))
    engine = Engine()
    engine.load(LoadSettings(model_path=str(host3.state.settings.model_path), n_ctx=256, n_threads=1))  # type: ignore[union-attr]
    try:
        assert count == len(engine.tokenize_prompt(messages)) == engine.count_prompt_tokens(messages)
    finally:
        engine.unload()


def test_api_messages_assemble_the_system_prompt_once_and_drop_thoughts() -> None:
    out = api_messages([
        ChatMessage("system", "Be brief."),
        ChatMessage("user", "Hi"),
        ChatMessage("assistant", "<|channel>thought\nhmm<channel|>Hello!"),
        ChatMessage("system", "Answer in French."),
        ChatMessage("user", "How are you?"),
    ])  # fmt: skip
    assert out == [
        ChatMessage("system", "Be brief.\n\nAnswer in French."),
        ChatMessage("user", "Hi"),
        ChatMessage("assistant", "Hello!"),
        ChatMessage("user", "How are you?"),
    ]


def test_stop_strings_cut_the_answer_even_across_pieces() -> None:
    stop = threading.Event()
    pieces = ["Hel", "lo wo", "rld. ST", "OP and more", " text"]
    events: list[StreamEvent] = [ContextTrimmed(1, "n"), TextChunk(ChunkKind.THOUGHT, "think STOP")]
    events += [TextChunk(ChunkKind.ANSWER, p) for p in pieces]
    events.append(ReplyDone("Hello world. STOP and more text", "think STOP", ReplyStats(stop_reason=StopReason.EOS)))
    out = list(cut_at_stop_strings(events, ["STOP", "zzz"], stop))
    answer = "".join(e.text for e in out if isinstance(e, TextChunk) and e.kind == ChunkKind.ANSWER)
    assert answer == "Hello world. "
    assert stop.is_set()
    assert isinstance(out[0], ContextTrimmed)
    assert TextChunk(ChunkKind.THOUGHT, "think STOP") in out, "thoughts are never cut"
    assert out[-1] == ReplyDone("Hello world.", "think STOP", ReplyStats(stop_reason=StopReason.STOP_STRING))
    # Without a match, held-back text is released at the end and nothing changes.
    plain: list[StreamEvent] = [TextChunk(ChunkKind.ANSWER, "ab S"), ReplyDone("ab S", "")]
    out = list(cut_at_stop_strings(plain, ["STOP"], threading.Event()))
    assert "".join(e.text for e in out if isinstance(e, TextChunk)) == "ab S" and out[-1] == plain[-1]


def test_settings_from_a_damaged_row_fall_back_field_by_field() -> None:
    row = {"temperature": "hot", "top_k": 5, "thinking": 1, "stop": ["x", 3], "seed": True, "max_tokens": 99.5,
           "n_ctx": 4096, "system_prompt": "old rows had these"}  # fmt: skip
    params = sampling_from_row(row, SamplingParams(temperature=0.7))
    assert params == SamplingParams(temperature=0.7, top_k=5)
