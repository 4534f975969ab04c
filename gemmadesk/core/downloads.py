"""Downloading catalog models: preflight, resumable transfer, sha256 verification, install.

Call :func:`download` on a worker thread; it blocks and reports :class:`Progress` through ``on_progress``.

How it works, and why:

- Metadata (size, sha256, commit, download location) comes from huggingface_hub (:mod:`gemmadesk.core.hub`),
  so the endpoint/mirror, token and proxies are handled by the library. The bytes are fetched by us with
  HTTP Range requests through the *same* httpx2 client huggingface_hub uses (``get_session()``): that
  gives pause/cancel, resume, our own retry policy and hashing while writing, which ``hf_hub_download``
  does not offer.
- Bytes go to ``<partial dir>/<repo>--<file>.part`` next to a small ``.part.json`` saying which remote
  object (etag, size, commit) they belong to. A partial for a different object is discarded.
- The sha256 is computed while writing. hashlib cannot save its state, so when a partial is resumed
  (after a pause, a crash or a kill) it is re-hashed once, sequentially, before the transfer continues;
  that costs a fast local read instead of re-downloading. After the last byte only ``hexdigest()`` is
  left, so verification adds next to nothing.
- Only a file whose sha256 matched is moved into place (``os.replace``) and recorded in the store. A
  mismatch deletes the partial and says so.
- Transient failures (connection reset, timeouts and stalls, 408/429/5xx, honouring ``Retry-After``) are
  retried with exponential backoff; the failure count resets whenever bytes arrive, so a long download
  over a flaky line keeps going, while a dead server fails with a clear reason after a few attempts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import queue
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx2
from huggingface_hub.utils._headers import build_hf_headers
from huggingface_hub.utils._http import get_session, hf_raise_for_status

from gemmadesk.core.catalog import CatalogEntry, ModelFile
from gemmadesk.core.fit import FitOptions, Verdict, plan_entry
from gemmadesk.core.hardware import Hardware
from gemmadesk.core.hub import (
    SHA256_RE,
    TRANSIENT_STATUS,
    HubConfig,
    HubError,
    RemoteFile,
    explain,
    resolve,
    retry_after_seconds,
    status_of,
)
from gemmadesk.core.store import InstalledModel, ModelStore, sha256_file

CHUNK = 1024 * 1024
SYNC_EVERY = 128 * 1024 * 1024  # flush the partial to disk in the background every this many bytes
_datasync = getattr(os, "fdatasync", os.fsync)  # fdatasync is Linux-only
GiB = 1024**3


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

    def _check(self) -> None:
        req = self.requested
        if req is DownloadState.CANCELLED:
            raise DownloadCancelled("download cancelled; the partial file is kept for resuming")
        if req is DownloadState.PAUSED:
            raise DownloadPaused("download paused")

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._check()

    @contextlib.contextmanager
    def _aborting(self, abort: Callable[[], None]) -> Iterator[None]:
        with self._lock:
            self._abort = abort
        try:
            self._check()
            yield
        finally:
            with self._lock:
                self._abort = None


@dataclass(frozen=True)
class Preflight:
    ok: bool  # False only when the download cannot succeed (disk space); a fit warning leaves it True
    messages: tuple[str, ...]
    bytes_needed: int
    bytes_free: int
    verdict: str | None = None  # the fit Verdict value, when the fit check ran
    will_run: bool = True


def _fmt(n: float) -> str:
    return f"{n / GiB:.2f} GiB" if n >= GiB / 10 else f"{n / 2**20:.1f} MiB"


def disk_margin(size: int) -> int:
    """Room to leave free beyond the file: 2 % of it, at least 256 MiB (OS, logs, the app's own files)."""
    return max(256 * 2**20, size // 50)


def _existing_dir(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(
    store: ModelStore, files: list[ModelFile], sizes: list[int] | None = None
) -> tuple[int, int, str | None]:
    """(bytes needed incl. margin, bytes free, message if short). Partial bytes already on disk count."""
    sizes = sizes or [f.size_bytes for f in files]
    target = store.hf_cache() if store.use_hf_cache else store.models_dir
    remaining = sum(max(0, size - _partial_size(store, f)) for f, size in zip(files, sizes, strict=True))
    needed = remaining + disk_margin(sum(sizes))
    free = shutil.disk_usage(_existing_dir(target)).free
    if free >= needed:
        return needed, free, None
    return needed, free, (
        f"Not enough disk space in {_existing_dir(target)}: the download needs {_fmt(remaining)} plus "
        f"{_fmt(needed - remaining)} to spare ({_fmt(needed)}), but only {_fmt(free)} is free. "
        f"Free up {_fmt(needed - free)} or choose another models folder."
    )


def preflight(entry: CatalogEntry, hw: Hardware, options: FitOptions, store: ModelStore) -> Preflight:
    """Before a byte moves: enough disk space? will it run on this machine (``fit.plan_entry``)?"""
    if entry.file is None or not entry.runnable:
        return Preflight(False, (f"{entry.label} is not a GGUF GemmaDesk can run ({entry.runner}).",), 0, 0)
    files = [entry.file] + ([entry.mmproj] if entry.mmproj and options.with_mmproj else [])
    needed, free, disk_msg = check_disk(store, files)
    messages = [disk_msg] if disk_msg else [f"Disk space: {_fmt(free)} free, {_fmt(needed)} needed."]
    verdict, will_run = None, True
    try:
        plan = plan_entry(entry, hw, options)
    except (ValueError, KeyError) as exc:
        messages.append(f"Could not estimate whether it fits this machine: {exc}")
    else:
        verdict = str(plan.verdict.value)
        will_run = plan.verdict is not Verdict.TOO_LARGE
        if not will_run:
            messages.append(f"Warning: this model will not run on this machine: {plan.reason}")
        elif plan.tight:
            messages.append(f"Memory will be tight: {plan.reason}")
        else:
            messages.append(f"Fits this machine ({plan.verdict.label}): {plan.reason}")
    return Preflight(disk_msg is None, tuple(messages), needed, free, verdict, will_run)


# ----- partial files -------------------------------------------------------------------------------
def _partial_path(store: ModelStore, mf: ModelFile) -> Path:
    return store.partial_dir() / f"{mf.repo_id.replace('/', '--')}--{mf.filename}.part"


def _partial_size(store: ModelStore, mf: ModelFile) -> int:
    try:
        return _partial_path(store, mf).stat().st_size
    except OSError:
        return 0


def discard_partial(entry: CatalogEntry, store: ModelStore) -> None:
    """Delete the kept partial files of an entry (the UI offers this after a cancel)."""
    for mf in (entry.file, entry.mmproj):
        if mf is not None:
            part = _partial_path(store, mf)
            part.unlink(missing_ok=True)
            part.with_name(part.name + ".json").unlink(missing_ok=True)


_ACTIVE: set[Path] = set()
_ACTIVE_LOCK = threading.Lock()


@contextlib.contextmanager
def _exclusive(part: Path) -> Iterator[None]:
    """One writer per partial file: in this process (set) and across processes (pid lock file)."""
    with _ACTIVE_LOCK:
        if part in _ACTIVE:
            raise DownloadError(f"{part.stem} is already being downloaded")
        _ACTIVE.add(part)
    lock = part.with_name(part.name + ".lock")
    try:
        _take_pid_lock(lock)
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE.discard(part)


def _take_pid_lock(lock: Path) -> None:
    lock.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if pid and pid != os.getpid() and _pid_alive(pid):
                raise DownloadError(
                    f"{lock.stem} is already being downloaded by another GemmaDesk (pid {pid})"
                ) from None
            lock.unlink(missing_ok=True)  # stale: that process was closed or killed
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(str(os.getpid()))
        return
    raise DownloadError(f"could not lock {lock}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


# ----- progress ------------------------------------------------------------------------------------
@dataclass
class _Meter:
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
class _Transient(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def _identity(remote: RemoteFile) -> dict[str, Any]:
    return {"repo_id": remote.repo_id, "filename": remote.filename, "size": remote.size,
            "sha256": remote.sha256, "etag": remote.etag}


def _open_partial(part: Path, remote: RemoteFile) -> int:
    """Keep a partial only if it belongs to this exact remote object; returns its length."""
    sidecar = part.with_name(part.name + ".json")
    try:
        same = json.loads(sidecar.read_text(encoding="utf-8")) == _identity(remote)
    except (OSError, ValueError):
        same = False
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

    On a fast link the transfer is CPU-bound and hashing in line would cost a third of the throughput.
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
    meter: _Meter
    size: int

    unsynced: int = 0

    def write(self, chunk: bytes) -> None:
        if self.meter.done + len(chunk) > self.size:
            raise DownloadError(f"the server sent more than the expected {self.size} bytes")
        self.fh.write(chunk)
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


def _rehash(part: Path, meter: _Meter, control: DownloadControl) -> Any:
    """Hash the bytes already on disk (resume): hashlib state cannot be saved, a sequential read is cheap."""
    hasher = hashlib.sha256()
    with part.open("rb") as fh:
        while block := fh.read(8 * CHUNK):
            control._check()
            hasher.update(block)
            meter.advance(len(block), DownloadState.VERIFYING)
    return hasher


def _fetch(remote: RemoteFile, cfg: HubConfig, part: Path, meter: _Meter, control: DownloadControl,
           retry: RetryPolicy) -> str:
    """Bring ``part`` to the full size, retrying transient failures; returns the sha256 of its bytes."""
    meter.done = 0
    have = _open_partial(part, remote)
    hasher = _rehash(part, meter, control) if have else hashlib.sha256()
    meter.done = have
    meter.restart_sampling()
    meter.state(DownloadState.DOWNLOADING)
    with part.open("r+b" if have else "wb") as fh:
        sink = _Sink(fh, _BackgroundHash(hasher), meter, remote.size)
        try:
            _fill(sink, remote, cfg, control, retry)
        finally:
            sink.hasher.close()
        fh.flush()
        os.fsync(fh.fileno())
    return sink.hasher.hexdigest()


def _fill(sink: _Sink, remote: RemoteFile, cfg: HubConfig, control: DownloadControl, retry: RetryPolicy) -> None:
    """Request the missing bytes until the file is complete, retrying transient failures with backoff."""
    meter = sink.meter
    failures = 0
    while meter.done < remote.size:
        before = meter.done
        try:
            _stream_once(remote.location, cfg, sink, control, retry)
            if meter.done < remote.size:
                raise _Transient(f"the connection closed after {meter.done} of {remote.size} bytes")
        except _Transient as exc:
            control._check()  # a pause/cancel that closed the stream is not a network failure
            failures = 0 if meter.done > before else failures + 1
            if failures >= retry.max_failures:
                msg = f"Giving up after {failures} failed attempts in a row: {exc}"
                raise DownloadError(msg) from exc
            control._sleep(_backoff(retry, failures, exc.retry_after))
            meter.restart_sampling()


def _stream_once(url: str, cfg: HubConfig, sink: _Sink, control: DownloadControl, retry: RetryPolicy) -> None:
    """One GET from ``meter.done`` to the end; raises _Transient for anything worth retrying."""
    meter = sink.meter
    headers = build_hf_headers(token=cfg.token or False, headers={"Accept-Encoding": "identity"})
    if meter.done:
        headers["Range"] = f"bytes={meter.done}-"
    timeout = httpx2.Timeout(retry.stall_timeout_s, connect=retry.connect_timeout_s)
    try:
        stream = get_session().stream("GET", url, headers=headers, timeout=timeout, follow_redirects=True)
        with stream as resp, control._aborting(lambda: _shutdown_socket(resp)):
            if resp.status_code in TRANSIENT_STATUS:
                raise _Transient(f"the server answered HTTP {resp.status_code}", retry_after_seconds(resp.headers))
            if resp.status_code >= 400:
                resp.read()
                hf_raise_for_status(resp)
            start = _range_start(resp)
            if start != meter.done:
                if start != 0:
                    raise _Transient(f"the server resumed at byte {start} instead of {meter.done}")
                sink.restart()
            sink.fh.seek(meter.done)
            for chunk in resp.iter_raw():
                sink.write(chunk)
                control._check()
    except httpx2.TransportError as exc:
        control._check()
        raise _Transient(f"{type(exc).__name__}: {exc or 'no data'}") from exc


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


# ----- the public entry point ----------------------------------------------------------------------
def hub_file_entry(repo_id: str, filename: str, revision: str = "main") -> CatalogEntry:
    """A runnable entry for any GGUF on the Hub (``gemmadesk pull org/repo/file.gguf``).

    Its size and sha256 come from the Hub when downloading; the fit check cannot judge it beforehand.
    """
    mf = ModelFile(repo_id=repo_id, filename=filename, size_bytes=0, revision=revision)
    return CatalogEntry(
        id="hf-" + f"{repo_id}-{filename}".replace("/", "-").lower().removesuffix(".gguf"),
        size="custom", format="GGUF", publisher=repo_id.split("/")[0], runnable=True,
        runner="GemmaDesk (llama.cpp)", repo_id=repo_id, file=mf, mmproj=None, google_memory_gb=None,
        licence="see the repository", gated=False, notes=f"{repo_id}/{filename}",
    )


def _display_name(entry: CatalogEntry) -> str:
    return entry.notes if entry.size == "custom" else entry.label


def download(
    entry: CatalogEntry,
    store: ModelStore,
    *,
    with_mmproj: bool = False,
    on_progress: Callable[[Progress], None] = lambda p: None,
    control: DownloadControl | None = None,
    revision: str | None = None,
    retry: RetryPolicy | None = None,
) -> InstalledModel:
    """Download (or resume) an entry's GGUF, and its mmproj if asked; verify; record it in the store.

    Blocking. Raises DownloadError (message for the user), DownloadCancelled or DownloadPaused (partial
    files are kept; calling again resumes). Already-installed files and files already present in the
    Hugging Face cache are not downloaded again.
    """
    if entry.file is None or not entry.runnable:
        raise DownloadError(f"{entry.label} is not a GGUF GemmaDesk can run ({entry.runner}).")
    control = control or DownloadControl()
    retry = retry or RetryPolicy()
    files = [(entry.file, "main")] + ([(entry.mmproj, "mmproj")] if with_mmproj and entry.mmproj else [])
    if with_mmproj and entry.mmproj is None:
        raise DownloadError(f"{entry.label} has no vision projector (mmproj) to download.")
    installed = store.find_for_entry(entry.id)
    if installed is not None and installed.status == "ok" and (not with_mmproj or installed.mmproj_path):
        on_progress(Progress(entry.id, entry.file.filename, DownloadState.DONE, installed.size_bytes,
                             installed.size_bytes, 0.0, 0.0))
        return installed
    cfg = HubConfig.from_env()
    for mf, role in files:
        mf = replace(mf, revision=revision or mf.revision)
        if role == "main" and installed is not None and installed.status == "ok":
            continue
        if role == "mmproj" and installed is not None and installed.mmproj_path:
            continue
        got = _obtain(entry, mf, store, cfg, on_progress, control, retry)
        if role == "main":
            installed = store.record(model_id=entry.id, entry_id=entry.id, path=got.path, sha256=got.sha256,
                                     source=got.source, display_name=_display_name(entry), owned=got.owned)
        else:
            installed = store.attach_mmproj(entry.id, got.path, got.sha256, owned=got.owned)
    assert installed is not None
    return store.get(installed.id)


@dataclass(frozen=True)
class _Obtained:
    path: Path
    sha256: str
    source: str  # "download" | "hf-cache"
    owned: bool  # False for a copy the user already had in the HF cache


def _obtain(entry: CatalogEntry, mf: ModelFile, store: ModelStore, cfg: HubConfig,
            on_progress: Callable[[Progress], None], control: DownloadControl,
            retry: RetryPolicy) -> _Obtained:
    """One file: reuse a verified copy from the HF cache, or fetch, verify and install it."""
    meter = _Meter(entry.id, mf.filename, mf.size_bytes, on_progress)
    try:
        cached = _from_hf_cache(mf, store, meter, control)
        if cached is not None:
            return cached
        meter.state(DownloadState.QUEUED)
        remote = _resolve_with_retry(mf, cfg, control, retry)
        if remote.sha256 is None:
            raise DownloadError(
                f"Neither {cfg.endpoint} nor the catalog gives a sha256 for {mf.filename}, so the download "
                "could not be verified; GemmaDesk does not install unverified files."
            )
        meter.total = remote.size
        _needed, _free, short = check_disk(store, [mf], [remote.size])
        if short:
            raise DownloadError(short)
        part = _partial_path(store, mf)
        with _exclusive(part):
            digest = _fetch_reporting_errors(remote, cfg, part, meter, control, retry)
            meter.state(DownloadState.VERIFYING)
            if digest != remote.sha256:
                discard_partial(replace(entry, file=mf, mmproj=None), store)
                raise DownloadError(
                    f"{mf.filename} is damaged: its sha256 is {digest} but the {remote.sha256_source} says "
                    f"{remote.sha256}. The bad file was deleted; download it again."
                )
            target = _install(part, remote, store)
        meter.state(DownloadState.DONE)
        return _Obtained(target, digest, "hf-cache" if store.use_hf_cache else "download", owned=True)
    except DownloadPaused:
        meter.state(DownloadState.PAUSED)
        raise
    except DownloadCancelled:
        meter.state(DownloadState.CANCELLED)
        raise
    except DownloadError as exc:
        meter.state(DownloadState.FAILED, str(exc))
        raise


def _resolve_with_retry(
    mf: ModelFile, cfg: HubConfig, control: DownloadControl, retry: RetryPolicy
) -> RemoteFile:
    """Ask the Hub about the file, retrying transient failures with the same policy as the transfer."""
    failures = 0
    while True:
        try:
            return resolve(mf, cfg, timeout=retry.connect_timeout_s + retry.stall_timeout_s)
        except HubError as exc:
            failures += 1
            if not exc.transient or failures >= retry.max_failures:
                raise DownloadError(str(exc)) from exc
            control._sleep(_backoff(retry, failures, exc.retry_after))


def _backoff(retry: RetryPolicy, failures: int, retry_after: float | None) -> float:
    wait: float = min(retry.max_wait_s, retry.base_wait_s * 2.0 ** max(0, failures - 1))
    if retry_after is not None:
        wait = min(max(wait, retry_after), retry.max_retry_after_s)
    return wait


def _fetch_reporting_errors(remote: RemoteFile, cfg: HubConfig, part: Path, meter: _Meter,
                            control: DownloadControl, retry: RetryPolicy) -> str:
    try:
        return _fetch(remote, cfg, part, meter, control, retry)
    except (DownloadError, DownloadCancelled, DownloadPaused):
        raise
    except OSError as exc:
        if status_of(exc) is not None:
            raise DownloadError(explain(exc, cfg, remote.repo_id, remote.filename)) from exc
        msg = f"Could not write {part}: {exc.strerror or exc}. The partial file is kept."
        raise DownloadError(msg) from exc
    except Exception as exc:
        raise DownloadError(explain(exc, cfg, remote.repo_id, remote.filename)) from exc


def _install(part: Path, remote: RemoteFile, store: ModelStore) -> Path:
    """Move the verified partial into place atomically; the HF cache gets its blobs/snapshots layout."""
    sidecar = part.with_name(part.name + ".json")
    if not store.use_hf_cache:
        target = store.target_path(remote.repo_id, remote.filename)
        target.parent.mkdir(parents=True, exist_ok=True)
        _move(part, target)
        sidecar.unlink(missing_ok=True)
        return target
    repo_dir = store.hf_cache() / ("models--" + remote.repo_id.replace("/", "--"))
    blob = repo_dir / "blobs" / (remote.sha256 or "")
    blob.parent.mkdir(parents=True, exist_ok=True)
    _move(part, blob)
    sidecar.unlink(missing_ok=True)
    commit = remote.commit or remote.revision
    link = repo_dir / "snapshots" / commit / remote.filename
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    try:
        link.symlink_to(os.path.relpath(blob, link.parent))
    except OSError:  # no symlinks (Windows without developer mode): huggingface_hub then moves the blob too
        os.replace(blob, link)
    if remote.revision != commit:
        (repo_dir / "refs").mkdir(exist_ok=True)
        (repo_dir / "refs" / remote.revision).write_text(commit)
    return link


def _move(src: Path, dst: Path) -> None:
    try:
        os.replace(src, dst)
    except OSError:  # another file system (custom folder): copy, then swap in atomically
        tmp = dst.with_name(dst.name + ".incoming")
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
        src.unlink()


def _from_hf_cache(mf: ModelFile, store: ModelStore, meter: _Meter,
                   control: DownloadControl) -> _Obtained | None:
    """Reuse a copy the user already has in the Hugging Face cache (no duplicate), after checking it.

    The cache names LFS blobs by their sha256, so the file can be verified even offline.
    """
    repo_dir = store.hf_cache() / ("models--" + mf.repo_id.replace("/", "--"))
    snap_root = repo_dir / "snapshots"
    ref = repo_dir / "refs" / mf.revision
    commit = ref.read_text().strip() if ref.is_file() else mf.revision
    candidate = snap_root / commit / mf.filename
    if not candidate.is_file():
        return None
    blob_name = candidate.resolve().name
    expected = blob_name if SHA256_RE.match(blob_name) else mf.sha256
    if expected is None:
        return None
    meter.total = candidate.stat().st_size

    def tick(n: int) -> None:
        control._check()
        meter.advance(n, DownloadState.VERIFYING)

    digest = sha256_file(candidate, tick)
    if digest != expected:
        return None  # damaged or foreign: download our own verified copy instead
    meter.state(DownloadState.DONE)
    return _Obtained(candidate, digest, "hf-cache", owned=False)
