"""Hostile input for the model store, the downloads, the settings and the chat history (issue 10, items 2–5,
11 and 12), as a user meets it: `gemmadesk-cli` in a child process with memory and time caps, against the
local Hub server acting as a hostile mirror (``HubServer.serve_any``: it answers any path and any commit).

Each case asserts the one-line message and the exit code, that no traceback is printed, the time and
memory bounds, and that nothing in the user's decoy folder (beside GEMMADESK_HOME) was created, changed or
deleted. The regression cases all failed on the code before this module was added.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from gemmadesk.core.catalog import load_catalog
from gemmadesk.core.history import HistoryStore
from gemmadesk.core.paths import app_paths
from gemmadesk.core.store import ModelStore
from tests.hostile.conftest import CliResult, Decoy, _snapshot, run_cli
from tests.support.hubserver import HubServer
from tests.support.readonly import ReadOnly, read_only_files
from tests.support.tiny_gguf import gguf_bytes, write_gguf
from tests.ui.hardware_fixtures import DESKTOP_24GB_NVIDIA

STORE_RSS_MIB = 600  # the store commands never load a model
CHAT_RSS_MIB = 2048
MiB = 1024 * 1024


def _ok_message(result: CliResult, *fragments: str, code: int = 1) -> str:
    """One clear `error: ...` line (or none, for code 0), no traceback, inside the time and memory caps."""
    assert result.returncode == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    err = result.stderr.strip()
    if code:
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, err
        for fragment in fragments:
            assert fragment in errors[0], errors[0]
        return errors[0]
    for fragment in fragments:
        assert fragment in err, err
    return err


def _bounded(result: CliResult, rss_mib: int = STORE_RSS_MIB, seconds: float = 60) -> None:
    assert result.seconds < seconds
    assert result.max_rss_mib < rss_mib


@pytest.fixture
def mirror(hub: HubServer, tmp_path: Path) -> HubServer:
    """A mirror that answers any file name with a small, valid GGUF."""
    hub.serve_any(write_gguf(tmp_path / "mirror" / "anything.gguf", tensor_bytes=256 * 1024))
    return hub


# ----- issue 10.2: pull never writes outside the models folder ------------------------------------------
@pytest.mark.parametrize("spec", [
    "org/repo/x/../../../../../users-own-files/OUTSIDE/f.gguf",  # climbs out of the models folder
    "org/repo/{decoy}/OUTSIDE/f.gguf",  # an absolute FILE: org/repo//abs/path.gguf
    "org/repo/..\\..\\..\\users-own-files\\OUTSIDE\\f.gguf",  # backslashes
    "../../users-own-files/OUTSIDE/f.gguf",  # a repo id that is not one
])
def test_pull_refuses_names_that_leave_the_models_folder(mirror: HubServer, decoy: Decoy, spec: str) -> None:
    spec = spec.replace("{decoy}", str(decoy.root))  # absolute: "org/repo//tmp/.../OUTSIDE/f.gguf"
    result = run_cli("pull", spec, timeout=60, max_rss_mib=STORE_RSS_MIB)
    _ok_message(result)
    _bounded(result)
    decoy.assert_untouched()
    assert mirror.state.requests == [], "refused before asking the mirror anything"


def test_a_mirror_sending_a_commit_id_that_is_a_path_is_refused(hub: HubServer, tmp_path: Path, decoy: Decoy) -> None:
    """With use_hf_cache the commit id becomes a snapshot folder: a mirror's ``../../x`` must not."""
    hub.serve_any(write_gguf(tmp_path / "mirror" / "f.gguf", tensor_bytes=64 * 1024),
                  commit="../../../../users-own-files/OUTSIDE")
    settings = app_paths().settings_file
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"schema_version": 2, "use_hf_cache": True}))
    result = run_cli("pull", "org/repo/f.gguf", timeout=60, max_rss_mib=STORE_RSS_MIB)
    _ok_message(result, "invalid commit id")
    _bounded(result)
    decoy.assert_untouched()
    assert not any(r.method == "GET" for r in hub.state.requests), "refused before downloading"


def test_hub_file_names_with_nul_or_control_characters_are_refused() -> None:
    from gemmadesk.core.downloads import DownloadError, hub_file_entry

    for repo, name in (("org/repo", "f\x00.gguf"), ("org/repo", "a\nb.gguf"), ("org/re\x00po", "f.gguf")):
        with pytest.raises(DownloadError, match="control characters|not a valid"):
            hub_file_entry(repo, name)


# ----- issue 10.3: rm deletes only what GemmaDesk wrote -----------------------------------------------
def _users_model(path: Path) -> Path:
    return write_gguf(path, architecture="llama", name="the user's own model", tensor_bytes=64 * 1024)


def _ids() -> list[str]:
    result = run_cli("list", "--json", timeout=60, max_rss_mib=STORE_RSS_MIB)
    assert result.returncode == 0, result.stderr
    return [m["id"] for m in json.loads(result.stdout)]


def _rm_all() -> list[CliResult]:
    return [run_cli("rm", model_id, "--yes", timeout=60, max_rss_mib=STORE_RSS_MIB) for model_id in _ids()]


def test_rm_after_a_rebuilt_list_keeps_the_users_own_files(decoy: Decoy) -> None:
    """A corrupt models.json is rebuilt from the models folder: a GGUF the user put there, and a symlink to
    one of theirs elsewhere, are listed but never deleted (nor what the symlink points to)."""
    models = app_paths().models_dir
    own = _users_model(models / "mine" / "own.gguf")
    elsewhere = _users_model(decoy.root / "elsewhere.gguf")
    decoy.before = _snapshot(decoy.root)
    (models / "link.gguf").symlink_to(elsewhere)
    (models / "dir-link").symlink_to(decoy.root, target_is_directory=True)
    manifest = app_paths().data_dir / "models.json"
    manifest.write_text("{ damaged")
    results = _rm_all()
    assert results, "the user's model was listed"
    for result in results:
        _ok_message(result, code=0)
        assert "Kept" in result.stdout and "did not create" in result.stdout, result.stdout
    assert own.read_bytes()[:4] == b"GGUF"
    assert (models / "link.gguf").is_symlink()
    decoy.assert_untouched()
    assert list(manifest.parent.glob("models.json.corrupt-*")), "the damaged list was kept aside"


def test_rm_never_deletes_what_a_crafted_list_claims(decoy: Decoy) -> None:
    """models.json says a file outside is a download GemmaDesk owns: rm only forgets it."""
    victim = decoy.root / "OUTSIDE" / "f.gguf"
    manifest = app_paths().data_dir / "models.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    st = victim.stat()
    manifest.write_text(json.dumps({"version": 1, "models": [{
        "id": "bait", "entry_id": None, "path": str(victim), "size_bytes": st.st_size, "mtime_ns": st.st_mtime_ns,
        "sha256": "0" * 64, "source": "download", "display_name": "bait", "owned": True}]}))
    result = run_cli("rm", "bait", "--yes", timeout=60, max_rss_mib=STORE_RSS_MIB)
    _ok_message(result, code=0)
    assert "Kept" in result.stdout
    decoy.assert_untouched()


def test_rm_in_a_custom_models_folder_keeps_the_users_files(decoy: Decoy, tmp_path: Path) -> None:
    folder = tmp_path / "my-model-collection"
    own = _users_model(folder / "collection.gguf")
    settings = app_paths().settings_file
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(json.dumps({"schema_version": 2, "models_dir": str(folder)}))
    manifest = app_paths().data_dir / "models.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text("[1, 2")
    for result in _rm_all():
        _ok_message(result, code=0)
    assert own.exists()
    decoy.assert_untouched()


def test_rm_deletes_a_download_and_keeps_a_replaced_file(mirror: HubServer) -> None:
    result = run_cli("pull", "org/repo/model.gguf", timeout=60, max_rss_mib=STORE_RSS_MIB)
    assert result.returncode == 0, result.stderr
    store = ModelStore()
    [first] = store.list()
    assert first.owned
    assert run_cli("rm", first.id, "--yes", timeout=60).returncode == 0
    assert not first.path.exists(), "GemmaDesk's own download is deleted"

    assert run_cli("pull", "org/repo/model.gguf", timeout=60).returncode == 0
    [second] = ModelStore().list()
    second.path.unlink()
    _users_model(second.path)  # the user put their own file at that path
    result = run_cli("rm", second.id, "--yes", timeout=60)
    _ok_message(result, code=0)
    assert "Kept" in result.stdout
    assert second.path.exists()


# ----- issue 10.4: a verified download survives a failed list write -------------------------------------
def test_a_verified_download_is_adopted_after_the_list_write_failed(mirror: HubServer, monkeypatch: pytest.MonkeyPatch
                                                                    ) -> None:
    """A full disk right after the last byte cannot be made on demand here, so this one fault is faked:
    replacing models.json fails with ENOSPC (everything else, the download included, is real)."""
    from gemmadesk.core.downloads import DownloadError, download, hub_file_entry

    real_replace = os.replace

    def full_disk(src: object, dst: object) -> None:
        if Path(str(dst)).name == "models.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(DownloadError, match="verified.*could not be saved.*No space left on device"):
        download(hub_file_entry("org/repo", "model.gguf"), ModelStore())
    monkeypatch.setattr(os, "replace", real_replace)
    store = ModelStore()  # "the next start"
    [model] = store.list()
    assert model.status == "ok" and model.owned
    assert mirror.state.any_file is not None
    assert model.sha256 == mirror.state.any_file.sha256, "adopted as the verified download it was"
    assert any("had lost" in p for p in store.problems)
    assert len(ModelStore().list()) == 1, "the adopted download was written to the list"


# ----- issue 10.11: manifests and settings with wrong types or versions -----------------------------
def test_model_list_records_with_wrong_types_are_set_aside_not_a_traceback(tmp_path: Path) -> None:
    good = _users_model(tmp_path / "good.gguf")
    st = good.stat()
    manifest = app_paths().data_dir / "models.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    original = json.dumps({"version": 1, "models": [
        {"id": "a", "path": 7},
        {"id": "b", "path": str(tmp_path / "x.gguf"), "size_bytes": "abc"},
        {"id": "c", "path": "relative/x.gguf"},
        "not a record",
        {"id": "good", "entry_id": None, "path": str(good), "size_bytes": st.st_size, "mtime_ns": st.st_mtime_ns,
         "sha256": None, "source": "import", "display_name": "good", "owned": False},
    ]})
    manifest.write_text(original)
    result = run_cli("list", timeout=60, max_rss_mib=STORE_RSS_MIB)
    _ok_message(result, "4 entries of the model list were unreadable", code=0)
    _bounded(result)
    assert "good" in result.stdout
    [aside] = manifest.parent.glob("models.json.invalid-*")
    assert aside.read_text() == original, "the list as it was is kept"


@pytest.mark.parametrize("version", ['"abc"', "0", "true", "-3", "1.5"])
def test_settings_with_an_impossible_version_are_kept_aside(version: str, gemma3_gguf: Path) -> None:
    settings = app_paths().settings_file
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(f'{{"schema_version": {version}, "context_length": 4096}}')
    result = run_cli("list", timeout=60, max_rss_mib=STORE_RSS_MIB)
    _ok_message(result, "settings file was damaged", code=0)
    assert list(settings.parent.glob("settings.json.corrupt-*"))


@pytest.mark.slow
def test_chat_with_an_installed_model_works_after_settings_version_0(gemma3_gguf: Path) -> None:
    model_id = ModelStore().import_file(gemma3_gguf).id
    settings = app_paths().settings_file
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text('{"schema_version": 0}')
    result = run_cli("chat", model_id, "-p", "Hi", "--max-tokens", "4", "--no-history", timeout=180,
                     max_rss_mib=CHAT_RSS_MIB)
    assert result.returncode == 0, result.stderr
    assert "neither a file nor an installed model" not in result.stderr


def test_a_newer_model_list_is_refused_and_never_overwritten(tmp_path: Path) -> None:
    manifest = app_paths().data_dir / "models.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    newer = json.dumps({"version": 99, "models": [{"id": "from-the-future", "shape": "unknown"}]})
    manifest.write_text(newer)
    result = run_cli("list", timeout=60, max_rss_mib=STORE_RSS_MIB)
    _ok_message(result, "newer GemmaDesk", "update GemmaDesk")
    result = run_cli("import", str(_users_model(tmp_path / "m.gguf")), timeout=60, max_rss_mib=STORE_RSS_MIB)
    _ok_message(result, "newer GemmaDesk")
    assert manifest.read_text() == newer


def test_newer_settings_are_used_as_defaults_and_never_overwritten(tmp_path: Path) -> None:
    from gemmadesk.core.settings import NewerFileError, Settings, SettingsStore

    path = tmp_path / "settings.json"
    newer = json.dumps({"schema_version": 99, "context_length": 4096, "a_new_field": [1]})
    path.write_text(newer)
    store = SettingsStore(path)
    assert store.load() == Settings()
    assert "newer GemmaDesk" in store.problems[0] and "update GemmaDesk" in store.problems[0]
    with pytest.raises(NewerFileError, match="did not overwrite"):
        store.save(Settings(context_length=2048))
    assert path.read_text() == newer


def test_a_huge_settings_file_is_not_read_into_memory(tmp_path: Path) -> None:
    from gemmadesk.core.settings import Settings, SettingsStore

    path = tmp_path / "settings.json"
    with path.open("wb") as fh:
        fh.truncate(3 * 2**30)  # sparse: 3 GiB on paper
    store = SettingsStore(path)
    assert store.load() == Settings()
    assert "damaged" in store.problems[0]


# ----- issue 10.12: unloadable files are refused -------------------------------------------------------
@pytest.mark.parametrize(("content", "reason"), [
    (b"GGUF" + (3).to_bytes(4, "little") + bytes(16), "holds no tensors"),  # the 24-byte GGUF
    (gguf_bytes(architecture=None, tensor_bytes=64), "does not say which model architecture"),
    (gguf_bytes(architecture="quantum-llm-9000", tensor_bytes=64), "which this version of llama.cpp cannot run"),
    (gguf_bytes(architecture="clip", block_count=None, tensor_bytes=64), "vision projector"),
])
def test_import_refuses_files_llama_cpp_cannot_load(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(content)
    result = run_cli("import", str(path), timeout=60, max_rss_mib=STORE_RSS_MIB)
    _ok_message(result, "cannot import", reason)
    _bounded(result)
    assert ModelStore().list() == []


def test_import_refuses_a_fifo_named_gguf(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    result = run_cli("import", str(fifo), timeout=30, max_rss_mib=STORE_RSS_MIB)
    _ok_message(result, "named pipe")


def _hardware_file(tmp_path: Path) -> Path:
    path = tmp_path / "hw.json"
    path.write_text(json.dumps(DESKTOP_24GB_NVIDIA))
    return path


def test_pull_through_a_mirror_serving_the_wrong_size_is_refused_before_downloading(
    mirror: HubServer, tmp_path: Path, decoy: Decoy
) -> None:
    result = run_cli("pull", "e2b", "--hardware", str(_hardware_file(tmp_path)), timeout=60,
                     max_rss_mib=STORE_RSS_MIB)
    _ok_message(result, "is published as 3.12 GiB", "HF_ENDPOINT")
    _bounded(result)
    assert not any(r.method == "GET" and "/resolve/" in r.path for r in mirror.state.requests), "no byte fetched"
    assert ModelStore().list() == []
    decoy.assert_untouched()


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"architecture": "llama"}, "is a 'llama' model"),
    ({"block_count": 4}, "has 4 layers where"),
])
def test_pull_through_a_mirror_serving_another_model_of_that_size_is_refused(
    hub: HubServer, tmp_path: Path, kwargs: dict[str, object], reason: str
) -> None:
    """The size matches what a catalog refresh through the same mirror reported, but the file is not E2B."""
    from gemmadesk.core.catalog_refresh import CACHE_NAME

    entry = load_catalog().find("e2b")
    assert entry.file is not None
    served = hub.serve_any(write_gguf(tmp_path / "mirror" / "e2b.gguf", tensor_bytes=512 * 1024, **kwargs))  # type: ignore[arg-type]
    cache = app_paths().cache_dir / CACHE_NAME
    cache.parent.mkdir(parents=True, exist_ok=True)
    key = f"{entry.file.repo_id}@{entry.file.revision}/{entry.file.filename}"
    cache.write_text(json.dumps({"version": 1, "files": {key: {"size": served.size}}}))
    result = run_cli("pull", "e2b", "--hardware", str(_hardware_file(tmp_path)), timeout=60,
                     max_rss_mib=STORE_RSS_MIB)
    _ok_message(result, "is not Gemma 4 E2B", reason, "It was deleted")
    assert ModelStore().list() == []
    partials = list(ModelStore().partial_dir().glob("*.part"))
    assert partials == [], "the wrong file is not kept"


# ----- issue 10.5 / 10.11: the chat history, damaged, read-only or newer ---------------------------
def _history_with_chats(path: Path, n: int = 40) -> int:
    """A real history with ``n`` conversations of two 1 KB messages; returns the page count."""
    store = HistoryStore(path)
    for i in range(n):
        conv = store.create_conversation(title=f"chat {i}")
        store.add_message(conv.id, "user", f"question {i} " + "q" * 1000)
        store.add_message(conv.id, "assistant", f"answer {i} " + "a" * 1000)
    store.close()
    db = sqlite3.connect(path)
    pages = int(db.execute("PRAGMA page_count").fetchone()[0])
    db.close()
    return pages


def _damage(path: Path, first_page: int, last_page: int, seed: int = 7) -> None:
    import random

    rng = random.Random(seed)
    with path.open("r+b") as fh:
        for page in range(first_page, last_page + 1):
            fh.seek((page - 1) * 4096)
            fh.write(rng.randbytes(4096))


@pytest.fixture
def read_only() -> Iterator[ReadOnly]:
    with read_only_files() as files:
        yield files


@pytest.mark.slow
def test_chat_turn_survives_a_damaged_history(gemma3_gguf: Path) -> None:
    db = app_paths().history_db
    pages = _history_with_chats(db)
    _damage(db, 2, pages)  # random bytes over every data page
    damaged = db.read_bytes()
    result = run_cli("chat", str(gemma3_gguf), "-p", "Hello there", "--max-tokens", "8", timeout=180,
                     max_rss_mib=CHAT_RSS_MIB)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    [aside] = [p for p in db.parent.glob("chats.sqlite3.damaged-*") if not p.name.endswith(("-wal", "-shm"))]
    assert str(aside) in result.stderr, "the notice says where the old history is"
    assert aside.read_bytes() == damaged, "moved aside as it was, never deleted"
    store = HistoryStore(db)
    try:
        [conv] = [c for c in store.list_conversations() if c.title == "Hello there"]
        assert [m.role for m in store.messages(conv.id)] == ["user", "assistant"]
    finally:
        store.close()


@pytest.mark.slow
def test_chat_turn_waits_in_a_journal_while_the_history_is_read_only(gemma3_gguf: Path, read_only: ReadOnly) -> None:
    db = app_paths().history_db
    _history_with_chats(db, n=2)
    read_only(db)
    result = run_cli("chat", str(gemma3_gguf), "-p", "Keep this", "--max-tokens", "8", timeout=180,
                     max_rss_mib=CHAT_RSS_MIB)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    journal = db.with_name("chats.sqlite3.pending.json")
    assert str(journal) in result.stderr
    assert "Keep this" in journal.read_text()
    store = HistoryStore(db)  # still read-only: the waiting turn is shown as saved
    try:
        assert any(c.title == "Keep this" for c in store.list_conversations())
    finally:
        store.close()


def test_a_history_from_a_newer_gemmadesk_is_one_clear_line(gemma3_gguf: Path) -> None:
    db = app_paths().history_db
    db.parent.mkdir(parents=True, exist_ok=True)
    sqlite3.connect(db).execute("PRAGMA user_version = 99").connection.close()
    result = run_cli("chat", str(gemma3_gguf), "-p", "Hi", "--max-tokens", "2", timeout=180, max_rss_mib=CHAT_RSS_MIB)
    _ok_message(result, "newer GemmaDesk", "update GemmaDesk")
