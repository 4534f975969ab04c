"""Attachments in the chat history (issue 14 phase 2): referenced from messages by content hash, files in
the real AttachmentStore beside the database, a numbered migration, garbage collection when chats are
deleted (never through links, never a file the store did not write), exports. Real SQLite, real files.

On the old code (no attachments in the history) every test here fails; ``test_a_message_with_only_an_image
_is_part_of_the_prompt`` is the regression test for ``chat_messages`` dropping a message without text.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gemmadesk.core import history
from gemmadesk.core.attachments import AttachmentStore
from gemmadesk.core.history import HistoryError, HistoryStore, attachment_refs
from gemmadesk.core.paths import app_paths
from gemmadesk.core.types import Attachment, ChatMessage
from tests.support.media_files import png, wav
from tests.support.readonly import ReadOnly, read_only_files


@pytest.fixture
def hist() -> Iterator[HistoryStore]:
    store = HistoryStore()
    yield store
    store.close()


@pytest.fixture
def put(tmp_path: Path, hist: HistoryStore) -> Callable[[bytes, str], Attachment]:
    incoming = tmp_path / "picked"
    incoming.mkdir()

    def store(data: bytes, name: str) -> Attachment:
        (incoming / name).write_bytes(data)
        return hist.attachments.put(incoming / name)

    return store


@pytest.fixture
def make_read_only() -> Iterator[ReadOnly]:
    with read_only_files() as files:
        yield files


def test_the_default_history_keeps_attachments_in_the_data_folder(hist: HistoryStore) -> None:
    assert hist.attachments.root == app_paths().data_dir / "attachments"
    assert AttachmentStore().root == hist.attachments.root  # where the window and the CLI put them


def test_messages_reference_attachments_and_read_them_back(
    tmp_path: Path, hist: HistoryStore, put: Callable[[bytes, str], Attachment]
) -> None:
    photo, clip = put(png(64, 48), "Holiday photo.png"), put(wav(0.2), "voice.wav")
    conv = hist.create_conversation()
    saved = hist.add_message(conv.id, "user", "Look and listen", attachments=(photo, clip))
    assert [a.sha256 for a in saved.attachments] == [photo.sha256, clip.sha256]
    hist.close()

    again = HistoryStore()
    try:
        [msg] = again.messages(conv.id)
        assert msg.attachments == (photo, clip)  # kind, stored path, hash, mime, the name it was attached as
        assert msg.attachments[0].name == "Holiday photo.png"
        assert msg.attachments[0].path.read_bytes() == png(64, 48)
        assert again.chat_messages(conv.id) == [ChatMessage("user", "Look and listen", (photo, clip))]
    finally:
        again.close()


def test_a_message_with_only_an_image_is_part_of_the_prompt(
    hist: HistoryStore, put: Callable[[bytes, str], Attachment]
) -> None:
    photo = put(png(32, 32), "only.png")
    conv = hist.create_conversation()
    hist.add_message(conv.id, "user", "", attachments=(photo,))
    hist.add_message(conv.id, "assistant", "A square.")
    assert hist.chat_messages(conv.id) == [ChatMessage("user", "", (photo,)), ChatMessage("assistant", "A square.")]
    assert hist.get_conversation(conv.id).title == "only.png"  # titled by the file when there is no text


def test_migration_from_the_previous_schema_keeps_every_row(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    before = history.MIGRATIONS.index(history._attachments_migration)
    for version in range(before):
        history.MIGRATIONS[version](db)
    db.execute(f"PRAGMA user_version = {before}")
    db.execute("INSERT INTO conversations (id, title, created_at, updated_at) VALUES (1, 'old', 1, 1)")
    db.execute("INSERT INTO messages (conversation_id, role, content, created_at) VALUES (1, 'user', 'hi', 1)")
    db.commit()
    db.close()
    store = HistoryStore(path)
    try:
        [msg] = store.messages(1)
        assert (msg.content, msg.attachments) == ("hi", ())
        assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == history.SCHEMA_VERSION
    finally:
        store.close()


@pytest.mark.parametrize("stored", [
    '[{"sha256": "../../etc/passwd", "kind": "image", "mime": "image/png", "ext": ".png"}]',
    '[{"sha256": "' + "a" * 64 + '", "kind": "image", "mime": "image/png", "ext": "/../../x"}]',
    '[{"sha256": "' + "a" * 64 + '", "kind": "video", "mime": "image/png", "ext": ".png"}]',
    '[{"sha256": "' + "a" * 64 + '", "kind": "image", "mime": "text/html", "ext": ".png"}]',
    "not json", "{}", "[[[[" * 10_000, '"' + "x" * 100_000 + '"', "[1, null, true]",
])
def test_a_damaged_or_hand_edited_attachment_list_is_ignored_never_used_as_a_path(
    hist: HistoryStore, stored: str
) -> None:
    conv = hist.create_conversation()
    msg = hist.add_message(conv.id, "user", "hi")
    db = sqlite3.connect(hist.path)
    db.execute("UPDATE messages SET attachments_json = ? WHERE id = ?", (stored, msg.id))
    db.commit()
    db.close()
    assert hist.get_message(msg.id).attachments == ()
    assert attachment_refs(stored) == []


def test_deleting_a_chat_deletes_the_attachments_no_other_chat_uses(
    hist: HistoryStore, put: Callable[[bytes, str], Attachment]
) -> None:
    shared, own = put(png(40, 40, seed=1), "shared.png"), put(png(40, 40, seed=2), "own.png")
    first, second = hist.create_conversation(), hist.create_conversation()
    hist.add_message(first.id, "user", "both", attachments=(shared, own))
    hist.add_message(second.id, "user", "shared", attachments=(shared,))
    stranger = hist.attachments.root / "notes.txt"  # not an attachment name: never GemmaDesk's to delete
    stranger.write_text("mine")
    hist.delete_conversation(first.id)
    assert not own.path.exists()
    assert shared.path.exists(), "another chat still uses it"
    hist.delete_conversation(second.id)
    assert not shared.path.exists()
    assert stranger.read_text() == "mine"


def test_deleting_never_follows_a_link_out_of_the_store(
    tmp_path: Path, hist: HistoryStore, put: Callable[[bytes, str], Attachment]
) -> None:
    photo = put(png(20, 20), "p.png")
    conv = hist.create_conversation()
    hist.add_message(conv.id, "user", "x", attachments=(photo,))
    users_file = tmp_path / "users-own.png"
    users_file.write_bytes(png(20, 20))
    photo.path.unlink()
    photo.path.symlink_to(users_file)  # someone replaced the stored file with a link to their own file
    hist.delete_conversation(conv.id)
    assert users_file.read_bytes() == png(20, 20)
    assert photo.path.is_symlink(), "a link is not GemmaDesk's file: left alone"


def test_editing_a_message_collects_the_attachments_of_the_turns_it_removes(
    hist: HistoryStore, put: Callable[[bytes, str], Attachment]
) -> None:
    first, later = put(png(30, 30, seed=3), "first.png"), put(png(30, 30, seed=4), "later.png")
    conv = hist.create_conversation()
    msg = hist.add_message(conv.id, "user", "one", attachments=(first,))
    hist.add_message(conv.id, "assistant", "ok")
    hist.add_message(conv.id, "user", "two", attachments=(later,))
    remaining = hist.edit_user_message(msg.id, "one, edited")
    assert [m.attachments for m in remaining] == [(first,)]  # the edited message keeps its own
    assert first.path.exists() and not later.path.exists()


def test_no_file_is_deleted_while_a_damaged_copy_of_the_history_is_kept_aside(
    hist: HistoryStore, put: Callable[[bytes, str], Attachment]
) -> None:
    photo = put(png(24, 24), "kept.png")
    conv = hist.create_conversation()
    hist.add_message(conv.id, "user", "x", attachments=(photo,))
    aside = hist.path.with_name(hist.path.name + ".damaged-20250101-000000")
    aside.write_bytes(b"its chats may reference the same pictures")
    hist.delete_conversation(conv.id)
    assert photo.path.exists()
    assert hist.sweep_attachments(min_age_s=0) == 0


def test_the_start_up_sweep_removes_old_unreferenced_files_only(
    hist: HistoryStore, put: Callable[[bytes, str], Attachment]
) -> None:
    used, orphan, fresh = (put(png(22, 22, seed=i), f"{i}.png") for i in range(3))
    conv = hist.create_conversation()
    hist.add_message(conv.id, "user", "x", attachments=(used,))
    an_hour_ago = time.time() - 7200
    for att in (used, orphan):
        os.utime(att.path, (an_hour_ago, an_hour_ago))
    assert hist.sweep_attachments() == 1
    assert used.path.exists() and not orphan.path.exists()
    assert fresh.path.exists(), "just attached (perhaps by another GemmaDesk process): kept for now"


def test_an_in_memory_history_never_deletes_files(put: Callable[[bytes, str], Attachment]) -> None:
    photo = put(png(26, 26), "cli.png")
    memory = HistoryStore(":memory:")
    try:
        conv = memory.create_conversation()
        memory.add_message(conv.id, "user", "x", attachments=(photo,))
        assert memory.messages(conv.id)[0].attachments[0].path == photo.path
        memory.delete_conversation(conv.id)
        assert memory.sweep_attachments(min_age_s=0) == 0
        assert photo.path.exists(), "the saved chats (another database) may use it"
    finally:
        memory.close()


def test_exports_include_the_attachments(
    tmp_path: Path, hist: HistoryStore, put: Callable[[bytes, str], Attachment]
) -> None:
    photo, clip = put(png(50, 20), "A [strange] name*.png"), put(wav(0.1), "clip.wav")
    conv = hist.create_conversation()
    hist.add_message(conv.id, "user", "What is in these?", attachments=(photo, clip))
    hist.add_message(conv.id, "assistant", "A tone and a stripe.")
    data = json.loads(json.dumps(hist.export_json(conv.id)))
    [user, _reply] = data["messages"]
    assert [(a["kind"], a["name"], a["file"]) for a in user["attachments"]] == [
        ("image", "A [strange] name*.png", f"attachments/{photo.sha256}.png"),
        ("audio", "clip.wav", f"attachments/{clip.sha256}.wav"),
    ]
    md = hist.export_markdown(conv.id)
    assert f"![A \\[strange\\] name\\*\\.png](attachments/{photo.sha256}.png)" in md
    assert f"[Audio: clip\\.wav](attachments/{clip.sha256}.wav)" in md
    folder = hist.export_folder(conv.id, tmp_path / "export")
    assert (folder / f"attachments/{photo.sha256}.png").read_bytes() == png(50, 20)
    assert (folder / f"attachments/{clip.sha256}.wav").read_bytes() == wav(0.1)
    assert json.loads((folder / "chat.json").read_text())["messages"][0]["attachments"][1]["file"] == (
        f"attachments/{clip.sha256}.wav")
    written = (folder / "chat.md").read_text()
    assert "A tone and a stripe." in written and f"(attachments/{photo.sha256}.png)" in written


def test_a_read_only_history_keeps_attachment_references_in_its_journal(
    tmp_path: Path, make_read_only: ReadOnly
) -> None:
    path = tmp_path / "ro" / "chats.sqlite3"
    HistoryStore(path).close()
    (tmp_path / "journal.png").write_bytes(png(28, 28))
    photo = AttachmentStore(root=path.parent / "attachments").put(tmp_path / "journal.png")
    make_read_only(path)
    store = HistoryStore(path)
    try:
        assert store.read_only is not None
        conv = store.create_conversation()
        store.add_message(conv.id, "user", "", attachments=(photo,))
        assert store.messages(conv.id)[0].attachments == (photo,)
        with pytest.raises(HistoryError):
            store.delete_conversation(1)  # refused while unwritable; and nothing collected
        assert store.sweep_attachments(min_age_s=0) == 0
    finally:
        store.close()
    make_read_only.unlock(path)
    writable = HistoryStore(path)
    try:
        [conv] = writable.list_conversations()
        assert writable.messages(conv.id)[0].attachments == (photo,)
        assert photo.path.exists()
    finally:
        writable.close()


def test_an_old_journal_without_attachments_is_still_replayed(tmp_path: Path) -> None:
    path = tmp_path / "chats.sqlite3"
    HistoryStore(path).close()
    journal = path.with_name("chats.sqlite3.pending.json")
    journal.write_text(json.dumps({
        "format": "gemmadesk-pending-chats", "version": 1, "next_id": -3,
        "conversations": [{"id": -1, "title": "t", "created_at": 1.0, "updated_at": 1.0, "system_prompt": "",
                           "model": None}],
        "messages": [{"id": -2, "conversation_id": -1, "role": "user", "content": "from before", "thoughts": "",
                      "model": None, "settings_json": "{}", "stats_json": "{}", "status": "complete",
                      "created_at": 1.0, "updated_at": 1.0}],
        "conversation_updates": [], "message_updates": []}))
    store = HistoryStore(path)
    try:
        [conv] = store.list_conversations()
        assert [(m.content, m.attachments) for m in store.messages(conv.id)] == [("from before", ())]
        assert not journal.exists()
    finally:
        store.close()
