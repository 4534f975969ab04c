"""Full-text search of the chat history (issue 11 item 9): SQLite FTS5 on real databases, the migration that
adds the index to an existing history, and the LIKE fallback for a SQLite build without FTS5.

The fallback cannot be caused for real here: this Python's SQLite has FTS5 compiled in, and no SQLite build
without it is available offline. Those tests replace the one probe ``history.fts5_available`` (a fake for a
fault we cannot cause, as the team's rule allows); everything else is the real database."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from gemmadesk.core import history as history_mod
from gemmadesk.core.history import FTS_TABLE, SCHEMA_VERSION, HistoryStore, migrate
from gemmadesk.core.search_text import fts_query, highlight_pattern, match_spans, search_terms, snippet


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    s = HistoryStore(tmp_path / "chats.sqlite3")
    yield s
    s.close()


def _fill(store: HistoryStore) -> dict[str, int]:
    a = store.create_conversation(title="Strings")
    store.add_message(a.id, "user", "How do I reverse a string in Python?")
    r1 = store.add_message(a.id, "assistant", "Use slicing: text[::-1] reverses it. Slicing makes a copy.")
    b = store.create_conversation(title="Cooking")
    store.add_message(b.id, "user", "A recipe for a café crème, please")
    r2 = store.add_message(b.id, "assistant", "Brew an espresso, then add hot milk.")
    return {"strings": a.id, "cooking": b.id, "slicing": r1.id, "milk": r2.id}


def _message_hits(store: HistoryStore, text: str) -> list[int | None]:
    return [h.message_id for h in store.search(text) if h.message_id is not None]


def test_search_uses_the_fts5_index(store: HistoryStore) -> None:
    assert store.fts, "this SQLite has FTS5: search must use it"
    ids = _fill(store)
    names = {r[0] for r in store._db.execute("SELECT name FROM sqlite_master")}
    assert {FTS_TABLE, "messages_fts_insert", "messages_fts_delete", "messages_fts_update"} <= names
    plan = " ".join(str(r[-1]) for r in store._db.execute(
        f"EXPLAIN QUERY PLAN SELECT rowid FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH ?", ('"slic"*',)))
    assert "VIRTUAL TABLE INDEX" in plan
    assert _message_hits(store, "slicing") == [ids["slicing"]]


def test_terms_match_word_starts_in_any_order(store: HistoryStore) -> None:
    """Regression (issue 11 item 9): the LIKE search looked for the exact phrase, so "reverse string" or "rev
    str" found nothing in "How do I reverse a string in Python?"."""
    ids = _fill(store)
    question = store.messages(ids["strings"])[0].id
    for query in ("reverse string", "rev str", "STRING reverse", "python"):
        assert _message_hits(store, query) == [question], query
    assert _message_hits(store, "cafe creme") == [store.messages(ids["cooking"])[0].id], "accents do not matter"
    assert _message_hits(store, "reverse milk") == [], "every term must appear in the message"
    assert _message_hits(store, "everse") == [], "a term matches the start of a word"


@pytest.mark.parametrize("query", ['"', '""', "*", "NEAR(a b)", "a AND OR NOT", "content:slicing", "^slicing",
                                   "slic*ing", "(", "-slicing", "'); DROP TABLE messages; --", "\x00", "ǅ" * 5000])
def test_fts_syntax_in_a_query_is_text(store: HistoryStore, query: str) -> None:
    """Whatever the user types is never FTS5 syntax and never an error."""
    _fill(store)
    hits = store.search(query)
    assert all(h.message_id is None or "slic" in h.snippet.lower() for h in hits)
    assert store.list_conversations(), "nothing was dropped"


def test_the_index_follows_every_change(store: HistoryStore) -> None:
    ids = _fill(store)
    reply = store.begin_reply(ids["strings"], model="m")
    store.update_partial(reply, "partial words about lighthouses", "")
    assert _message_hits(store, "lighthouses") == [reply]
    store.finish_reply(reply, "finished words about harbours", "", {"completion_tokens": 3})
    assert _message_hits(store, "lighthouses") == []
    assert _message_hits(store, "harbours") == [reply]
    question = store.messages(ids["strings"])[0].id
    store.edit_user_message(question, "How do I sort a list?")  # also deletes the later messages
    assert _message_hits(store, "reverse") == []
    assert _message_hits(store, "sort list") == [question]
    assert _message_hits(store, "harbours") == []
    store.delete_conversation(ids["cooking"])  # messages go by ON DELETE CASCADE: the triggers still run
    assert _message_hits(store, "espresso") == []
    check = store._db.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rank) VALUES ('integrity-check', 1)")
    assert check is not None  # raises "database disk image is malformed" if the index and the rows differ


def test_an_older_history_is_indexed_when_migrated(tmp_path: Path) -> None:
    """A history from before the index (version 3) gets it, filled with every existing message."""
    path = tmp_path / "chats.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    for step in history_mod.MIGRATIONS[:3]:
        step(db)
    db.execute("PRAGMA user_version = 3")
    db.execute("INSERT INTO conversations (id, title, created_at, updated_at) VALUES (1, 'old', 1, 1)")
    db.execute("INSERT INTO messages (conversation_id, role, content, created_at) VALUES (1, 'user', 'an old "
               "question about tides', 1)")
    db.close()
    store = HistoryStore(path)
    try:
        assert store.fts
        assert int(store._db.execute("PRAGMA user_version").fetchone()[0]) == SCHEMA_VERSION
        assert len(_message_hits(store, "tides")) == 1
    finally:
        store.close()


def test_without_fts5_search_falls_back_to_like(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SQLite build without FTS5 (faked: see the module docstring): the history still migrates, has no
    triggers that would fail every write, and finds the same messages with LIKE."""
    path = tmp_path / "chats.sqlite3"
    with_fts = HistoryStore(path)
    ids = _fill(with_fts)
    expected = {q: _message_hits(with_fts, q) for q in ("reverse string", "python", "slicing", "milk", "x y")}
    with_fts.close()

    monkeypatch.setattr(history_mod, "fts5_available", lambda db: False)
    store = HistoryStore(path)
    try:
        assert not store.fts
        names = {r[0] for r in store._db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        assert not any(n.startswith("messages_fts") for n in names), "no trigger may need the FTS5 module"
        for query, hits in expected.items():
            assert _message_hits(store, query) == hits, query
        late = store.add_message(ids["strings"], "user", "a question about lighthouses").id
        assert _message_hits(store, "lighthouses") == [late]
    finally:
        store.close()

    monkeypatch.undo()
    again = HistoryStore(path)  # FTS5 back: the index is rebuilt, with the message written meanwhile
    try:
        assert again.fts
        assert _message_hits(again, "lighthouses") == [late]
        assert _message_hits(again, "slicing") == [ids["slicing"]]
    finally:
        again.close()


def test_a_fresh_history_without_fts5_migrates_and_searches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history_mod, "fts5_available", lambda db: False)
    store = HistoryStore(tmp_path / "chats.sqlite3")
    try:
        assert not store.fts
        assert int(store._db.execute("PRAGMA user_version").fetchone()[0]) == SCHEMA_VERSION
        ids = _fill(store)
        assert _message_hits(store, "rev str") == [store.messages(ids["strings"])[0].id]
        assert _message_hits(store, "50%") == []
    finally:
        store.close()


def test_the_fts_migration_is_idempotent(tmp_path: Path) -> None:
    """Killed between the index and the version bump: running the migration again is harmless."""
    db = sqlite3.connect(tmp_path / "x.sqlite3", isolation_level=None)
    migrate(db)
    history_mod._fts_index(db)
    history_mod._fts_index(db)
    assert history_mod._fts_complete(db)
    db.close()


def test_a_read_only_history_still_searches(tmp_path: Path) -> None:
    from tests.support.readonly import read_only_files

    path = tmp_path / "chats.sqlite3"
    store = HistoryStore(path)
    ids = _fill(store)
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    with read_only_files() as lock:
        lock(path)
        ro = HistoryStore(path)
        try:
            assert ro.read_only is not None
            assert ro.fts
            assert _message_hits(ro, "slicing") == [ids["slicing"]]
        finally:
            ro.close()


def test_search_text_helpers() -> None:
    assert search_terms("  Reverse, a STRING!  reverse ") == ["reverse", "a", "string"]
    assert search_terms("my_var") == ["my", "var"], "underscores separate terms, as in FTS5's unicode61"
    assert search_terms("*") == []
    assert len(search_terms(" ".join(f"w{i}" for i in range(100)))) == 12
    assert fts_query(['say "hi"', "x"]) == '"say ""hi"""* "x"*'
    assert match_spans("Slicing and re-slicing; unslicing", ["slic"]) == [(0, 7), (15, 22)]
    assert highlight_pattern([]) == ""
    text = "a" * 200 + " the needle here " + "b" * 200
    shown = snippet(text, ["needle"])
    assert "needle" in shown and shown.startswith("…") and shown.endswith("…") and len(shown) < 160
