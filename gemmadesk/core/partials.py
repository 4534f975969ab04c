"""Partial downloads on disk: where they are, how far they got, and discarding them.

In GemmaDesk's store a partial is ``<partial dir>/<org>--<repo>--<file>.part`` beside a ``.part.json``
sidecar saying which remote object it holds (repo, file, size, sha256, etag). With the Hugging Face cache it
is ``<repo folder>/blobs/<sha256>.incomplete`` (huggingface_hub's own convention; GemmaDesk adds its sidecar).
This module imports nothing heavy (no huggingface_hub), so the window can show a partial's real progress
and offer "Discard" at start-up; :mod:`gemmadesk.core.downloads` does the downloading.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

from gemmadesk.core.catalog import CatalogEntry, ModelFile
from gemmadesk.core.safe_paths import UnsafePathError, check_filename, check_repo_id, inside
from gemmadesk.core.store import ModelStore

__all__ = ["PartialInfo", "discard", "discard_partial", "hf_repo_dir", "own_partial", "partial_info", "partials_of"]


def discard(part: Path) -> None:
    """Delete a partial file and its identity sidecar (GemmaDesk's own files; a symlink is only unlinked)."""
    part.unlink(missing_ok=True)
    part.with_name(part.name + ".json").unlink(missing_ok=True)


# In GemmaDesk's store a partial is ``<partial dir>/<org>--<repo>--<file>.part``. With the HF cache it is
# ``<repo folder>/blobs/<sha256>.incomplete``, huggingface_hub's own convention: on the same file system
# as the final blob (the move is atomic, no second copy), listed and cleaned by ``hf cache`` tools, and
# interchangeable with a partial that ``hf_hub_download`` left (same content-addressed name).
# Every path below is built with ``safe_paths.inside``: names from a command line or a mirror's answers
# never lead outside the folder they belong in.
def hf_repo_dir(store: ModelStore, repo_id: str) -> Path:
    return inside(store.hf_cache(), "models--" + check_repo_id(repo_id).replace("/", "--"))


def own_partial(store: ModelStore, repo_id: str, filename: str) -> Path:
    flat = f"{check_repo_id(repo_id).replace('/', '--')}--{check_filename(filename).replace('/', '--')}.part"
    return inside(store.partial_dir(), flat)


def partials_of(store: ModelStore, mf: ModelFile) -> list[Path]:
    """The partial files GemmaDesk kept for this file (each with GemmaDesk's sidecar), in its store and in
    the HF cache. Symlinks are never taken for partials."""
    try:
        own = own_partial(store, mf.repo_id, mf.filename)
        blobs = inside(hf_repo_dir(store, mf.repo_id), "blobs")
    except UnsafePathError:
        return []
    found = [own] if own.is_file() and not own.is_symlink() else []
    with contextlib.suppress(OSError):
        for sidecar in sorted(blobs.glob("*.incomplete.json"))[:100] if blobs.is_dir() else []:
            with contextlib.suppress(OSError, ValueError, AttributeError, RecursionError):
                part = sidecar.with_suffix("")
                if part.is_symlink() or not part.is_file() or sidecar.stat().st_size > 64 * 1024:
                    continue
                if json.loads(sidecar.read_text(encoding="utf-8")).get("filename") == mf.filename:
                    found.append(part)
    return found


def partial_size(store: ModelStore, mf: ModelFile) -> int:
    sizes = [_size(p) for p in partials_of(store, mf)]
    return max(sizes, default=0)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _expected_size(part: Path) -> int:
    """The full size a partial will have, from its sidecar (0 when unknown)."""
    try:
        data = json.loads(part.with_name(part.name + ".json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return 0
    size = data.get("size") if isinstance(data, dict) else None
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else 0


@dataclass(frozen=True)
class PartialInfo:
    """What an interrupted download of an entry left on disk (for "Resume" with real progress, "Discard")."""

    bytes_done: int  # bytes on disk (all kept partial files of the entry)
    bytes_total: int  # the full size, when known (else 0)


def partial_info(entry: CatalogEntry, store: ModelStore) -> PartialInfo | None:
    """The entry's kept partial download, or None when there is none."""
    done = total = 0
    found = False
    for mf in (entry.file, entry.mmproj):
        if mf is None:
            continue
        parts = partials_of(store, mf)
        if parts:
            found = True
            best = max(parts, key=_size)
            done += _size(best)
            total += _expected_size(best) or mf.size_bytes
        elif mf is entry.file:
            total += mf.size_bytes
    return PartialInfo(done, max(total, done)) if found else None


def discard_partial(entry: CatalogEntry, store: ModelStore) -> int:
    """Delete the kept partial files of an entry (the UI offers this after a cancel); returns the bytes freed.
    Only partials with GemmaDesk's sidecar are touched, never through a symlink."""
    freed = 0
    for mf in (entry.file, entry.mmproj):
        if mf is not None:
            for part in partials_of(store, mf):
                size = _size(part)
                discard(part)
                freed += size
    return freed


