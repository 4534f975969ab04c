"""Chat exports and imports on real SQLite files (issue 11 item 9), and ``gemmadesk chats`` in a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gemmadesk.core.history import HistoryError, HistoryStore
from gemmadesk.core.history_io import (
    ChatImportError,
    export_all,
    export_file_name,
    import_file,
    parse_export,
    write_export,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    s = HistoryStore(tmp_path / "chats.sqlite3")
    yield s
    s.close()


def _chat(store: HistoryStore, title: str = "Tides") -> int:
    conv = store.create_conversation(title=title, system_prompt="Be brief.", model="gemma-4-e2b")
    store.add_message(conv.id, "user", "Why are there two tides a day?")
    store.add_message(conv.id, "assistant", "The Moon pulls the water on both sides.", thoughts="gravity",
                      model="gemma-4-e2b", settings={"temperature": 0.7}, stats={"completion_tokens": 9})
    reply = store.begin_reply(conv.id, model="gemma-4-e2b")
    store.update_partial(reply, "And the Sun", "")  # left unfinished: an interrupted reply
    return conv.id


def test_one_chat_round_trips_through_json(store: HistoryStore, tmp_path: Path) -> None:
    cid = _chat(store)
    path = tmp_path / "tides.json"
    assert write_export(store, path, cid, "json") == path.stat().st_size
    before = store.messages(cid)
    other = HistoryStore(tmp_path / "other.sqlite3")
    try:
        result = import_file(other, path)
        assert result.skipped == 0 and len(result.conversation_ids) == 1
        new = result.conversation_ids[0]
        conv = other.get_conversation(new)
        assert (conv.title, conv.system_prompt, conv.model) == ("Tides", "Be brief.", "gemma-4-e2b")
        after = other.messages(new)
        assert [(m.role, m.content, m.thoughts, m.status, m.settings, m.stats, m.created_at) for m in after] == \
            [(m.role, m.content, m.thoughts, m.status, m.settings, m.stats, m.created_at) for m in before]
        assert [h.message_id for h in other.search("moon pulls")] == [after[1].id], "imported text is searchable"
    finally:
        other.close()


def test_all_chats_export_and_import_never_touch_existing_chats(store: HistoryStore, tmp_path: Path) -> None:
    a, b = _chat(store, "Tides"), _chat(store, "Moons")
    path = tmp_path / "all.json"
    write_export(store, path, None, "json")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["format"] == "gemmadesk-conversations" and len(data["conversations"]) == 2
    assert [c["conversation"]["title"] for c in data["conversations"]] == ["Tides", "Moons"], "oldest first"

    target = HistoryStore(tmp_path / "target.sqlite3")
    try:
        mine = target.create_conversation(title="Mine")
        target.add_message(mine.id, "user", "my own words")
        first = import_file(target, path)
        assert len(first.conversation_ids) == 2 and mine.id not in first.conversation_ids
        assert [m.content for m in target.messages(mine.id)] == ["my own words"], "an existing chat is unchanged"
        again = import_file(target, path)  # the same file twice: nothing doubled
        assert (again.conversation_ids, again.skipped) == ([], 2)
        assert "already in your chats" in again.summary()
        assert len(target.list_conversations()) == 3
    finally:
        target.close()
    assert {c.id for c in store.list_conversations()} == {a, b}


def test_markdown_export(store: HistoryStore, tmp_path: Path) -> None:
    cid = _chat(store)
    path = tmp_path / export_file_name("Tides: a/b <script>", "md")
    assert path.name == "Tides ab script.md", "a title never becomes a path"
    write_export(store, path, cid, "md")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("# Tides")
    assert "The Moon pulls the water" in text and "<summary>Thoughts</summary>" in text
    assert "(interrupted)" in text, "the unfinished reply says so"


def test_export_all_is_json_ready(store: HistoryStore) -> None:
    _chat(store)
    data = export_all(store)
    assert json.loads(json.dumps(data)) == data


def test_an_import_is_all_or_nothing(store: HistoryStore, tmp_path: Path) -> None:
    data = export_all_with(store)
    data["conversations"][1]["messages"][0]["role"] = "system"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ChatImportError, match="conversation 2, message 1"):
        import_file(store, path)
    assert len(store.list_conversations()) == 2, "nothing of the file was added"


def export_all_with(store: HistoryStore) -> dict[str, Any]:
    _chat(store, "One")
    _chat(store, "Two")
    data = export_all(store)
    for item in data["conversations"]:
        item["conversation"]["created_at"] += 1000  # not the same chats as those in the store
    return data


def test_a_read_only_history_refuses_an_import(tmp_path: Path) -> None:
    from tests.support.readonly import read_only_files

    path = tmp_path / "chats.sqlite3"
    source = HistoryStore(path)
    cid = _chat(source)
    export = tmp_path / "export.json"
    write_export(source, export, cid, "json")
    source.delete_conversation(cid)
    source._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    source.close()
    with read_only_files() as lock:
        lock(path)
        store = HistoryStore(path)
        try:
            with pytest.raises(HistoryError, match="nothing was imported"):
                import_file(store, export)
            assert store.list_conversations() == []
        finally:
            store.close()


def test_parse_keeps_only_known_fields(tmp_path: Path) -> None:
    items = parse_export({"format": "gemmadesk-conversation", "version": 1,
                          "conversation": {"id": 99, "title": "x\x1b[31m\ny", "created_at": -5, "extra": 1},
                          "messages": [{"id": 7, "conversation_id": 99, "role": "user", "content": "hi",
                                        "settings": {"temperature": 0.5, "nested": {"a": 1}, "n": float("nan")},
                                        "attachments": [{"path": "/etc/passwd"}], "status": "weird"}]})
    conv, messages = items[0]
    assert conv["title"] == "x [31m y" and conv["created_at"] > 0
    assert set(messages[0]) == {"role", "content", "thoughts", "model", "settings_json", "stats_json", "status",
                                "created_at", "updated_at"}
    assert json.loads(messages[0]["settings_json"]) == {"temperature": 0.5}
    assert messages[0]["status"] == "complete"


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GEMMADESK_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "gemmadesk", "chats", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=120)  # fmt: skip


def test_cli_lists_searches_exports_and_imports(tmp_path: Path) -> None:
    home = tmp_path / "home"
    from gemmadesk.core.paths import app_paths

    store = HistoryStore(app_paths({"GEMMADESK_HOME": str(home)}).ensure().history_db)
    cid = _chat(store)
    store.close()
    listed = _cli("list", home=home)
    assert listed.returncode == 0 and "Tides" in listed.stdout
    found = _cli("search", "two tides", "--json", home=home)
    assert found.returncode == 0 and json.loads(found.stdout)[0]["conversation_id"] == cid
    assert _cli("search", "nothing-like-this", home=home).returncode == 1
    md = _cli("export", str(cid), home=home)
    assert md.returncode == 0 and md.stdout.startswith("# Tides")
    out = tmp_path / "all.json"
    assert _cli("export", "--all", "-o", str(out), home=home).returncode == 0
    other = tmp_path / "other-home"
    imported = _cli("import", str(out), home=other)
    assert imported.returncode == 0 and "Imported 1 conversation" in imported.stdout
    refused = _cli("import", str(tmp_path), home=other)
    assert refused.returncode == 1 and refused.stderr.startswith("error: ") and "Traceback" not in refused.stderr
