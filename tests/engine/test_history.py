"""Chat history on real SQLite: CRUD, editing rules, search, export, migrations, and a killed writer."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gemmadesk.core.engine import ChatMessage
from gemmadesk.core.history import (
    MIGRATIONS,
    SCHEMA_VERSION,
    HistoryError,
    HistoryStore,
    PartialSaver,
)
from gemmadesk.core.paths import app_paths

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def store() -> Iterator[HistoryStore]:
    s = HistoryStore()
    yield s
    s.close()


def _conversation(store: HistoryStore) -> int:
    conv = store.create_conversation(system_prompt="Be kind.", model="gemma-test")
    store.add_message(conv.id, "user", "What is 100% of 7?")
    msg = store.add_message(conv.id, "assistant", "7", thoughts="100% means all of it.", stats={"tok": 1})
    store.add_message(conv.id, "user", "And 50%?")
    store.add_message(conv.id, "assistant", "3.5", thoughts="half")
    assert msg.thoughts == "100% means all of it."
    return conv.id


def test_default_location_and_wal(store: HistoryStore) -> None:
    assert store.path == app_paths().history_db
    mode = sqlite3.connect(store.path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_first_user_message_titles_the_conversation(store: HistoryStore) -> None:
    conv_id = _conversation(store)
    assert store.get_conversation(conv_id).title == "What is 100% of 7?"
    store.rename(conv_id, "Percentages")
    store.add_message(conv_id, "user", "more")
    assert store.get_conversation(conv_id).title == "Percentages"


def test_chat_messages_never_include_thoughts(store: HistoryStore) -> None:
    conv_id = _conversation(store)
    msgs = store.chat_messages(conv_id)
    assert msgs[0] == ChatMessage("system", "Be kind.")
    assert [m.content for m in msgs[1:]] == ["What is 100% of 7?", "7", "And 50%?", "3.5"]
    assert all("half" not in m.content and "all of it" not in m.content for m in msgs)


def test_edit_user_message_truncates_later_turns(store: HistoryStore) -> None:
    conv_id = _conversation(store)
    first_user = store.messages(conv_id)[0]
    remaining = store.edit_user_message(first_user.id, "What is 10% of 7?")
    assert [m.content for m in remaining] == ["What is 10% of 7?"]
    with pytest.raises(HistoryError):
        store.edit_user_message(store.add_message(conv_id, "assistant", "0.7").id, "x")


def test_remove_last_reply_for_regenerate(store: HistoryStore) -> None:
    conv_id = _conversation(store)
    remaining = store.remove_last_reply(conv_id)
    assert remaining[-1].content == "And 50%?"
    assert store.remove_last_reply(conv_id)[-1].content == "And 50%?", "a user message is never removed"


def test_delete_conversation_removes_its_messages(store: HistoryStore) -> None:
    conv_id = _conversation(store)
    other = store.create_conversation()
    store.delete_conversation(conv_id)
    assert [c.id for c in store.list_conversations()] == [other.id]
    assert store.messages(conv_id) == []
    with pytest.raises(HistoryError, match="does not exist"):
        store.get_conversation(conv_id)


def test_conversations_are_listed_by_last_activity(store: HistoryStore) -> None:
    a = store.create_conversation("A")
    b = store.create_conversation("B")
    store.add_message(a.id, "user", "bump")
    assert [c.title for c in store.list_conversations()][0] == "A"
    assert {c.id for c in store.list_conversations()} == {a.id, b.id}


def test_search_treats_wildcards_literally(store: HistoryStore) -> None:
    conv_id = _conversation(store)
    store.add_message(store.create_conversation().id, "user", "nothing to see")
    hits = store.search("50%")
    assert [h.snippet for h in hits] == ["And 50%?"]
    assert hits[0].conversation_id == conv_id
    assert store.search("_") == []
    what = store.search("what")  # case-insensitive: the title and the first question
    assert [(h.message_id is None, h.snippet) for h in what] == [
        (True, "What is 100% of 7?"),
        (False, "What is 100% of 7?"),
    ]
    assert store.search("   ") == []


def test_export_markdown_and_json(store: HistoryStore) -> None:
    conv_id = _conversation(store)
    md = store.export_markdown(conv_id)
    assert md.startswith("# What is 100% of 7?")
    assert "## System" in md
    assert "<summary>Thoughts</summary>" in md
    assert md.index("What is 100% of 7?", 5) < md.index("And 50%?")
    data = json.loads(json.dumps(store.export_json(conv_id)))
    assert data["format"] == "gemmadesk-conversation"
    assert [m["role"] for m in data["messages"]] == ["user", "assistant", "user", "assistant"]
    assert data["messages"][1]["stats"] == {"tok": 1}


def test_partial_reply_is_saved_as_one_row(store: HistoryStore) -> None:
    conv = store.create_conversation()
    store.add_message(conv.id, "user", "Hi")
    msg_id = store.begin_reply(conv.id, model="m", settings={"temperature": 1.0})
    saver = PartialSaver(store, msg_id, interval_s=3600)
    saver.add("thought", "hmm")
    saver.add("answer", "Hel")
    assert saver.saves == 0
    assert store.get_message(msg_id).content == ""
    saver.flush()
    saved = store.get_message(msg_id)
    assert (saved.content, saved.thoughts, saved.status) == ("Hel", "hmm", "partial")
    store.finish_reply(msg_id, "Hello", "hmm", {"completion_tokens": 2})
    done = store.get_message(msg_id)
    assert (done.content, done.status, done.stats) == ("Hello", "complete", {"completion_tokens": 2})
    assert done.settings == {"temperature": 1.0}
    assert len(store.messages(conv.id)) == 2


def test_upgrade_from_v1(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    MIGRATIONS[0](db)
    db.execute("PRAGMA user_version = 1")
    db.execute("INSERT INTO conversations VALUES (1, 'Old chat', 1.0, 2.0)")
    db.execute("INSERT INTO messages VALUES (1, 1, 'user', 'old question', 1.5)")
    db.execute("INSERT INTO messages VALUES (2, 1, 'assistant', 'old answer', 1.6)")
    db.commit()
    db.close()
    store = HistoryStore(path)
    try:
        version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
        assert version == SCHEMA_VERSION
        msgs = store.messages(1)
        assert [m.content for m in msgs] == ["old question", "old answer"]
        assert msgs[1].status == "complete"
        assert msgs[1].thoughts == ""
        assert msgs[1].updated_at == 1.6
        assert store.get_conversation(1).system_prompt == ""
        store.add_message(1, "user", "new question")
        assert len(store.messages(1)) == 3
    finally:
        store.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.sqlite3"
    sqlite3.connect(path).execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}").connection.close()
    with pytest.raises(HistoryError, match="newer GemmaDesk"):
        HistoryStore(path)


def test_a_file_that_is_not_a_database_is_kept_aside_and_a_fresh_one_started(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite3"
    junk = os.urandom(8192)
    path.write_bytes(junk)
    store = HistoryStore(path)
    try:
        [aside] = tmp_path.glob("junk.sqlite3.damaged-*")
        assert aside.read_bytes() == junk, "the damaged file is kept as it was, never deleted"
        assert str(aside) in store.notices[0]
        conv = store.create_conversation()
        assert store.add_message(conv.id, "user", "hello").id > 0
    finally:
        store.close()


WRITER = textwrap.dedent(
    """
    import sys
    from gemmadesk.core.engine import ChatMessage, LoadSettings, Engine, SamplingParams, TextChunk
    from gemmadesk.core.history import HistoryStore, PartialSaver

    store = HistoryStore(sys.argv[1])
    conv = store.create_conversation()
    store.add_message(conv.id, "user", "First question")
    store.add_message(conv.id, "assistant", "First answer")
    store.add_message(conv.id, "user", "Tell me a very long story")
    engine = Engine()
    engine.load(LoadSettings(model_path=sys.argv[2], n_ctx=4096, n_threads=1))
    messages = store.chat_messages(conv.id)
    msg_id = store.begin_reply(conv.id, model="gemma3")
    saver = PartialSaver(store, msg_id, interval_s=0.2)
    saved = 0
    while True:  # keep generating until killed
        for ev in engine.chat_stream(messages, SamplingParams(max_tokens=400)):
            if isinstance(ev, TextChunk):
                saver.add(ev.kind, ev.text)
                if saver.saves > saved:
                    saved = saver.saves
                    print("saved", saved, flush=True)
    """
)


@pytest.mark.slow
def test_process_killed_mid_reply_keeps_finished_messages(gemma3_gguf: Path, tmp_path: Path) -> None:
    db_path = tmp_path / "chats.sqlite3"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db_path), str(gemma3_gguf)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        lines: list[str] = []
        assert proc.stdout is not None
        while len(lines) < 3 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        assert len(lines) == 3, proc.stderr.read() if proc.stderr else "no output"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    assert sqlite3.connect(db_path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store = HistoryStore(db_path)
    try:
        msgs = store.messages(1)
        assert [m.content for m in msgs[:3]] == ["First question", "First answer", "Tell me a very long story"]
        assert all(m.status == "complete" for m in msgs[:3])
        assert len(msgs) == 4
        assert msgs[3].status == "partial"
        assert msgs[3].content.strip(), "the periodically saved partial reply survives the kill"
    finally:
        store.close()
