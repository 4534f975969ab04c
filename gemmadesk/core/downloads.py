"""Downloading catalog models: preflight, resumable transfer, sha256 verification, install.

Call :func:`download` on a worker thread; it blocks and reports :class:`Progress` through ``on_progress``.
Pause/cancel it with a :class:`DownloadControl`; calling it again resumes.

How it works, and why:

- Metadata (size, sha256, commit, download location) comes from huggingface_hub (:mod:`gemmadesk.core.hub`),
  so the endpoint/mirror, token and proxies are handled by the library. The bytes are fetched by
  :mod:`gemmadesk.core.transfer` with HTTP Range requests through the *same* httpx2 client
  huggingface_hub uses: that gives pause/cancel, resume, our own retry policy and hashing while writing,
  which ``hf_hub_download`` does not offer.
- Bytes go to ``<partial dir>/<repo>--<file>.part`` next to a small ``.part.json`` saying which remote
  object (etag, size) they belong to. A partial for a different object is discarded.
- The sha256 is computed while the bytes arrive; a resumed partial is re-hashed once first (hashlib
  cannot save its state; a sequential local read is far cheaper than fetching again). After the last
  byte only the digest is left, so verification adds next to nothing.
- Only a file whose sha256 matched is moved into place (``os.replace``) and recorded in the store; a
  mismatch deletes the partial and says so. Nothing half-written is ever listed as installed.
- No duplicates: an installed model is returned as is, and a verified copy already in the user's
  Hugging Face cache is used in place. With ``Settings.use_hf_cache`` downloads go into that cache, in
  its own ``blobs/``/``snapshots/`` layout, so other Hugging Face tools see them too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from gemmadesk.core.catalog import CatalogEntry, ModelFile
from gemmadesk.core.fit import FitOptions, Verdict, plan_entry
from gemmadesk.core.hardware import Hardware
from gemmadesk.core.hub import SHA256_RE, HubConfig, HubError, RemoteFile, resolve
from gemmadesk.core.store import InstalledModel, ModelStore, StoreError, sha256_file
from gemmadesk.core.transfer import (
    DownloadCancelled,
    DownloadControl,
    DownloadError,
    DownloadPaused,
    DownloadState,
    Meter,
    Progress,
    RetryPolicy,
    backoff,
    discard,
    exclusive,
    fetch,
)
from gemmadesk.core.types import ModelSource
from gemmadesk.core.units import human_bytes as _fmt

__all__ = [
    "DownloadCancelled", "DownloadControl", "DownloadError", "DownloadPaused", "DownloadState", "Preflight",
    "Progress", "RetryPolicy", "check_disk", "discard_partial", "download", "hub_file_entry", "preflight",
]
GiB = 1024**3
UNREACHABLE_TRIES = 3  # metadata attempts when no connection can be made at all (1 s + 2 s of backoff)


@dataclass(frozen=True)
class Preflight:
    """What to tell the user before a download starts (``messages``, in order: disk, fit)."""

    ok: bool  # False only when the download cannot succeed (disk space); a fit warning leaves it True
    messages: tuple[str, ...]
    bytes_needed: int
    bytes_free: int
    verdict: str | None = None  # the fit Verdict value, when the fit check ran
    will_run: bool = True


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
# In GemmaDesk's store a partial is ``<partial dir>/<org>--<repo>--<file>.part``. With the HF cache it is
# ``<repo folder>/blobs/<sha256>.incomplete``, huggingface_hub's own convention: on the same file system
# as the final blob (the move is atomic, no second copy), listed and cleaned by ``hf cache`` tools, and
# interchangeable with a partial that ``hf_hub_download`` left (same content-addressed name).
def _hf_repo_dir(store: ModelStore, repo_id: str) -> Path:
    return store.hf_cache() / ("models--" + repo_id.replace("/", "--"))


def _partial_path(store: ModelStore, remote: RemoteFile) -> Path:
    if store.use_hf_cache and remote.sha256:
        return _hf_repo_dir(store, remote.repo_id) / "blobs" / f"{remote.sha256}.incomplete"
    return _own_partial(store, remote.repo_id, remote.filename)


def _own_partial(store: ModelStore, repo_id: str, filename: str) -> Path:
    return store.partial_dir() / f"{repo_id.replace('/', '--')}--{filename}.part"


def _partials(store: ModelStore, mf: ModelFile) -> list[Path]:
    """The partial files GemmaDesk kept for this file, in its store and in the HF cache."""
    found = [p for p in (_own_partial(store, mf.repo_id, mf.filename),) if p.exists()]
    for sidecar in (_hf_repo_dir(store, mf.repo_id) / "blobs").glob("*.incomplete.json"):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            if json.loads(sidecar.read_text(encoding="utf-8")).get("filename") == mf.filename:
                found.append(sidecar.with_suffix(""))
    return found


def _partial_size(store: ModelStore, mf: ModelFile) -> int:
    sizes = [p.stat().st_size for p in _partials(store, mf) if p.exists()]
    return max(sizes, default=0)


def discard_partial(entry: CatalogEntry, store: ModelStore) -> None:
    """Delete the kept partial files of an entry (the UI offers this after a cancel)."""
    for mf in (entry.file, entry.mmproj):
        if mf is not None:
            for part in _partials(store, mf):
                discard(part)


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
    if installed is not None and installed.status == "changed":  # touched or damaged? check the bytes
        on_progress(Progress(entry.id, entry.file.filename, DownloadState.VERIFYING, 0, installed.size_bytes,
                             0.0, None))
        with contextlib.suppress(StoreError):
            installed = store.verify(installed.id)
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
    source: ModelSource  # DOWNLOAD or HF_CACHE
    owned: bool  # False for a copy the user already had in the HF cache


def _obtain(entry: CatalogEntry, mf: ModelFile, store: ModelStore, cfg: HubConfig,
            on_progress: Callable[[Progress], None], control: DownloadControl,
            retry: RetryPolicy) -> _Obtained:
    """One file: reuse a verified copy from the HF cache, or fetch, verify and install it."""
    meter = Meter(entry.id, mf.filename, mf.size_bytes, on_progress)
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
        part = _partial_path(store, remote)
        with exclusive(part, mf.filename):
            digest = fetch(remote, cfg, part, meter, control, retry,
                           refresh=lambda: _resolve_with_retry(mf, cfg, control, retry))
            meter.state(DownloadState.VERIFYING)
            if digest != remote.sha256:
                discard(part)
                raise DownloadError(
                    f"{mf.filename} is damaged: its sha256 is {digest} but the {remote.sha256_source} says "
                    f"{remote.sha256}. The bad file was deleted; download it again."
                )
            target = _install(part, remote, store)
        meter.state(DownloadState.DONE)
        source = ModelSource.HF_CACHE if store.use_hf_cache else ModelSource.DOWNLOAD
        return _Obtained(target, digest, source, owned=True)
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
    """Ask the Hub about the file, retrying transient failures with the same policy as the transfer.

    When the Hub cannot be reached at all (no network, DNS, refused) it gives up after a few quick
    tries: a clear "cannot reach" within seconds beats a minute of "queued".
    """
    failures = 0
    while True:
        try:
            return resolve(mf, cfg, timeout=retry.connect_timeout_s + retry.stall_timeout_s)
        except HubError as exc:
            failures += 1
            limit = min(retry.max_failures, UNREACHABLE_TRIES) if exc.unreachable else retry.max_failures
            if not exc.transient or failures >= limit:
                raise DownloadError(str(exc)) from exc
            control.wait(backoff(retry, failures, exc.retry_after))


def _install(part: Path, remote: RemoteFile, store: ModelStore) -> Path:
    """Move the verified partial into place atomically; the HF cache gets its blobs/snapshots layout."""
    sidecar = part.with_name(part.name + ".json")
    if not store.use_hf_cache:
        target = store.target_path(remote.repo_id, remote.filename)
        target.parent.mkdir(parents=True, exist_ok=True)
        _move(part, target)
        sidecar.unlink(missing_ok=True)
        return target
    repo_dir = _hf_repo_dir(store, remote.repo_id)
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


def _from_hf_cache(mf: ModelFile, store: ModelStore, meter: Meter,
                   control: DownloadControl) -> _Obtained | None:
    """Reuse a copy the user already has in the Hugging Face cache (no duplicate), after checking it.

    The cache names LFS blobs by their sha256, so the file can be verified even offline.
    """
    repo_dir = _hf_repo_dir(store, mf.repo_id)
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
        control.raise_if_stopped()
        meter.advance(n, DownloadState.VERIFYING)

    digest = sha256_file(candidate, tick)
    if digest != expected:
        return None  # damaged or foreign: download our own verified copy instead
    meter.state(DownloadState.DONE)
    return _Obtained(candidate, digest, ModelSource.HF_CACHE, owned=False)
