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
- Names are checked before anything happens (:mod:`gemmadesk.core.safe_paths`): a repo id, file name,
  revision or commit id from a command line or a mirror can never place a file outside GemmaDesk's folders.
- A catalog model's size must match the catalog (within :data:`SIZE_TOLERANCE`) before a byte moves, so
  a mirror serving another file is refused at once.
- Only a file whose sha256 matched *and* that is a GGUF of the expected architecture and layer count
  (:func:`gemmadesk.core.model_check.check_model_file`) is moved into place (``os.replace``) and recorded
  in the store; anything else deletes the partial and says so in words (the hashes go to the log).
  Nothing half-written or foreign is ever listed as installed.
- A receipt of the installed file is written before the move (:mod:`gemmadesk.core.store`): GemmaDesk
  later deletes only files it wrote, and finds its verified download again if the model list could not
  be saved. A file already at the target that GemmaDesk did not write is never overwritten.
- No duplicates: an installed model is returned as is, and a verified copy already in the user's
  Hugging Face cache is used in place. With ``Settings.use_hf_cache`` downloads go into that cache, in
  its own ``blobs/``/``snapshots/`` layout, so other Hugging Face tools see them too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from gemmadesk.core.catalog import CatalogEntry, ModelFile
from gemmadesk.core.fit import FitOptions, Verdict, plan_entry, will_not_run_warning
from gemmadesk.core.hardware import Hardware
from gemmadesk.core.hub import SHA256_RE, HubConfig, HubError, RemoteFile, resolve
from gemmadesk.core.model_check import ModelFileError, check_model_file
from gemmadesk.core.partials import (
    PartialInfo,
    discard,
    discard_partial,
    hf_repo_dir,
    own_partial,
    partial_info,
    partial_size,
)
from gemmadesk.core.safe_paths import (
    UnsafePathError,
    check_commit,
    check_filename,
    check_repo_id,
    check_revision,
    inside,
)
from gemmadesk.core.store import (
    InstalledModel,
    ModelStore,
    Receipt,
    StoreError,
    WrittenFile,
    WrittenLink,
    sha256_file,
)
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
    exclusive,
    fetch,
)
from gemmadesk.core.types import ModelSource
from gemmadesk.core.units import human_bytes as _fmt

__all__ = [
    "DownloadCancelled", "DownloadControl", "DownloadError", "DownloadPaused", "DownloadState", "PartialInfo",
    "Preflight", "Progress", "RetryPolicy", "check_disk", "discard_partial", "download", "hub_file_entry",
    "partial_info", "preflight",
]
log = logging.getLogger(__name__)
GiB = 1024**3
UNREACHABLE_TRIES = 3  # metadata attempts when no connection can be made at all (1 s + 2 s of backoff)
SIZE_TOLERANCE = 0.10  # the Hub's size may differ this much from the catalog's (re-uploads, rounded sizes)


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
    remaining = sum(max(0, size - partial_size(store, f)) for f, size in zip(files, sizes, strict=True))
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
            warning = will_not_run_warning(plan) or ""
            messages.append(f"Warning: {warning[:1].lower()}{warning[1:]}")
        elif plan.tight:
            messages.append(f"Memory will be tight: {plan.reason}")
        else:
            messages.append(f"Fits this machine ({plan.verdict.label}): {plan.reason}")
    return Preflight(disk_msg is None, tuple(messages), needed, free, verdict, will_run)


# ----- partial files -------------------------------------------------------------------------------
# Where partials live and how they are found, sized and discarded: :mod:`gemmadesk.core.partials` (light, so
# the window can show a partial's progress without importing huggingface_hub).
def _partial_path(store: ModelStore, remote: RemoteFile) -> Path:
    if store.use_hf_cache and remote.sha256:
        return inside(hf_repo_dir(store, remote.repo_id), "blobs", f"{remote.sha256}.incomplete")
    return own_partial(store, remote.repo_id, remote.filename)


# ----- the public entry point ----------------------------------------------------------------------
def hub_file_entry(repo_id: str, filename: str, revision: str = "main") -> CatalogEntry:
    """A runnable entry for any GGUF on the Hub (``gemmadesk pull org/repo/file.gguf``).

    Its size and sha256 come from the Hub when downloading; the fit check cannot judge it beforehand.
    """
    try:
        check_repo_id(repo_id)
        check_filename(filename)
        check_revision(revision)
    except UnsafePathError as exc:
        raise DownloadError(str(exc)) from exc
    if not filename.lower().endswith(".gguf"):
        raise DownloadError(f"{filename!r} is not a .gguf file; GemmaDesk downloads GGUF models only.")
    mf = ModelFile(repo_id=repo_id, filename=filename, size_bytes=0, revision=revision)
    return CatalogEntry(
        architecture="",  # any architecture llama.cpp runs
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
    try:
        for mf, _role in files:
            check_repo_id(mf.repo_id)
            check_filename(mf.filename)
            check_revision(revision or mf.revision)
    except UnsafePathError as exc:
        raise DownloadError(str(exc)) from exc
    installed = store.find_for_entry(entry.id)
    if store.refused:
        raise DownloadError(store.refused)
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
        got = _obtain(entry, mf, store, cfg, on_progress, control, retry, role,
                      pinned=revision is None or revision == mf.revision)
        try:
            if role == "main":
                installed = store.record(model_id=entry.id, entry_id=entry.id, path=got.path, sha256=got.sha256,
                                         source=got.source, display_name=_display_name(entry), owned=got.owned)
            else:
                installed = store.attach_mmproj(entry.id, got.path, got.sha256, owned=got.owned)
        except (OSError, StoreError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise DownloadError(
                f"{mf.filename} was downloaded and verified ({got.path}), but the model list could not be saved "
                f"({why}): free some disk space and start GemmaDesk again; it will find the file and list it."
            ) from exc
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
            retry: RetryPolicy, role: str = "main", *, pinned: bool = True) -> _Obtained:
    """One file: reuse a verified copy from the HF cache, or fetch, verify, check and install it."""
    meter = Meter(entry.id, mf.filename, mf.size_bytes, on_progress)
    try:
        cached = _from_hf_cache(mf, store, meter, control, entry, role)
        if cached is not None:
            return cached
        meter.state(DownloadState.QUEUED)
        remote = _resolve_with_retry(mf, cfg, control, retry)
        if remote.sha256 is None:
            raise DownloadError(
                f"Neither {cfg.endpoint} nor the catalog gives a sha256 for {mf.filename}, so the download "
                "could not be verified; GemmaDesk does not install unverified files."
            )
        if remote.commit is not None:
            check_commit(remote.commit)  # a mirror's answer becomes a folder name in the HF cache layout
        if pinned:
            _check_size(entry, mf, remote, cfg)
        meter.total = remote.size
        _needed, _free, short = check_disk(store, [mf], [remote.size])
        if short:
            raise DownloadError(short)
        part = _partial_path(store, remote)
        with exclusive(part, mf.filename, store.paths.cache_dir / "locks"):
            digest = fetch(remote, cfg, part, meter, control, retry,
                           refresh=lambda: _resolve_with_retry(mf, cfg, control, retry))
            meter.state(DownloadState.VERIFYING)
            if digest != remote.sha256:
                discard(part)
                log.warning("sha256 mismatch for %s from %s: got %s, the %s says %s", mf.filename, cfg.endpoint,
                            digest, remote.sha256_source, remote.sha256)
                raise DownloadError(
                    f"{mf.filename} arrived damaged (its contents do not match what the "
                    f"{_source_words(remote.sha256_source)} published), so it was deleted: download it again; "
                    "if this repeats, check the network or the mirror."
                )
            _check_contents(part, mf.filename, entry, role, store, cfg)
            target = _install(part, remote, store, entry, role)
        meter.state(DownloadState.DONE)
        source = ModelSource.HF_CACHE if store.use_hf_cache else ModelSource.DOWNLOAD
        return _Obtained(target, digest, source, owned=True)
    except (UnsafePathError, StoreError) as exc:
        meter.state(DownloadState.FAILED, str(exc))
        raise DownloadError(str(exc)) from exc
    except DownloadPaused:
        meter.state(DownloadState.PAUSED)
        raise
    except DownloadCancelled:
        meter.state(DownloadState.CANCELLED)
        raise
    except DownloadError as exc:
        meter.state(DownloadState.FAILED, str(exc))
        raise


def _source_words(source: str) -> str:
    return {"hub": "Hub", "catalog": "catalog"}.get(source, "server")


def _fmt_size(n: int) -> str:
    return f"{n / GiB:.2f} GiB ({n:,} bytes)" if n >= GiB / 10 else f"{n / 2**20:.1f} MiB ({n:,} bytes)"


def _check_size(entry: CatalogEntry, mf: ModelFile, remote: RemoteFile, cfg: HubConfig) -> None:
    """A catalog model's file must be about the size the catalog publishes: a mirror that serves something
    else (a 57 MiB file as E2B) is refused before a byte is downloaded."""
    if mf.size_bytes <= 0 or abs(remote.size - mf.size_bytes) <= SIZE_TOLERANCE * mf.size_bytes:
        return
    raise DownloadError(
        f"{cfg.endpoint} offers {mf.filename} as {_fmt_size(remote.size)}, but {_display_name(entry)} is "
        f"published as {_fmt_size(mf.size_bytes)}: the server is not serving that model, so nothing was "
        "downloaded. Check the mirror in HF_ENDPOINT (or unset it) and try again."
    )


def _check_contents(part: Path, filename: str, entry: CatalogEntry, role: str, store: ModelStore,
                    cfg: HubConfig) -> None:
    """A verified download must also be a model llama.cpp can load, of the expected architecture and
    layer count, before it is installed (the sha256 only proves it is what the server meant to send)."""
    if role == "mmproj":
        want, layers = None, None
    else:
        want = entry.architecture or None
        arch = store.catalog.architectures.get(entry.size) if want == "gemma4" else None
        layers = arch.n_layer if arch is not None else None
    try:
        check_model_file(part, architecture=want, n_layer=layers, expected_name=_display_name(entry),
                         projector=role == "mmproj")
    except ModelFileError as exc:
        discard(part)
        why = str(exc).replace(part.name, filename)
        raise DownloadError(
            f"The file {cfg.endpoint} sent is not {_display_name(entry)}: {why} It was deleted; check the mirror "
            "in HF_ENDPOINT (or unset it) and try again."
        ) from exc


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


def _install(part: Path, remote: RemoteFile, store: ModelStore, entry: CatalogEntry, role: str) -> Path:
    """Move the verified partial into place atomically; the HF cache gets its blobs/snapshots layout.

    A receipt of what is written is saved *before* the move (see :mod:`gemmadesk.core.store`): if the
    model list cannot be written afterwards, the store still finds and adopts the file. A file already at
    the target that GemmaDesk did not write is never overwritten.
    """
    sidecar = part.with_name(part.name + ".json")
    sha = remote.sha256 or ""
    name = _display_name(entry) if role == "main" else f"{_display_name(entry)} (vision projector)"
    if not store.use_hf_cache:
        target = store.target_path(remote.repo_id, remote.filename)
        _refuse_foreign(target, store)
        target.parent.mkdir(parents=True, exist_ok=True)
        _receipt(store, target, role, entry, sha, "download", name, [(target, os.stat(part))])
        final = _move(part, target)
        if final is not None:  # copied across file systems: a new file, so a new receipt
            _receipt(store, target, role, entry, sha, "download", name, [(target, final)])
        sidecar.unlink(missing_ok=True)
        return target
    repo_dir = hf_repo_dir(store, remote.repo_id)
    blob = inside(repo_dir, "blobs", sha)
    commit = check_commit(remote.commit) if remote.commit else check_revision(remote.revision)
    link = inside(repo_dir, "snapshots", commit, remote.filename)
    _refuse_foreign(blob, store, link)
    relative = os.path.relpath(blob, link.parent)
    reuse_link = link.is_symlink() and os.readlink(link) == relative  # e.g. made by huggingface_hub
    if os.path.lexists(link) and not reuse_link:
        _refuse_foreign(link, store)
    blob.parent.mkdir(parents=True, exist_ok=True)
    links = [] if reuse_link else [WrittenLink(str(link), relative)]
    _receipt(store, link, role, entry, sha, "hf-cache", name, [(blob, os.stat(part))], links)
    final = _move(part, blob)
    if final is not None:
        _receipt(store, link, role, entry, sha, "hf-cache", name, [(blob, final)], links)
    sidecar.unlink(missing_ok=True)
    link.parent.mkdir(parents=True, exist_ok=True)
    if not reuse_link:
        if link.is_symlink():
            link.unlink()  # our own earlier link (checked above)
        try:
            link.symlink_to(relative)
        except OSError:  # no symlinks (Windows without developer mode): huggingface_hub then moves the blob
            os.replace(blob, link)
            _receipt(store, link, role, entry, sha, "hf-cache", name, [(link, os.stat(link))])
    if remote.revision != commit:
        ref = inside(repo_dir, "refs", remote.revision)
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit)
    return link


def _refuse_foreign(target: Path, store: ModelStore, model_path: Path | None = None) -> None:
    """Make way for the verified download: GemmaDesk's own earlier file there is replaced; one of its
    files that was changed since (a damaged download, or a new file that got its inode number) is kept
    aside as ``NAME.changed-N``; anything else stops the install (the verified partial is kept for later)."""
    if not os.path.lexists(target):
        return
    receipt = store.receipt_for(model_path or target)
    written = next((f for f in receipt.files if f.path == str(target)), None) if receipt is not None else None
    if written is not None and written.is_still_ours():
        return
    if written is not None and written.same_inode():
        n = 1
        while os.path.lexists(aside := target.with_name(f"{target.name}.changed-{n}")):
            n += 1
        os.replace(target, aside)
        log.warning("%s was changed since GemmaDesk downloaded it; kept it as %s", target, aside)
        return
    raise DownloadError(
        f"{target} already exists and GemmaDesk did not create it, so it was left as it is: move it away "
        "(or import it) and start the download again; the verified download is kept and will be used then."
    )


def _receipt(store: ModelStore, model_path: Path, role: str, entry: CatalogEntry, sha: str, source: str,
             name: str, files: list[tuple[Path, os.stat_result]], links: list[WrittenLink] | None = None) -> None:
    try:
        store.write_receipt(Receipt(
            str(model_path), role, entry.id, sha, source, name,
            tuple(WrittenFile.of(path, st) for path, st in files), tuple(links or ()),
        ))
    except OSError as exc:
        raise DownloadError(
            f"The download of {name} is complete and verified, but GemmaDesk could not note it in "
            f"{store.receipts_dir} ({exc.strerror or exc}): free some disk space and start the download again; "
            "it will finish from the kept file without downloading it again."
        ) from exc


def _move(src: Path, dst: Path) -> os.stat_result | None:
    """Rename ``src`` to ``dst``; across file systems copy then swap in atomically and return the new
    file's stat (None when it was a rename: same file, same inode)."""
    try:
        os.replace(src, dst)
        return None
    except OSError:  # another file system (custom folder): copy, then swap in atomically
        tmp = dst.with_name(dst.name + ".incoming")
        shutil.copyfile(src, tmp)
        st = os.stat(tmp)
        os.replace(tmp, dst)
        src.unlink()
        return st


def _from_hf_cache(mf: ModelFile, store: ModelStore, meter: Meter, control: DownloadControl,
                   entry: CatalogEntry | None = None, role: str = "main") -> _Obtained | None:
    """Reuse a copy the user already has in the Hugging Face cache (no duplicate), after checking it.

    The cache names LFS blobs by their sha256, so the file can be verified even offline.
    """
    try:
        repo_dir = hf_repo_dir(store, mf.repo_id)
        ref = inside(repo_dir, "refs", mf.revision)
        commit = ref.read_text()[:100].strip() if ref.is_file() else mf.revision
        candidate = inside(repo_dir, "snapshots", check_revision(commit), mf.filename)
    except (UnsafePathError, OSError):
        return None
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
    if entry is not None:
        try:
            check_model_file(candidate, projector=role == "mmproj",
                             architecture=None if role == "mmproj" else entry.architecture or None)
        except ModelFileError:
            return None
    meter.state(DownloadState.DONE)
    return _Obtained(candidate, digest, ModelSource.HF_CACHE, owned=store.owns(candidate))
