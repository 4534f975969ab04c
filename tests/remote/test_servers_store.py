"""The saved server list: owner-only file, versioned, corrupt files kept aside, hostile entries skipped."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from gemmadesk.core.remote import RemoteConfigError, ServerStore
from tests.hostile.conftest import run_cli


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_round_trip_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "servers.json"
    store = ServerStore(path)
    entry = store.add("GPU box", "gpu-box:8000", api_key="sk-secret")
    assert mode(path) == 0o600
    assert entry.base_url == "http://gpu-box:8000/v1"
    assert "sk-secret" not in repr(entry)
    again = ServerStore(path)
    assert again.list() == [entry]
    again.update(entry.id, name="Renamed")
    again.remove(entry.id)
    assert ServerStore(path).list() == [] and mode(path) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".servers.json-")]  # no temp files left


def test_wide_permissions_are_narrowed(tmp_path: Path) -> None:
    path = tmp_path / "servers.json"
    ServerStore(path).add("a", "http://a:1/v1", "k")
    os.chmod(path, 0o644)
    ServerStore(path)
    assert mode(path) == 0o600


def test_newer_file_is_used_read_only_and_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "servers.json"
    text = json.dumps({"version": 99, "servers": [{"id": "x1", "name": "n", "base_url": "http://h:1/v1"}]})
    path.write_text(text)
    store = ServerStore(path)
    assert [e.id for e in store.list()] == ["x1"] and "newer GemmaDesk" in store.problems[0]
    with pytest.raises(RemoteConfigError):
        store.add("b", "http://b:1/v1")
    assert path.read_text() == text


def test_corrupt_file_is_kept_aside(tmp_path: Path) -> None:
    path = tmp_path / "servers.json"
    path.write_bytes(b"\x00\xffnot json")
    store = ServerStore(path)
    assert store.list() == [] and "kept as servers.json.corrupt-1" in store.problems[0]
    assert (tmp_path / "servers.json.corrupt-1").read_bytes() == b"\x00\xffnot json"
    store.add("a", "http://a:1/v1")
    assert len(ServerStore(path).list()) == 1


def test_hostile_entries_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "servers.json"
    servers = [
        {"id": "ok", "name": "fine", "base_url": "https://ok.example/v1", "api_key": None},
        {"id": "bad1", "name": "x", "base_url": "file:///etc/passwd"},
        {"id": "bad2", "name": "x" * 10_000, "base_url": "http://a/v1"},
        {"id": "bad3", "name": "x", "base_url": "http://a/v1", "api_key": "k\r\nX-Injected: 1"},
        "not an object",
    ]
    path.write_text(json.dumps({"version": 1, "servers": servers}))
    store = ServerStore(path)
    assert [e.id for e in store.list()] == ["ok"]
    assert len(store.problems) == 4


def test_cli_add_list_remove(gemmadesk_home: Path) -> None:
    added = run_cli("remote", "add", "Box", "http://box:8000", "--api-key", "k")
    assert added.returncode == 0, added.stderr
    server_id = added.stdout.split()[-1]
    listing = run_cli("remote", "list")
    assert server_id in listing.stdout and "(key saved)" in listing.stdout and " k" not in listing.stdout
    assert mode(gemmadesk_home / "config" / "servers.json") == 0o600
    assert run_cli("remote", "remove", server_id).returncode == 0
    assert run_cli("remote", "remove", server_id).returncode == 1
    refused = run_cli("remote", "add", "Bad", "ftp://box/v1")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
