"""The byte transfer behind :mod:`gemmadesk.core.downloads`: Range requests, retries, hashing, control.

Shared types (states, progress events, errors, :class:`DownloadControl`, :class:`RetryPolicy`) live here
and are re-exported by :mod:`gemmadesk.core.downloads`, the module callers use.

- Bytes are fetched with HTTP Range requests through the httpx2 client huggingface_hub shares
  (``get_session()``), so proxies and TLS settings are the library's; ``Accept-Encoding: identity`` so
  the byte offsets are the file's.
- The sha256 is computed on a helper thread while the bytes arrive. hashlib cannot save its state, so
  a resumed partial is re-hashed once (a sequential local read) before the transfer continues.
- Transient failures (connection reset, timeouts and stalls, 408/429/5xx with ``Retry-After``) are
  retried with exponential backoff; the failure count resets whenever bytes arrive.
- One writer per partial file, within the process and across processes (``filelock``, an OS file lock
  that a killed process releases by itself; the lock files live in GemmaDesk's cache folder, not beside
  the partial, so nothing is left in a Hugging Face cache).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
from filelock import FileLock, Timeout
from huggingface_hub import get_session, hf_raise_for_status
from huggingface_hub.utils import build_hf_headers

from gemmadesk.core.hub import (
    TRANSIENT_STATUS,
    HubConfig,
    RemoteFile,
    explain,
    retry_after_seconds,
    status_of,
)

CHUNK = 1024 * 1024
SYNC_EVERY = 128 * 1024 * 1024  # flush the partial to disk in the background every this many bytes
_datasync = getattr(os, "fdatasync", os.fsync)  # fdatasync is Linux-only


class DownloadState(StrEnum):
    QUEUED = "queued"
    DOWNLOADING = "downloading"
    PAUSED = "paused"
    VERIFYING = "verifying"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Progress:
    entry_id: str
    filename: str
    state: DownloadState
    bytes_done: int
    bytes_total: int
    speed_bps: float
    eta_s: float | None
    error: str | None = None


class DownloadError(Exception):
    """The download failed; the message says why and what to do."""


class DownloadCancelled(Exception):
    """Cancelled by the user; the partial file is kept (call download() again to resume)."""


class DownloadPaused(Exception):
    """Paused by the user; the partial file is kept (call download() again to resume)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. ``stall_timeout_s``: no byte for this long counts as a dropped connection."""

    max_failures: int = 8  # consecutive failures without a byte of progress
    base_wait_s: float = 1.0
    max_wait_s: float = 30.0
    max_retry_after_s: float = 120.0
    stall_timeout_s: float = 30.0
    connect_timeout_s: float = 20.0


class DownloadControl:
    """Pause/cancel a running :func:`download` from another thread (thread-safe).

    The request is noticed between chunks, during backoff waits, and also while the transfer is blocked
    on the network: the open connection's socket is shut down, which makes its read fail at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._request: DownloadState | None = None
        self._abort: Callable[[], None] | None = None

    def cancel(self) -> None:
        self._set(DownloadState.CANCELLED)

    def pause(self) -> None:
        self._set(DownloadState.PAUSED)

    def resume(self) -> None:
        """Clear a pause/cancel so the same control can be passed to the next download() call."""
        with self._lock:
            self._request = None
            self._wake.clear()

    @property
    def requested(self) -> DownloadState | None:
        with self._lock:
            return self._request

    def _set(self, state: DownloadState) -> None:
        with self._lock:
            self._request = state
            abort = self._abort
        self._wake.set()
        if abort is not None:
            with contextlib.suppress(Exception):
                abort()

    # The methods below are for the download machinery (downloads.py, transfer.py), not for the UI.
    def raise_if_stopped(self) -> None:
        """Raise DownloadCancelled/DownloadPaused if that was asked for."""
        req = self.requested
        if req is DownloadState.CANCELLED:
            raise DownloadCancelled("download cancelled; the partial file is kept for resuming")
        if req is DownloadState.PAUSED:
            raise DownloadPaused("download paused")

    def wait(self, seconds: float) -> None:
        """Sleep (a retry backoff), waking at once on pause/cancel."""
        self._wake.wait(seconds)
        self.raise_if_stopped()

    @contextlib.contextmanager
    def abort_with(self, abort: Callable[[], None]) -> Iterator[None]:
        """While inside, a pause/cancel from another thread also calls ``abort`` (to break a blocked read)."""
        with self._lock:
            self._abort = abort
        try:
            self.raise_if_stopped()
            yield
        finally:
            with self._lock:
                self._abort = None


_ACTIVE: set[Path] = set()
_ACTIVE_LOCK = threading.Lock()


@contextlib.contextmanager
def exclusive(part: Path, name: str, lock_dir: Path | None = None) -> Iterator[None]:
    """One writer per partial file: in this process (a set) and across processes (``filelock``).

    ``lock_dir``: where the lock file goes (default: beside the partial). The lock is the OS's, so a
    process that was killed holds nothing; a lock file left behind is harmless and reused.
    """
    with _ACTIVE_LOCK:
        if part in _ACTIVE:
            raise DownloadError(f"{name} is already being downloaded")
        _ACTIVE.add(part)
    try:
        if lock_dir is None:
            lock_path = part.with_name(part.name + ".lock")
        else:
            key = hashlib.sha256(str(part).encode("utf-8", "surrogateescape")).hexdigest()[:40]
            lock_path = lock_dir / f"{key}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(lock_path), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise DownloadError(
                f"{name} is already being downloaded by another GemmaDesk: wait for it to finish, or close it first."
            ) from None
        try:
            yield
        finally:
            lock.release()
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE.discard(part)


# ----- progress ------------------------------------------------------------------------------------
@dataclass
class Meter:
    """Throttled progress events with an exponentially smoothed speed."""

    entry_id: str
    filename: str
    total: int
    emit: Callable[[Progress], None]
    done: int = 0
    speed: float = 0.0
    _t_sample: float = field(default_factory=time.monotonic)
    _b_sample: int = 0
    _t_emit: float = 0.0

    def restart_sampling(self) -> None:
        self._t_sample, self._b_sample = time.monotonic(), self.done

    def state(self, state: DownloadState, error: str | None = None) -> None:
        eta = None if state is not DownloadState.DOWNLOADING else self._eta()
        speed = self.speed if state is DownloadState.DOWNLOADING else 0.0
        self.emit(Progress(self.entry_id, self.filename, state, self.done, self.total, speed, eta, error))

    def advance(self, n: int, state: DownloadState = DownloadState.DOWNLOADING) -> None:
        self.done += n
        now = time.monotonic()
        dt = now - self._t_sample
        if dt >= 0.5:
            rate = (self.done - self._b_sample) / dt
            self.speed = rate if self.speed == 0.0 else 0.3 * rate + 0.7 * self.speed
            self._t_sample, self._b_sample = now, self.done
        if now - self._t_emit >= 0.1 or self.done >= self.total:
            self._t_emit = now
            self.state(state)

    def _eta(self) -> float | None:
        return (self.total - self.done) / self.speed if self.speed > 0 else None


# ----- the transfer --------------------------------------------------------------------------------
class _Expired(Exception):
    """The download link (a signed CDN URL) was refused; ``error`` is the HTTP error to raise if a fresh
    link does not help."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _same_object(old: RemoteFile, new: RemoteFile) -> RemoteFile:
    if (new.sha256, new.size) != (old.sha256, old.size):
        raise DownloadError(f"{old.filename} changed on the Hub during the download; start it again.")
    return new


class _Transient(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _identity(remote: RemoteFile) -> dict[str, Any]:
    return {"repo_id": remote.repo_id, "filename": remote.filename, "size": remote.size,
            "sha256": remote.sha256, "etag": remote.etag}


def _open_partial(part: Path, remote: RemoteFile) -> int:
    """Keep a partial only if it belongs to this exact remote object; returns its length.

    The ``.json`` sidecar says which object a partial holds. A partial named after the object's sha256
    without a sidecar is huggingface_hub's own (``blobs/<sha256>.incomplete``): same bytes, adopted.
    """
    sidecar = part.with_name(part.name + ".json")
    part.parent.mkdir(parents=True, exist_ok=True)
    try:
        same = json.loads(sidecar.read_text(encoding="utf-8")) == _identity(remote)
    except (OSError, ValueError):
        same = not sidecar.exists() and part.name == f"{remote.sha256}.incomplete"
    size = part.stat().st_size if part.exists() else 0
    if not same or size > remote.size:
        part.unlink(missing_ok=True)
        size = 0
        part.parent.mkdir(parents=True, exist_ok=True)
        tmp = sidecar.with_name(sidecar.name + ".tmp")
        tmp.write_text(json.dumps(_identity(remote)), encoding="utf-8")
        os.replace(tmp, sidecar)
    return size


class _BackgroundHash:
    """sha256 on a helper thread, so hashing overlaps receiving and writing (hashlib releases the GIL).

    On a fast link the transfer is CPU-bound; in line, the hash (about 0.5 s of CPU per GiB) would add
    its whole cost to the receive loop, while a spare core can absorb it here.
    The queue is bounded (16 batches of ~1 MiB) so a slow CPU cannot make memory grow. The same thread
    also flushes the partial file to disk now and then (:meth:`sync`), so the final fsync after the last
    byte has little left to write.
    """

    BATCH = 1024 * 1024  # hand chunks over in ~1 MiB batches: fewer queue operations and thread wake-ups

    def __init__(self, hasher: Any) -> None:
        self._hasher = hasher
        self._queue: queue.Queue[list[bytes] | int | None] = queue.Queue(maxsize=16)
        self._batch: list[bytes] = []
        self._batched = 0
        self._thread = threading.Thread(target=self._run, name="sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if isinstance(item, int):
                with contextlib.suppress(OSError):  # only an early flush; the final fsync reports errors
                    _datasync(item)
                continue
            for chunk in item:
                self._hasher.update(chunk)

    def sync(self, fd: int) -> None:
        """Flush what was written so far to disk, in the background (after the queued chunks)."""
        self._queue.put(fd)

    def update(self, chunk: bytes) -> None:
        self._batch.append(chunk)
        self._batched += len(chunk)
        if self._batched >= self.BATCH:
            self._queue.put(self._batch)
            self._batch, self._batched = [], 0

    def close(self) -> None:
        if self._thread.is_alive():
            if self._batch:
                self._queue.put(self._batch)
                self._batch, self._batched = [], 0
            self._queue.put(None)
            self._thread.join()

    def hexdigest(self) -> str:
        self.close()
        return str(self._hasher.hexdigest())


@dataclass
class _Sink:
    """The partial file being written and the running sha256 of everything in it."""

    fh: Any
    hasher: _BackgroundHash
    meter: Meter
    size: int

    unsynced: int = 0

    def write(self, chunk: bytes) -> None:
        if self.meter.done + len(chunk) > self.size:
            raise DownloadError(f"the server sent more than the expected {self.size} bytes")
        self.fh.write(chunk)
        self.fh.flush()  # hand even small pieces to the OS: a killed process keeps all it received
        self.hasher.update(chunk)
        self.meter.advance(len(chunk))
        self.unsynced += len(chunk)
        if self.unsynced >= SYNC_EVERY:
            self.fh.flush()
            self.hasher.sync(self.fh.fileno())
            self.unsynced = 0

    def restart(self) -> None:
        """The server ignored our Range header and sends from byte 0: start the file over."""
        self.fh.seek(0)
        self.fh.truncate()
        self.hasher.close()
        self.hasher = _BackgroundHash(hashlib.sha256())
        self.meter.done = 0


def _rehash(part: Path, meter: Meter, control: DownloadControl) -> Any:
    """Hash the bytes already on disk (resume): hashlib state cannot be saved, a sequential read is cheap."""
    hasher = hashlib.sha256()
    with part.open("rb") as fh:
        while block := fh.read(8 * CHUNK):
            control.raise_if_stopped()
            hasher.update(block)
            meter.advance(len(block), DownloadState.VERIFYING)
    return hasher


def _fetch(remote: RemoteFile, cfg: HubConfig, part: Path, meter: Meter, control: DownloadControl,
           retry: RetryPolicy, refresh: Callable[[], RemoteFile] | None) -> str:
    """Bring ``part`` to the full size, retrying transient failures; returns the sha256 of its bytes."""
    meter.done = 0
    have = _open_partial(part, remote)
    hasher = _rehash(part, meter, control) if have else hashlib.sha256()
    meter.done, meter.speed = have, 0.0  # the re-hash rate says nothing about the network
    meter.restart_sampling()
    meter.state(DownloadState.DOWNLOADING)
    with part.open("r+b" if have else "wb") as fh:
        sink = _Sink(fh, _BackgroundHash(hasher), meter, remote.size)
        try:
            _fill(sink, remote, cfg, control, retry, refresh)
        finally:
            sink.hasher.close()
        fh.flush()
        os.fsync(fh.fileno())
    return sink.hasher.hexdigest()


def _fill(sink: _Sink, remote: RemoteFile, cfg: HubConfig, control: DownloadControl,
          retry: RetryPolicy, refresh: Callable[[], RemoteFile] | None) -> None:
    """Request the missing bytes until the file is complete, retrying transient failures with backoff.

    A CDN link that stopped working (signed URLs expire during long downloads) is replaced by asking
    the Hub again (``refresh``), once per stretch without progress; the object must still be the same.
    """
    meter = sink.meter
    failures = 0
    refreshed = False
    while meter.done < remote.size:
        before = meter.done
        try:
            _stream_once(remote, cfg, sink, control, retry)
            if meter.done < remote.size:
                raise _Transient(f"the connection closed after {meter.done} of {remote.size} bytes")
        except _Expired as exc:
            if refresh is None or (refreshed and meter.done == before):
                raise exc.error from exc
            remote, refreshed = _same_object(remote, refresh()), True
        except _Transient as exc:
            control.raise_if_stopped()  # a pause/cancel that closed the stream is not a network failure
            failures = 0 if meter.done > before else failures + 1
            if failures >= retry.max_failures:
                msg = f"Giving up after {failures} failed attempts in a row: {exc}"
                raise DownloadError(msg) from exc
            meter.speed = 0.0  # show the stall (no speed, no ETA) while waiting to retry
            meter.state(DownloadState.DOWNLOADING)
            control.wait(backoff(retry, failures, exc.retry_after))
            meter.restart_sampling()


def _stream_once(remote: RemoteFile, cfg: HubConfig, sink: _Sink, control: DownloadControl,
                 retry: RetryPolicy) -> None:
    """One GET from ``meter.done`` to the end; raises _Transient for anything worth retrying.

    The token goes only to the Hub itself: when the Hub redirected to a CDN (another origin, a signed
    URL), it is left out, as huggingface_hub does.
    """
    meter = sink.meter
    token = cfg.token if _origin(remote.location) == _origin(remote.url) else None
    headers = build_hf_headers(token=token or False, headers={"Accept-Encoding": "identity"})
    if meter.done:
        headers["Range"] = f"bytes={meter.done}-"
    timeout = httpx2.Timeout(retry.stall_timeout_s, connect=retry.connect_timeout_s)
    try:
        stream = get_session().stream("GET", remote.location, headers=headers, timeout=timeout,
                                      follow_redirects=True)
        with stream as resp, control.abort_with(lambda: _shutdown_socket(resp)):
            if resp.status_code in TRANSIENT_STATUS:
                wait = retry_after_seconds(resp.headers)
                raise _Transient(f"the server answered HTTP {resp.status_code}", wait)
            if resp.status_code >= 400:
                resp.read()
                try:
                    hf_raise_for_status(resp)
                except OSError as exc:
                    if resp.status_code in (401, 403, 404, 410) and remote.location != remote.url:
                        raise _Expired(exc) from exc
                    raise
            start = _range_start(resp)
            if start != meter.done:
                if start != 0:
                    raise _Transient(f"the server resumed at byte {start} instead of {meter.done}")
                sink.restart()
            sink.fh.seek(meter.done)
            for chunk in resp.iter_raw():
                sink.write(chunk)
                control.raise_if_stopped()
    except httpx2.TransportError as exc:
        control.raise_if_stopped()
        raise _Transient(f"{type(exc).__name__}: {exc or 'no data'}") from exc


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), parts.port or default_port


def _shutdown_socket(resp: httpx2.Response) -> None:
    """Wake a read blocked in another thread (pause/cancel during a stall): shut the socket down.

    Closing the response from another thread would not interrupt a blocking ``recv``; ``shutdown`` does,
    and the reader then sees the connection end. Without a socket at hand the stall timeout still applies.
    """
    stream = resp.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        sock.shutdown(socket.SHUT_RDWR)


def _range_start(resp: httpx2.Response) -> int:
    if resp.status_code != 206:
        return 0
    content_range = resp.headers.get("Content-Range", "")  # "bytes START-END/TOTAL"
    try:
        return int(content_range.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return -1

def backoff(retry: RetryPolicy, failures: int, retry_after: float | None) -> float:
    wait: float = min(retry.max_wait_s, retry.base_wait_s * 2.0 ** max(0, failures - 1))
    if retry_after is not None:
        wait = min(max(wait, retry_after), retry.max_retry_after_s)
    return wait


def fetch(remote: RemoteFile, cfg: HubConfig, part: Path, meter: Meter, control: DownloadControl,
          retry: RetryPolicy, refresh: Callable[[], RemoteFile] | None = None) -> str:
    """Download ``remote`` into ``part`` (resuming what is there); returns the sha256 of the whole file.

    Raises DownloadError with a message for the user, DownloadPaused or DownloadCancelled.
    """
    try:
        return _fetch(remote, cfg, part, meter, control, retry, refresh)
    except (DownloadError, DownloadCancelled, DownloadPaused):
        raise
    except OSError as exc:
        if status_of(exc) is not None:
            raise DownloadError(explain(exc, cfg, remote.repo_id, remote.filename)) from exc
        msg = (f"Could not write {part}: {exc.strerror or exc}. The part already downloaded is kept: "
               "free up space (or fix the folder) and start the download again to resume it.")
        raise DownloadError(msg) from exc
    except Exception as exc:
        raise DownloadError(explain(exc, cfg, remote.repo_id, remote.filename)) from exc


