"""Downloads against a real local Hub server (tests/support/hubserver.py) through huggingface_hub."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path

import pytest

from gemmadesk.core.downloads import DownloadError, download
from gemmadesk.core.store import ModelStore
from tests.downloads.conftest import FAST_RETRY, Events
from tests.support.hubserver import VALID_TOKEN, Fault, HubServer
from tests.support.tiny_gguf import projector_gguf


def test_full_download_verifies_and_installs(hub: HubServer, payload: Path, store: ModelStore,
                                             events: Events) -> None:
    served = hub.add_file("test/tiny-gguf", payload)
    entry = hub.entry_for(served)
    model = download(entry, store, on_progress=events, retry=FAST_RETRY)
    assert model.status == "ok"
    assert model.path.read_bytes() == payload.read_bytes()
    assert model.sha256 == hashlib.sha256(payload.read_bytes()).hexdigest()
    assert model.path.is_relative_to(store.models_dir)
    assert events.states[0] == "queued"
    assert events.states[-2:] == ["verifying", "done"]
    assert events[-1].bytes_done == served.size == events[-1].bytes_total
    assert hub.bytes_sent(served.filename) == served.size
    assert not any(store.partial_dir().iterdir()), "no partial or lock left behind"
    assert [m.id for m in store.list()] == [entry.id]
    again = download(entry, store, retry=FAST_RETRY)
    assert again.path == model.path
    assert hub.bytes_sent(served.filename) == served.size


def test_download_with_mmproj(hub: HubServer, payload: Path, tmp_path: Path, store: ModelStore) -> None:
    proj = tmp_path / "served" / "mmproj-tiny.gguf"
    projector_gguf(proj)
    served, served_proj = hub.add_file("test/tiny-gguf", payload), hub.add_file("test/tiny-gguf", proj)
    entry = hub.entry_for(served, mmproj=served_proj)
    model = download(entry, store, with_mmproj=False, retry=FAST_RETRY)
    assert model.mmproj_path is None
    assert hub.bytes_sent(proj.name) == 0
    model = download(entry, store, with_mmproj=True, retry=FAST_RETRY)
    assert model.mmproj_path is not None
    assert model.mmproj_path.read_bytes() == proj.read_bytes()
    assert hub.bytes_sent(payload.name) == served.size, "the main file was not fetched again"


def test_sha_from_model_info_api_when_no_linked_etag(hub: HubServer, payload: Path,
                                                     store: ModelStore) -> None:
    """A mirror without X-Linked-Etag: the sha256 comes from /api/models/...?blobs=true."""
    served = hub.add_file("test/tiny-gguf", payload, lfs_etag=False)
    model = download(hub.entry_for(served), store, retry=FAST_RETRY)
    assert model.sha256 == served.sha256
    assert any("/api/models/test/tiny-gguf" in r.path for r in hub.state.requests)


def test_catalog_sha_is_the_fallback(hub: HubServer, payload: Path, store: ModelStore) -> None:
    served = hub.add_file("test/tiny-gguf", payload, lfs_etag=False)
    hub.state.files.clear()  # model info knows nothing ...
    hub.add_file("test/tiny-gguf", payload, lfs_etag=False)
    model = download(hub.entry_for(served, sha_in_catalog=True), store, retry=FAST_RETRY)
    assert model.status == "ok"
    assert model.sha256 == served.sha256


def test_hf_cache_location_uses_hub_layout_and_is_reused(hub: HubServer, payload: Path,
                                                        tmp_path: Path) -> None:
    """With use_hf_cache the file lands in HF's blobs/snapshots layout; our own store then reuses it."""
    served = hub.add_file("test/tiny-gguf", payload)
    entry = hub.entry_for(served)
    cached = download(entry, ModelStore(use_hf_cache=True), retry=FAST_RETRY)
    blob = cached.path.resolve()
    assert blob.name == served.sha256
    assert blob.parent.name == "blobs"
    assert cached.source == "hf-cache"
    assert cached.owned
    ModelStore().remove(entry.id)
    assert not blob.exists(), "removing a model we downloaded into the HF cache frees the space"

    from huggingface_hub import hf_hub_download

    user_copy = hf_hub_download(served.repo_id, served.filename, endpoint=hub.endpoint,
                                cache_dir=str(tmp_path / "hf-home" / "hub"))
    sent = hub.bytes_sent(served.filename)
    reused = download(entry, ModelStore(), retry=FAST_RETRY)
    assert Path(user_copy).resolve() == reused.path.resolve(), "no duplicate copy of a file the user has"
    assert reused.source == "hf-cache"
    assert not reused.owned
    assert hub.bytes_sent(served.filename) == sent
    ModelStore().remove(entry.id)
    assert Path(user_copy).exists(), "the user's own HF cache file is never deleted"


def test_revision_pinning_and_unknown_revision(hub: HubServer, payload: Path, store: ModelStore) -> None:
    served = hub.add_file("test/tiny-gguf", payload)
    entry = hub.entry_for(served, revision=served.commit)
    assert download(entry, store, retry=FAST_RETRY).status == "ok"
    with pytest.raises(DownloadError, match="no revision"):
        download(hub.entry_for(served, entry_id="other"), store, revision="v9-missing", retry=FAST_RETRY)


def test_unknown_file_and_repo_are_explained(hub: HubServer, payload: Path, store: ModelStore) -> None:
    served = hub.add_file("test/tiny-gguf", payload)
    entry = hub.entry_for(served)
    missing_file = replace(entry, file=replace(entry.file, filename="nope.gguf")) if entry.file else entry
    with pytest.raises(DownloadError, match="has no file nope.gguf"):
        download(missing_file, store, retry=FAST_RETRY)
    missing_repo = replace(entry, file=replace(entry.file, repo_id="test/missing")) if entry.file else entry
    with pytest.raises(DownloadError, match="was not found"):
        download(missing_repo, store, retry=FAST_RETRY)
    assert store.list() == []


def test_hf_cache_partial_follows_the_hub_convention(hub: HubServer, payload: Path) -> None:
    """In HF-cache mode a partial is blobs/<sha256>.incomplete; one left by hf_hub_download is continued."""
    served = hub.add_file("test/tiny-gguf", payload)
    store = ModelStore(use_hf_cache=True)
    blobs = store.hf_cache() / "models--test--tiny-gguf" / "blobs"
    blobs.mkdir(parents=True)
    (blobs / f"{served.sha256}.incomplete").write_bytes(payload.read_bytes()[:1024 * 1024])  # as hf leaves it
    model = download(hub.entry_for(served), store, retry=FAST_RETRY)
    assert model.path.read_bytes() == payload.read_bytes()
    assert [g.range for g in hub.gets(served.filename)] == [f"bytes={1024 * 1024}-"]
    assert sorted(p.name for p in blobs.iterdir()) == [served.sha256], "no partial, sidecar or lock left"
    from huggingface_hub import scan_cache_dir

    scan = scan_cache_dir(store.hf_cache())
    assert not scan.warnings
    assert [r.repo_id for r in scan.repos] == ["test/tiny-gguf"]


def test_cdn_redirect_like_the_real_hub_keeps_the_token_on_the_hub(payload: Path, store: ModelStore,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """LFS resolves answer 302 to a CDN on another origin; the bytes come from there, without our token."""
    with HubServer(cdn=True) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        monkeypatch.setenv("HF_TOKEN", VALID_TOKEN)
        served = hub.add_file("test/tiny-gguf", payload)
        hub.add_fault(served.filename, Fault("drop", at=1024 * 1024))  # and a resume against the CDN
        model = download(hub.entry_for(served), store, retry=FAST_RETRY)
        assert model.path.read_bytes() == payload.read_bytes()
        resolves = [r for r in hub.state.requests if "/resolve/" in r.path]
        cdn = [r for r in hub.state.requests if r.path.startswith("/cdn/")]
        assert [r.status for r in resolves] == [302]
        assert all(r.authorized for r in resolves)
        assert [r.method for r in cdn] == ["GET", "GET"]
        assert cdn[1].range is not None
        assert not any(r.authorized for r in cdn), "the Hub token never goes to the CDN"


def test_an_expired_cdn_link_is_renewed_from_the_hub(payload: Path, store: ModelStore,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A signed CDN URL that starts answering 403 mid-download: ask the Hub again and carry on."""
    with HubServer(cdn=True) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        served = hub.add_file("test/tiny-gguf", payload)
        hub.add_fault(served.filename, Fault("drop", at=1024 * 1024))
        hub.add_fault(served.filename, Fault("status", status=403))
        model = download(hub.entry_for(served), store, retry=FAST_RETRY)
        assert model.path.read_bytes() == payload.read_bytes()
        heads = [r for r in hub.state.requests if r.method == "HEAD"]
        assert len(heads) == 2, "the link was asked for again once"
        assert [r.status for r in hub.gets(served.filename)] == [200, 403, 206]
        hub.add_fault(served.filename, Fault("status", status=403, times=-1))
        with pytest.raises(DownloadError, match="HTTP 403"):
            download(hub.entry_for(served, entry_id="again"), store, retry=FAST_RETRY)


def test_a_custom_models_folder_keeps_partials_beside_it(hub: HubServer, payload: Path,
                                                         tmp_path: Path) -> None:
    """Settings.models_dir on another disk: partials go there too, so the final move stays atomic."""
    store = ModelStore(models_dir=tmp_path / "big-disk" / "models")
    served = hub.add_file("test/tiny-gguf", payload)
    hub.add_fault(served.filename, Fault("drop", at=1024 * 1024))
    model = download(hub.entry_for(served), store, retry=FAST_RETRY)
    assert model.path.is_relative_to(tmp_path / "big-disk" / "models")
    assert store.partial_dir() == tmp_path / "big-disk" / "models" / ".downloads"
    assert not any(store.partial_dir().iterdir())
    assert not store.paths.downloads_dir.exists()
