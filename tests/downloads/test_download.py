"""Downloads against a real local Hub server (tests/support/hubserver.py) through huggingface_hub."""

from __future__ import annotations

import hashlib
from pathlib import Path

from gemmadesk.core.downloads import DownloadState, download
from gemmadesk.core.store import ModelStore
from tests.downloads.conftest import FAST_RETRY, Events
from tests.support.hubserver import HubServer


def test_full_download_verifies_and_installs(hub: HubServer, payload: Path, store: ModelStore,
                                             events: Events) -> None:
    served = hub.add_file("test/tiny-gguf", payload)
    entry = hub.entry_for(served)
    model = download(entry, store, on_progress=events, retry=FAST_RETRY)
    assert model.status == "ok"
    assert model.path.read_bytes() == payload.read_bytes()
    assert model.sha256 == hashlib.sha256(payload.read_bytes()).hexdigest()
    assert model.path.is_relative_to(store.models_dir)
    assert events.states[0] == "queued" and events.states[-2:] == ["verifying", "done"]
    assert events[-1].bytes_done == served.size == events[-1].bytes_total
    assert hub.bytes_sent(served.filename) == served.size
    assert not any(store.partial_dir().iterdir()), "no partial or lock left behind"
    assert [m.id for m in store.list()] == [entry.id]
    again = download(entry, store, retry=FAST_RETRY)
    assert again.path == model.path and hub.bytes_sent(served.filename) == served.size
