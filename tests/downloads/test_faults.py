"""Network faults, injected for real by the local Hub server: drops, stalls, 5xx/429, corruption."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from gemmadesk.core.downloads import (
    DownloadCancelled,
    DownloadControl,
    DownloadError,
    DownloadPaused,
    Progress,
    RetryPolicy,
    download,
)
from gemmadesk.core.store import ModelStore
from tests.downloads.conftest import FAST_RETRY, Events
from tests.support.hubserver import Fault, HubServer

MiB = 1024 * 1024
SMALL = 64 * 1024  # at most one network read that arrived but was not yet written when the line dropped
OVERLAP = 2 * MiB  # bytes the server may have pushed into socket buffers after the client stopped reading


def test_dropped_connection_resumes_with_range(hub: HubServer, payload: Path, store: ModelStore,
                                               events: Events) -> None:
    served = hub.add_file("test/tiny-gguf", payload)
    hub.add_fault(served.filename, Fault("drop", at=MiB + 100))
    model = download(hub.entry_for(served), store, on_progress=events, retry=FAST_RETRY)
    assert model.path.read_bytes() == payload.read_bytes()
    gets = hub.gets(served.filename)
    assert len(gets) == 2
    assert gets[0].range is None
    assert gets[1].range is not None
    resumed_at = int(gets[1].range.removeprefix("bytes=").rstrip("-"))
    assert MiB + 100 - SMALL <= resumed_at <= MiB + 100
    assert hub.bytes_sent(served.filename) - served.size == MiB + 100 - resumed_at
    assert "failed" not in events.states


def test_truncated_body_is_continued(hub: HubServer, payload: Path, store: ModelStore) -> None:
    served = hub.add_file("test/tiny-gguf", payload)
    hub.add_fault(served.filename, Fault("truncate", at=2 * MiB))
    model = download(hub.entry_for(served), store, retry=FAST_RETRY)
    assert model.status == "ok"
    assert hub.bytes_sent(served.filename) <= served.size + SMALL


def test_server_ignoring_range_restarts_cleanly(hub: HubServer, payload: Path, store: ModelStore) -> None:
    served = hub.add_file("test/tiny-gguf", payload)
    hub.add_fault(served.filename, Fault("drop", at=MiB))
    hub.add_fault(served.filename, Fault("ignore_range"))
    model = download(hub.entry_for(served), store, retry=FAST_RETRY)
    assert model.path.read_bytes() == payload.read_bytes()


@pytest.mark.parametrize(("status", "retry_after"), [(500, None), (503, 1), (429, 1), (502, None)])
def test_transient_status_is_retried(hub: HubServer, payload: Path, store: ModelStore, status: int,
                                     retry_after: int | None) -> None:
    served = hub.add_file("test/tiny-gguf", payload)
    hub.add_fault(served.filename, Fault("status", status=status, retry_after=retry_after, times=2))
    model = download(hub.entry_for(served), store, retry=FAST_RETRY)
    assert model.status == "ok"
    assert [g.status for g in hub.gets(served.filename)] == [status, status, 200]


def test_retry_after_is_honoured(hub: HubServer, payload: Path, store: ModelStore) -> None:
    """A 429 with Retry-After: 1 is waited out even though the policy's own backoff is 0.05 s.

    (A lower bound on elapsed time: a sleep cannot end early, so this cannot flake on a slow machine.)
    """
    served = hub.add_file("test/tiny-gguf", payload)
    hub.add_fault(served.filename, Fault("status", status=429, retry_after=1))
    t0 = time.monotonic()
    download(hub.entry_for(served), store, retry=FAST_RETRY)
    assert time.monotonic() - t0 >= 1.0


def test_persistent_5xx_fails_with_reason_and_keeps_partial(hub: HubServer, payload: Path, store: ModelStore,
                                                            events: Events) -> None:
    served = hub.add_file("test/tiny-gguf", payload)
    hub.add_fault(served.filename, Fault("drop", at=MiB))
    hub.add_fault(served.filename, Fault("status", status=503, times=-1))
    with pytest.raises(DownloadError, match="HTTP 503"):
        download(hub.entry_for(served), store, on_progress=events, retry=FAST_RETRY)
    assert events[-1].state.value == "failed"
    assert "503" in (events[-1].error or "")
    assert store.list() == []
    parts = list(store.partial_dir().glob("*.part"))
    assert len(parts) == 1
    assert parts[0].stat().st_size == MiB
    hub.state.faults.clear()
    model = download(hub.entry_for(served), store, retry=FAST_RETRY)
    assert model.status == "ok"
    assert hub.bytes_sent(served.filename) <= served.size + SMALL


def test_stall_times_out_and_resumes(hub: HubServer, payload: Path, store: ModelStore) -> None:
    served = hub.add_file("test/tiny-gguf", payload)
    hub.add_fault(served.filename, Fault("stall", at=MiB, stall_s=30))
    model = download(hub.entry_for(served), store, retry=FAST_RETRY)  # stall timeout 5 s
    assert model.status == "ok"
    gets = hub.gets(served.filename)
    assert len(gets) == 2
    assert gets[1].range is not None
    assert MiB - SMALL <= int(gets[1].range.removeprefix("bytes=").rstrip("-")) <= MiB


def test_hash_mismatch_deletes_the_bad_file(hub: HubServer, payload: Path, store: ModelStore,
                                            events: Events) -> None:
    served = hub.add_file("test/tiny-gguf", payload)
    hub.add_fault(served.filename, Fault("corrupt", at=2 * MiB + 7))
    with pytest.raises(DownloadError, match="damaged.*deleted"):
        download(hub.entry_for(served), store, on_progress=events, retry=FAST_RETRY)
    assert events.states[-2:] == ["verifying", "failed"]
    assert store.list() == []
    assert not list(store.partial_dir().glob("*.part*"))
    assert not store.target_path(served.repo_id, served.filename).exists()
    assert download(hub.entry_for(served), store, retry=FAST_RETRY).status == "ok"




@pytest.mark.parametrize(("action", "exc"), [("cancel", DownloadCancelled), ("pause", DownloadPaused)])
def test_cancel_and_pause_keep_a_resumable_partial(hub: HubServer, payload: Path, store: ModelStore,
                                                   action: str, exc: type[Exception]) -> None:
    served = hub.add_file("test/tiny-gguf", payload)
    hub.add_fault(served.filename, Fault("stall", at=2 * MiB, stall_s=0.5))  # so the transfer is still going
    control = DownloadControl()
    seen: list[Progress] = []

    def on_progress(p: Progress) -> None:
        seen.append(p)
        if p.state.value == "downloading" and p.bytes_done >= MiB:
            getattr(control, action)()

    with pytest.raises(exc):
        download(hub.entry_for(served), store, on_progress=on_progress, control=control, retry=FAST_RETRY)
    assert seen[-1].state.value == ("cancelled" if action == "cancel" else "paused")
    part = next(store.partial_dir().glob("*.part"))
    kept = part.stat().st_size
    assert MiB <= kept < served.size
    assert store.list() == []
    control.resume()
    model = download(hub.entry_for(served), store, control=control, retry=FAST_RETRY)
    assert model.path.read_bytes() == payload.read_bytes()
    assert hub.gets(served.filename)[-1].range == f"bytes={kept}-"
    assert hub.bytes_sent(served.filename) <= served.size + OVERLAP


def test_pause_during_a_stall_is_prompt(hub: HubServer, payload: Path, store: ModelStore) -> None:
    """Pausing while the server sends nothing closes the stream instead of waiting for the timeout."""
    served = hub.add_file("test/tiny-gguf", payload)
    hub.add_fault(served.filename, Fault("stall", at=MiB, stall_s=60))
    control = DownloadControl()
    slow = RetryPolicy(stall_timeout_s=120)
    result: list[BaseException] = []

    def worker() -> None:
        try:
            download(hub.entry_for(served), store, control=control, retry=slow)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            result.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    while hub.bytes_sent(served.filename) < MiB and thread.is_alive():
        thread.join(0.05)
    control.pause()
    thread.join(timeout=30)
    assert not thread.is_alive(), "pause did not interrupt the blocked read"
    assert result
    assert isinstance(result[0], DownloadPaused)


def test_transient_error_on_the_metadata_request_is_retried(hub: HubServer, payload: Path,
                                                            store: ModelStore) -> None:
    served = hub.add_file("test/tiny-gguf", payload)
    hub.add_fault(served.filename, Fault("status", status=503, method="HEAD", times=2))
    assert download(hub.entry_for(served), store, retry=FAST_RETRY).status == "ok"
    heads = [r.status for r in hub.state.requests if r.method == "HEAD"]
    assert heads == [503, 503, 200]


def test_progress_reports_speed_and_eta(hub: HubServer, payload: Path, store: ModelStore,
                                        events: Events) -> None:
    served = hub.add_file("test/tiny-gguf", payload)
    hub.add_fault(served.filename, Fault("slow", stall_s=0.4))  # ~1 MiB per 0.4 s
    download(hub.entry_for(served), store, on_progress=events, retry=FAST_RETRY)
    moving = [p for p in events if p.state.value == "downloading" and p.speed_bps > 0]
    assert moving, "a speed once half a second of data has been seen"
    assert all(p.eta_s is not None and p.eta_s >= 0 for p in moving)
    assert all(0 < p.speed_bps < 100 * MiB for p in moving)
    done = [p.bytes_done for p in events if p.state.value == "downloading"]
    assert done == sorted(done)


def test_a_second_download_of_the_same_file_is_refused(hub: HubServer, payload: Path,
                                                       store: ModelStore) -> None:
    served = hub.add_file("test/tiny-gguf", payload)
    hub.add_fault(served.filename, Fault("stall", at=MiB, stall_s=60))
    control = DownloadControl()
    first: list[BaseException] = []

    def worker() -> None:
        try:
            download(hub.entry_for(served), store, control=control, retry=RetryPolicy(stall_timeout_s=120))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            first.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    while hub.bytes_sent(served.filename) < MiB:
        thread.join(0.05)
    with pytest.raises(DownloadError, match="already being downloaded"):
        download(hub.entry_for(served), store, retry=FAST_RETRY)
    control.pause()
    thread.join(30)
    assert not thread.is_alive()
    assert len(first) == 1
    assert isinstance(first[0], DownloadPaused), "the first download was not disturbed by the refused one"
