"""Preflight, disk space, offline mode and gated repositories against the local Hub."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from gemmadesk.core.catalog import load_catalog
from gemmadesk.core.downloads import DownloadError, download, preflight
from gemmadesk.core.fit import FitOptions
from gemmadesk.core.hardware import Hardware, probe
from gemmadesk.core.store import ModelStore
from gemmadesk.core.units import human_bytes
from tests.downloads.conftest import FAST_RETRY
from tests.support.hubserver import VALID_TOKEN, ForwardProxy, HubServer

GiB = 1024**3


def _machine(ram_gib: float) -> Hardware:
    return replace(probe(include_backend=False), gpus=(), ram_total_bytes=int(ram_gib * GiB),
                   ram_available_bytes=int(ram_gib * GiB * 0.8))


def test_preflight_warns_when_the_model_will_not_run(store: ModelStore) -> None:
    entry = load_catalog().find("31b")
    check = preflight(entry, _machine(2), FitOptions(), store)
    assert check.verdict == "too_large"
    assert not check.will_run
    assert any(m.startswith("Warning: this model will not run") for m in check.messages)
    small = preflight(load_catalog().find("e2b"), _machine(64), FitOptions(), store)
    assert small.will_run
    assert small.verdict in ("cpu", "gpu", "partial")


def test_preflight_reports_disk_shortage_with_numbers(store: ModelStore) -> None:
    entry = load_catalog().find("e2b")
    assert entry.file is not None
    free = shutil.disk_usage(store.paths.data_dir.parent.parent).free
    huge = replace(entry, file=replace(entry.file, size_bytes=free + 50 * GiB))
    check = preflight(huge, _machine(64), FitOptions(), store)
    assert not check.ok
    assert check.bytes_needed > check.bytes_free
    assert "Not enough disk space" in check.messages[0]
    assert f"{human_bytes(check.bytes_free)} is free" in check.messages[0]


def test_download_refuses_before_a_byte_moves_when_disk_is_short(hub: HubServer, tmp_path: Path,
                                                                 store: ModelStore) -> None:
    """A real sparse file larger than the free space is served; its sha256 is given, not computed."""
    free = shutil.disk_usage(tmp_path).free
    sparse = tmp_path / "served-huge.gguf"
    with sparse.open("wb") as fh:
        fh.truncate(free + 10 * GiB)
    served = hub.add_file("test/huge", sparse, sha256="ab" * 32)
    with pytest.raises(DownloadError, match=r"Not enough disk space.*GiB is free"):
        download(hub.entry_for(served), store, retry=FAST_RETRY)
    assert hub.gets(served.filename) == []
    assert hub.bytes_sent(served.filename) == 0
    assert not list(store.partial_dir().glob("*")) if store.partial_dir().exists() else True


def test_offline_mode_refuses_to_download_but_keeps_installed(hub: HubServer, payload: Path,
                                                              store: ModelStore,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    served = hub.add_file("test/tiny-gguf", payload)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DownloadError, match="Offline mode is on"):
        download(hub.entry_for(served), store, retry=FAST_RETRY)
    assert hub.state.requests == []
    monkeypatch.delenv("HF_HUB_OFFLINE")
    installed = download(hub.entry_for(served), store, retry=FAST_RETRY)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    requests = len(hub.state.requests)
    assert download(hub.entry_for(served), store, retry=FAST_RETRY) == installed
    assert len(hub.state.requests) == requests


def test_gated_repo_without_token_says_what_to_do(hub: HubServer, payload: Path, store: ModelStore,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    served = hub.add_file("google/gated-gguf", payload)
    hub.gate("google/gated-gguf")
    with pytest.raises(DownloadError, match="gated repository.*accept its licence.*HF_TOKEN"):
        download(hub.entry_for(served), store, retry=FAST_RETRY)
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(DownloadError, match="token has no access"):
        download(hub.entry_for(served), store, retry=FAST_RETRY)
    monkeypatch.setenv("HF_TOKEN", VALID_TOKEN)
    model = download(hub.entry_for(served), store, retry=FAST_RETRY)
    assert model.status == "ok"
    assert all(g.authorized for g in hub.gets(served.filename))


def test_unreachable_endpoint_is_explained(payload: Path, store: ModelStore,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    with HubServer() as server:
        served = server.add_file("test/tiny-gguf", payload)
        entry = server.entry_for(served)
        endpoint = server.endpoint
    monkeypatch.setenv("HF_ENDPOINT", endpoint)  # the server is gone: connection refused
    with pytest.raises(DownloadError, match="Cannot reach http://127.0.0.1"):
        download(entry, store, retry=FAST_RETRY)


def test_proxy_from_the_environment_is_used(hub: HubServer, payload: Path, store: ModelStore,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY is honoured by the client huggingface_hub shares (read when that client is created)."""
    from huggingface_hub import close_session

    served = hub.add_file("test/tiny-gguf", payload)
    with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        close_session()  # the shared client reads proxy settings when it is created
        try:
            model = download(hub.entry_for(served), store, retry=FAST_RETRY)
        finally:
            monkeypatch.delenv("HTTP_PROXY")
            close_session()
    assert model.path.read_bytes() == payload.read_bytes()
    assert any(url.endswith(f"/resolve/main/{served.filename}") for url in proxy.seen)
    assert len(proxy.seen) >= 2, "metadata and bytes both went through the proxy"


def test_offline_mode_uses_a_verified_copy_in_the_hf_cache(hub: HubServer, payload: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import hf_hub_download

    served = hub.add_file("test/tiny-gguf", payload)
    hf_hub_download(served.repo_id, served.filename, endpoint=hub.endpoint,
                    cache_dir=str(tmp_path / "hf-home" / "hub"))
    requests = len(hub.state.requests)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = download(hub.entry_for(served), ModelStore(), retry=FAST_RETRY)
    assert model.source == "hf-cache"
    assert model.sha256 == served.sha256
    assert len(hub.state.requests) == requests, "no network in offline mode"


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A real self-signed certificate for 127.0.0.1 (made with the openssl command-line tool)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


def test_tls_is_verified_and_a_custom_ca_can_be_trusted(payload: Path, store: ModelStore,
                                                        self_signed: tuple[Path, Path],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import close_session

    with HubServer(tls=self_signed) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        served = hub.add_file("test/tiny-gguf", payload)
        close_session()  # certificate settings are read when the shared client is created
        with pytest.raises(DownloadError, match="could not be verified.*SSL_CERT_FILE"):
            download(hub.entry_for(served), store, retry=FAST_RETRY)
        assert hub.bytes_sent(served.filename) == 0
        monkeypatch.setenv("SSL_CERT_FILE", str(self_signed[0]))  # e.g. a company's own CA
        close_session()
        try:
            model = download(hub.entry_for(served), store, retry=FAST_RETRY)
        finally:
            monkeypatch.delenv("SSL_CERT_FILE")
            close_session()
        assert model.path.read_bytes() == payload.read_bytes()
