"""The chat history never loses a turn (issue 10.5): damaged databases are moved aside and salvaged,
read-only ones keep new turns in a journal until they can be written, and the journal itself is input
that is checked. Real SQLite files, damaged with real random bytes; made read-only for real
(tests/support/readonly.py)."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from gemmadesk.core import history
from gemmadesk.core.history import HistoryError, HistoryStore
from tests.support.readonly import ReadOnly, read_only_files

PAGE = 4096


def _fill(path: Path, conversations: int = 30) -> list[int]:
    store = HistoryStore(path)
    ids = []
    for i in range(conversations):
        conv = store.create_conversation(title=f"chat {i}")
        ids.append(conv.id)
        store.add_message(conv.id, "user", f"question {i} " + "q" * 1500)
        store.add_message(conv.id, "assistant", f"answer {i} " + "a" * 1500)
    store.close()
    return ids


def _pages_of(path: Path, table: str) -> list[int]:
    db = sqlite3.connect(path)
    try:
        return [r[0] for r in db.execute("SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf'", (table,))]
    finally:
        db.close()


def _damage(path: Path, pages: list[int], seed: int = 1) -> None:
    rng = random.Random(seed)
    with path.open("r+b") as fh:
        for page in pages:
            fh.seek((page - 1) * PAGE)
            fh.write(rng.randbytes(PAGE))


def _aside(folder: Path) -> Path:
    [aside] = [p for p in folder.glob("*.damaged-*") if not p.name.endswith(("-wal", "-shm"))]
    return aside


def test_damaged_pages_are_moved_aside_and_what_can_be_read_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "chats.sqlite3"
    ids = _fill(path)
    leaves = _pages_of(path, "messages")
    assert len(leaves) > 6
    damaged = leaves[2:5]  # three leaf pages of messages in the middle
    _damage(path, damaged)
    before = path.read_bytes()
    store = HistoryStore(path)
    try:
        everything = [m for cid in ids for m in store.messages(cid)]  # the first read meets the damage
        aside = _aside(tmp_path)
        assert aside.read_bytes() == before, "the damaged file is kept exactly as it was"
        assert any(str(aside) in n for n in store.notices)
        assert len(store.list_conversations()) == len(ids), "every conversation was readable and kept"
        assert 2 * len(ids) - 3 * 3 <= len(everything) < 2 * len(ids), "only the damaged pages' rows are lost"
        assert store.add_message(ids[0], "user", "still works").id > 0
        assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        store.close()


def test_a_reply_whose_row_was_lost_mid_session_is_written_again(tmp_path: Path) -> None:
    """The database is damaged while a reply streams: the reply is still saved, in the fresh database."""
    path = tmp_path / "chats.sqlite3"
    store = HistoryStore(path)
    try:
        conv = store.create_conversation(title="streaming")
        store.add_message(conv.id, "user", "tell me")
        reply = store.begin_reply(conv.id, model="m")
        store.update_partial(reply, "so far", "")
        other = sqlite3.connect(path)
        other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        other.close()
        pages = int(sqlite3.connect(path).execute("PRAGMA page_count").fetchone()[0])
        _damage(path, list(range(2, pages + 1)))  # every page but the header and schema
        writer = sqlite3.connect(path)  # another process touches the file: the open connection rereads it
        writer.execute("PRAGMA user_version = 3")
        writer.close()
        store.finish_reply(reply, "the whole answer", "", {"completion_tokens": 3})
        saved = store.get_message(reply)
        assert (saved.content, saved.status) == ("the whole answer", "complete")
        assert any("damaged" in n for n in store.notices)
        assert _aside(tmp_path).exists()
    finally:
        store.close()


@pytest.fixture
def make_read_only() -> Iterator[ReadOnly]:
    with read_only_files() as files:
        yield files


def test_a_read_only_history_keeps_new_turns_in_a_journal_until_writable(
    tmp_path: Path, make_read_only: ReadOnly, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "chats.sqlite3"
    [old] = _fill(path, conversations=1)
    make_read_only(path)
    store = HistoryStore(path)
    journal = path.with_name("chats.sqlite3.pending.json")
    try:
        assert store.read_only is not None
        assert str(journal) in store.notices[0]
        assert [c.id for c in store.list_conversations()] == [old], "the saved chats are still shown"
        conv = store.create_conversation()
        assert conv.id < 0
        store.add_message(conv.id, "user", "a new question")
        reply = store.begin_reply(conv.id, model="m")
        store.update_partial(reply, "half", "thinking")
        store.finish_reply(reply, "the full answer", "thinking", {"completion_tokens": 3})
        store.add_message(old, "user", "more on the old chat")
        assert [m.content for m in store.messages(conv.id)] == ["a new question", "the full answer"]
        assert store.get_conversation(conv.id).title == "a new question"
        assert store.list_conversations()[0].id in (conv.id, old)
        assert "the full answer" in journal.read_text()
        assert store.chat_messages(old)[-1].content == "more on the old chat"
        with pytest.raises(HistoryError, match="cannot be written just now"):
            store.delete_conversation(old)
    finally:
        store.close()

    again = HistoryStore(path)  # still read-only at the next start: still shown
    try:
        assert any(c.title == "a new question" for c in again.list_conversations())
    finally:
        again.close()

    make_read_only.unlock(path)
    writable = HistoryStore(path)  # writable again: the journal goes into the database
    try:
        assert not journal.exists()
        [new] = [c for c in writable.list_conversations() if c.title == "a new question"]
        assert new.id > 0
        assert [(m.role, m.content, m.status) for m in writable.messages(new.id)] == [
            ("user", "a new question", "complete"), ("assistant", "the full answer", "complete")]
        assert writable.messages(old)[-1].content == "more on the old chat"
        assert any("saved in it now" in n for n in writable.notices)
    finally:
        writable.close()


def test_the_journal_is_written_back_in_the_same_session(tmp_path: Path, make_read_only: ReadOnly,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "chats.sqlite3"
    [old] = _fill(path, conversations=1)
    make_read_only(path)
    store = HistoryStore(path)
    try:
        conv = store.create_conversation(title="while read-only")
        make_read_only.unlock(path)
        monkeypatch.setattr(history, "RETRY_S", 0.0)
        store._next_retry = 0.0  # the retry interval passed
        msg = store.add_message(conv.id, "user", "after the fix")  # the caller still holds the journal id
        assert msg.id > 0 and msg.conversation_id > 0
        assert store.get_conversation(conv.id).title == "while read-only"
        assert store.read_only is None
        assert not path.with_name("chats.sqlite3.pending.json").exists()
        assert old in [c.id for c in store.list_conversations()]
    finally:
        store.close()


@pytest.mark.parametrize("content", [
    "{ not json",
    json.dumps({"format": "gemmadesk-pending-chats", "version": 1,
                "message_updates": [{"id": 1, "content = 'x', role": "injected"}]}),
    json.dumps({"format": "gemmadesk-pending-chats", "version": 1,
                "messages": [{"id": 5, "conversation_id": 1}]}),
    json.dumps({"format": "gemmadesk-pending-chats", "version": 9}),
])
def test_a_hostile_journal_is_kept_aside_not_replayed(tmp_path: Path, content: str) -> None:
    path = tmp_path / "chats.sqlite3"
    _fill(path, conversations=1)
    journal = path.with_name("chats.sqlite3.pending.json")
    journal.write_text(content)
    store = HistoryStore(path)
    try:
        assert not journal.exists()
        [aside] = tmp_path.glob("chats.sqlite3.pending.json.unreadable-*")
        assert aside.read_text() == content
        assert any("could not be read" in n for n in store.notices)
        assert [m.role for m in store.messages(1)] == ["user", "assistant"], "nothing was changed"
    finally:
        store.close()


def test_an_old_history_that_cannot_be_upgraded_says_why(tmp_path: Path, make_read_only: ReadOnly
                                                         ) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    history.MIGRATIONS[0](db)
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    make_read_only(path)
    with pytest.raises(HistoryError, match="older GemmaDesk and must be upgraded, but it cannot be written"):
        HistoryStore(path)


def test_changes_to_existing_rows_wait_in_the_journal_and_are_applied_when_writable(
    tmp_path: Path, make_read_only: ReadOnly, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rename and a reply's final text for rows that are already in the database, made while it is
    read-only: both wait in the journal (as updates of those rows, not as new rows) and reach the database
    once it can be written; nothing else changes."""
    path = tmp_path / "chats.sqlite3"
    store = HistoryStore(path)
    conv = store.create_conversation(title="before")
    store.add_message(conv.id, "user", "question")
    reply = store.add_message(conv.id, "assistant", "par", status="partial")
    store.close()
    make_read_only(path)
    store = HistoryStore(path)
    try:
        store.rename(conv.id, "after")
        store.finish_reply(reply.id, "partial and finished", "")
        journal = json.loads(path.with_name("chats.sqlite3.pending.json").read_text())
        assert journal["conversation_updates"] and journal["message_updates"], "updates of existing rows"
        assert not journal["conversations"] and not journal["messages"], "no new rows"
        make_read_only.unlock(path)
        monkeypatch.setattr(history, "RETRY_S", 0.0)
        store._next_retry = 0.0
        store.add_message(conv.id, "user", "next")  # the next write flushes the journal
    finally:
        store.close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("SELECT title FROM conversations").fetchall() == [("after",)]
        rows = db.execute("SELECT role, content, status FROM messages ORDER BY id").fetchall()
    finally:
        db.close()
    assert rows == [("user", "question", "complete"), ("assistant", "partial and finished", "complete"),
                    ("user", "next", "complete")]
