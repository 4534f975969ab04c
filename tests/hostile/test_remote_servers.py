"""Hostile files around the saved server list (keys live there): never follow a symlink, never write through it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gemmadesk.core.remote import RemoteConfigError, ServerStore
from tests.hostile.conftest import Decoy


def test_symlinked_file_is_left_alone(tmp_path: Path, decoy: Decoy) -> None:
    path = tmp_path / "servers.json"
    path.symlink_to(decoy.root / "notes.txt")
    store = ServerStore(path)
    assert store.list() == [] and "not a regular file" in store.problems[0]
    with pytest.raises(RemoteConfigError):
        store.add("a", "http://a:1/v1")
    decoy.assert_untouched()
