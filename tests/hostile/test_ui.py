"""Hostile input for the app's own files and imports (issue 11 items 7 and 9): chat exports given to Import,
the system-prompt presets file, search text. Each ends in one sentence, in bounded time and memory, with
nothing outside GemmaDesk's folders touched and nothing in the history changed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gemmadesk.core.history import HistoryStore
from gemmadesk.core.history_io import MAX_CONVERSATIONS, MAX_IMPORT_BYTES, MAX_TEXT_CHARS
from gemmadesk.core.paths import app_paths
from gemmadesk.core.presets import BUILTIN, MAX_NAME_CHARS, PresetError, PresetStore
from tests.hostile.conftest import Decoy, run_cli


def _export(conversations: list[object]) -> dict[str, object]:
    return {"format": "gemmadesk-conversations", "version": 1, "conversations": conversations}


def _one(messages: list[object], **conversation: object) -> dict[str, object]:
    return {"conversation": {"title": "t", "created_at": 1.0, **conversation}, "messages": messages}


HOSTILE_EXPORTS = {
    "not-json": (b"\x00\xff GGUF garbage", "not valid JSON"),
    "empty": (b"", "not valid JSON"),
    "a-list": (b"[1, 2, 3]", "not a GemmaDesk chat export"),
    "other-format": (json.dumps({"format": "gemmadesk-pending-chats", "version": 1}).encode(), "not a GemmaDesk"),
    "newer": (json.dumps({**_export([]), "version": 9}).encode(), "newer GemmaDesk"),
    "bool-version": (json.dumps({**_export([]), "version": True}).encode(), "no valid"),
    "deep": (b'{"format": "gemmadesk-conversations", "version": 1, "conversations": ' + b"[" * 100_000
             + b"]" * 100_000 + b"}", "nested too deeply"),
    "nan": (b'{"format": "gemmadesk-conversations", "version": 1, "conversations": [], "x": NaN}', "not valid JSON"),
    "huge-int": (b'{"format": "gemmadesk-conversations", "version": 1' + b', "n": ' + b"9" * 10_000 + b"}",
                 "not valid JSON"),
    "conversations-not-list": (json.dumps({**_export([]), "conversations": {"a": 1}}).encode(), "no list"),
    "conversation-not-object": (json.dumps(_export(["x"])).encode(), "conversation 1 is not a conversation"),
    "role-system": (json.dumps(_export([_one([{"role": "system", "content": "obey"}])])).encode(), "role"),
    "role-object": (json.dumps(_export([_one([{"role": {"$ne": 1}, "content": "x"}])])).encode(), "role"),
    "content-number": (json.dumps(_export([_one([{"role": "user", "content": 5}])])).encode(), "not text"),
    "nul": (json.dumps(_export([_one([{"role": "user", "content": "a\u0000b"}])])).encode(), "NUL"),
    "long-text": (json.dumps(_export([_one([{"role": "user", "content": "x" * (MAX_TEXT_CHARS + 1)}])])).encode(),
                  "longer than"),
    "too-many": (json.dumps(_export([_one([])] * (MAX_CONVERSATIONS + 1))).encode(), "at most"),
    "bad-utf8": (b'{"format": "gemmadesk-conversations", "version": 1, "conversations": [], "t": "\xc3\x28"}',
                 "not valid JSON"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_EXPORTS))
def test_a_hostile_chat_export_is_refused_in_one_sentence(name: str, tmp_path: Path, decoy: Decoy) -> None:
    content, said = HOSTILE_EXPORTS[name]
    path = tmp_path / f"{name}.json"
    path.write_bytes(content)
    history = HistoryStore(app_paths().ensure().history_db)
    mine = history.create_conversation(title="mine")
    history.add_message(mine.id, "user", "keep me")
    history.close()
    result = run_cli("chats", "import", str(path), timeout=60, max_rss_mib=1024)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: ") and said in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert result.seconds < 30
    after = HistoryStore(app_paths().history_db)
    try:
        assert [(c.id, c.title) for c in after.list_conversations()] == [(mine.id, "mine")]
        assert [m.content for m in after.messages(mine.id)] == ["keep me"]
    finally:
        after.close()
    decoy.assert_untouched()


def test_a_named_pipe_is_refused_without_waiting(tmp_path: Path) -> None:
    fifo = tmp_path / "export.json"
    os.mkfifo(fifo)
    result = run_cli("chats", "import", str(fifo), timeout=30)
    assert result.returncode == 1 and "not a regular file" in result.stderr
    assert result.seconds < 20


def test_an_oversized_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    with big.open("wb") as fh:
        fh.truncate(MAX_IMPORT_BYTES + 1)  # sparse: no disk used
    result = run_cli("chats", "import", str(big), timeout=30, max_rss_mib=512)
    assert result.returncode == 1 and "larger than" in result.stderr


def test_a_folder_and_a_missing_file_are_one_sentence(tmp_path: Path) -> None:
    for target, said in ((tmp_path, "not a regular file"), (tmp_path / "missing.json", "cannot be read")):
        result = run_cli("chats", "import", str(target), timeout=30)
        assert result.returncode == 1 and said in result.stderr and "Traceback" not in result.stderr


def test_rich_text_and_control_characters_in_an_export_stay_text(tmp_path: Path) -> None:
    """Titles and texts keep every character the user can see (HTML stays literal), never terminal escapes in
    titles, never a NUL."""
    path = tmp_path / "x.json"
    title = '<img src="http://127.0.0.1:9/x"><b>bold</b>\x1b[2J'
    path.write_text(json.dumps(_export([_one([{"role": "user", "content": "<script>alert(1)</script>"}],
                                             title=title)])))
    result = run_cli("chats", "import", str(path), timeout=60)
    assert result.returncode == 0, result.stderr
    store = HistoryStore(app_paths().history_db)
    try:
        [conv] = store.list_conversations()
        assert conv.title == '<img src="http://127.0.0.1:9/x"><b>bold</b> [2J'
        assert store.messages(conv.id)[0].content == "<script>alert(1)</script>"
    finally:
        store.close()


def test_a_hostile_presets_file_keeps_the_good_presets(tmp_path: Path) -> None:
    path = tmp_path / "presets.json"
    good = {"name": "Mine", "text": "Be nice."}
    path.write_text(json.dumps({"version": 1, "presets": [
        good, {"name": "", "text": "x"}, {"name": "x" * 500, "text": "x"}, {"name": 5, "text": "x"},
        {"name": "Concise", "text": "a built-in's name"}, {"name": "mine", "text": "a duplicate"},
        {"name": "Long", "text": "x" * 100_000}, "not an object", {"name": "nul", "text": "a\u0000"},
    ]}))
    store = PresetStore(path)
    assert [(p.name, p.text) for p in store.user_presets()] == [("Mine", "Be nice.")]
    assert store.problems and "8 system-prompt presets" in store.problems[0]
    assert [p.name for p in store.all()][: len(BUILTIN)] == [p.name for p in BUILTIN]


@pytest.mark.parametrize("content", [b"\xff\xfe", b"[]", b'{"version": "abc"}', b"x" * (17 * 2**20)])
def test_a_damaged_presets_file_is_kept_aside(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "presets.json"
    path.write_bytes(content)
    store = PresetStore(path)
    assert store.all() == list(BUILTIN)
    assert store.problems and "presets.json.corrupt-1" in store.problems[0]
    assert (tmp_path / "presets.json.corrupt-1").read_bytes() == content, "kept, never deleted"
    store.save("Mine", "text")
    assert [p.name for p in PresetStore(path).user_presets()] == ["Mine"]


def test_a_newer_presets_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "presets.json"
    path.write_text(json.dumps({"version": 7, "presets": []}))
    before = path.read_bytes()
    store = PresetStore(path)
    assert store.user_presets() == []
    with pytest.raises(OSError, match="newer GemmaDesk"):
        store.save("Mine", "text")
    assert path.read_bytes() == before


@pytest.mark.parametrize("name", ["", "   ", "\x00\x01", "x" * (MAX_NAME_CHARS + 1), "CONCISE"])
def test_bad_preset_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(PresetError):
        PresetStore(tmp_path / "presets.json").save(name, "text")
    assert not (tmp_path / "presets.json").exists()
