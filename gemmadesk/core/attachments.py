"""Attachment storage: every attached image or audio file is copied once, named by its content.

``<data dir>/attachments/<aa>/<sha256><ext>`` (``aa`` = the first two hex digits, so no folder grows
huge). :meth:`AttachmentStore.put` checks the file first (:func:`gemmadesk.core.media.check_media`:
image/audio recognised from its bytes, size bounded), copies it while hashing (never more than the
limit, even if the file grows meanwhile) into a temporary file inside the store, flushes it to disk
and renames it into place, so a kill or a full disk never leaves a half file under a final name. The
same content attached twice is stored once.

Only files this store created are ever deleted, and never through a symbolic link
(:meth:`AttachmentStore.remove`). Reference counting by the chat history (delete an attachment when no
chat uses it any more) is the history's job: :meth:`AttachmentStore.remove_unused` takes the set of
hashes still referenced.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from gemmadesk.core.media import (
    EXTENSIONS,
    MAX_AUDIO_BYTES,
    MAX_IMAGE_BYTES,
    Attachment,
    MediaError,
    check_stream,
    open_regular,
)
from gemmadesk.core.paths import AppPaths, app_paths
from gemmadesk.core.types import AttachmentKind

_NAME = re.compile(r"^(?P<sha>[0-9a-f]{64})(?P<ext>\.[a-z0-9]{2,5})$")
_BLOCK = 1 << 20


def _shown_name(name: str) -> str:
    """A file name as shown to the person: no folders, no control characters, at most 120 characters."""
    base = re.split(r"[\\/]", name)[-1]
    clean = "".join(ch for ch in base if ch.isprintable())
    return clean[:120]


class AttachmentStoreError(Exception):
    """A storage problem (disk full, permissions); ``str()`` is one sentence for the person."""


class AttachmentStore:
    def __init__(self, paths: AppPaths | None = None, root: Path | None = None) -> None:
        self.root = root if root is not None else (paths or app_paths()).data_dir / "attachments"

    # ----------------------------------------------------------------------------------------- adding
    def put(self, source: str | Path) -> Attachment:
        """Check ``source`` and store a copy; returns the stored :class:`Attachment`. Raises
        :class:`MediaError` (not an image/audio file, too large) or :class:`AttachmentStoreError`."""
        source = Path(source)
        fh, size = open_regular(source)
        with fh:
            return self._store(fh, size, _shown_name(source.name))

    def put_bytes(self, data: bytes, name: str) -> Attachment:
        """:meth:`put` for bytes in memory (a pasted picture, an API request's data: URL); ``name`` is
        only shown to the person (and in messages)."""
        return self._store(io.BytesIO(data), len(data), _shown_name(name) or "attachment")

    def _store(self, fh: BinaryIO, size: int, name: str) -> Attachment:
        info = check_stream(fh, size, name)
        limit = MAX_IMAGE_BYTES if info.kind == "image" else MAX_AUDIO_BYTES
        folder = self._ensure_root()
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=".incoming-", suffix=".part", dir=folder)
        except OSError as exc:
            raise AttachmentStoreError(self._disk_message(exc)) from None
        tmp = Path(tmp_name)
        try:
            digest = hashlib.sha256()
            n = 0
            with os.fdopen(fd, "wb") as out:
                while block := fh.read(_BLOCK):
                    n += len(block)
                    if n > limit:
                        raise MediaError(f"“{name}” grew past {limit // 2**20} MB while it was "
                                         "being attached; attach it again once it is complete.")
                    digest.update(block)
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
            sha = digest.hexdigest()
            final = self.path_for(sha, info.extension)
            final.parent.mkdir(exist_ok=True)
            if self._is_our_file(final) and final.stat().st_size == n:
                tmp.unlink()
                os.utime(final)  # attached again just now: a start-up sweep must not take it (min_age_s)
            else:
                os.replace(tmp, final)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise AttachmentStoreError(self._disk_message(exc)) from None
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return Attachment(AttachmentKind(info.kind), final, sha, info.mime, name)

    def _ensure_root(self) -> Path:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise AttachmentStoreError(self._disk_message(exc)) from None
        if self.root.is_symlink() or not self.root.is_dir():
            raise AttachmentStoreError(f"The attachments folder “{self.root}” is not a plain folder; "
                                       "move whatever is there away and try again.")
        return self.root

    def _disk_message(self, exc: OSError) -> str:
        import errno

        if exc.errno == errno.ENOSPC:
            return "The disk is full, so the attachment could not be saved; free some space and attach it again."
        return f"The attachment could not be saved in “{self.root}” ({exc.strerror or exc}); check that folder."

    # ----------------------------------------------------------------------------------------- finding
    def path_for(self, sha256: str, extension: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", sha256) or extension not in EXTENSIONS.values():
            raise ValueError("not an attachment name")
        return self.root / sha256[:2] / f"{sha256}{extension}"

    def find(self, sha256: str) -> Path | None:
        """The stored file with this content hash, if there is one."""
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            return None
        folder = self.root / sha256[:2]
        for ext in dict.fromkeys(EXTENSIONS.values()):
            candidate = folder / f"{sha256}{ext}"
            if self._is_our_file(candidate):
                return candidate
        return None

    def verify(self, sha256: str) -> bool:
        """True if the stored file still has the content its name says (read in full)."""
        path = self.find(sha256)
        if path is None:
            return False
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            while block := fh.read(_BLOCK):
                digest.update(block)
        return digest.hexdigest() == sha256

    def hashes(self) -> Iterator[str]:
        """The content hashes of every stored attachment."""
        if not self.root.is_dir() or self.root.is_symlink():
            return
        for folder in sorted(self.root.iterdir()):
            if folder.is_symlink() or not folder.is_dir() or not re.fullmatch(r"[0-9a-f]{2}", folder.name):
                continue
            for entry in sorted(folder.iterdir()):
                m = _NAME.match(entry.name)
                if m and m.group("sha").startswith(folder.name) and self._is_our_file(entry):
                    yield m.group("sha")

    # ----------------------------------------------------------------------------------------- removing
    def remove(self, sha256: str) -> bool:
        """Delete the stored attachment with this hash; never follows a symbolic link, never deletes
        anything but a regular file with an attachment name inside the store. True if one was deleted."""
        path = self.find(sha256)
        if path is None:
            return False
        path.unlink()
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only if now empty
        return True

    def remove_unused(self, referenced: Iterable[str], min_age_s: float = 0.0) -> int:
        """Delete every stored attachment whose hash is not in ``referenced``; returns how many.
        ``min_age_s``: keep files stored (or attached again) less than this long ago, which another
        GemmaDesk process may be about to reference (a start-up sweep)."""
        keep = set(referenced)
        now = time.time()
        count = 0
        for sha in list(self.hashes()):
            if sha in keep:
                continue
            path = self.find(sha)
            try:
                if path is None or (min_age_s > 0 and now - path.lstat().st_mtime < min_age_s):
                    continue
            except OSError:
                continue
            count += self.remove(sha)
        return count

    def _is_our_file(self, path: Path) -> bool:
        """A regular file (not a link) directly in a two-digit folder of this store's own root."""
        try:
            st = path.lstat()
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode) or path.parent.is_symlink() or self.root.is_symlink():
            return False
        return path.parent.parent == self.root and _NAME.match(path.name) is not None
