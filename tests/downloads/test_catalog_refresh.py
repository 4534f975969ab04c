"""Catalog sizes/digests refreshed from the Hub's model-info API (a real local Hub server)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gemmadesk.core.catalog import load_catalog
from gemmadesk.core.catalog_refresh import current_catalog, refresh
from tests.support.hubserver import HubServer

REPO = Path(__file__).resolve().parents[2]


def test_refresh_lays_the_hubs_sizes_and_digests_over_the_catalog(hub: HubServer, payload: Path) -> None:
    shipped = load_catalog().get("e2b-google-q4_0")
    assert shipped.file is not None
    hub.add_file(shipped.repo_id, payload, filename=shipped.file.filename)
    assert current_catalog() == load_catalog(), "nothing cached yet: the shipped catalog is used"
    result = refresh()
    assert result.repos_ok == 1 and result.updated == 1
    # Every other repository is unknown to this local Hub: each gives one clear line, none crashes; the
    # served repository lacks the projector file, and that is said too.
    repos = {(e.repo_id, e.file.revision) for e in load_catalog().runnable if e.file}
    assert len(result.errors) == len(repos) - 1 + 1
    assert any("lists no gemma-4-E2B-it-mmproj.gguf" in line for line in result.errors)
    fresh = current_catalog().get("e2b-google-q4_0")
    assert fresh.file is not None
    assert fresh.file.size_bytes == payload.stat().st_size
    assert fresh.file.sha256 == hashlib.sha256(payload.read_bytes()).hexdigest()
    untouched = current_catalog().get("31b-google-q4_0")
    assert untouched == load_catalog().get("31b-google-q4_0")


def test_offline_refresh_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = refresh()
    assert result.updated == 0 and "offline" in result.errors[0]
    assert current_catalog() == load_catalog()


def test_unreachable_hub_is_reported_per_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    result = refresh(timeout=3)
    assert result.updated == 0 and result.repos_ok == 0
    assert result.errors and all(":" in line for line in result.errors)


def test_models_cli_refresh(hub: HubServer, payload: Path) -> None:
    shipped = load_catalog().get("12b-google-q4_0")
    assert shipped.file is not None
    hub.add_file(shipped.repo_id, payload, filename=shipped.file.filename)
    proc = subprocess.run([sys.executable, "-m", "gemmadesk", "models", "--refresh", "--json"], cwd=REPO,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    rows = {m["id"]: m for m in json.loads(proc.stdout)["models"]}
    assert rows["12b-google-q4_0"]["file_bytes"] == payload.stat().st_size
    assert "refreshed 1 file" in proc.stderr
