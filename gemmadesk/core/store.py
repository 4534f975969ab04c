"""The model store: which GGUF files GemmaDesk knows as installed, and where they are.

The store is a JSON manifest (``<data dir>/models.json``, written atomically) plus the files themselves.
A record is only ever added after the file verified (downloads) or its GGUF header parsed (imports), so
nothing half-written is listed. Files are not copied: downloads land in the store folder (or the user's
Hugging Face cache when ``Settings.use_hf_cache`` is on), imports and files found in the Hugging Face
cache stay where they are and are only referenced (``owned=False``; removing them forgets them but never
deletes the user's own file).

Each listing re-checks the files: ``missing`` when the model file vanished, ``changed`` when its size or
mtime differ from what was recorded (``verify()`` re-hashes it and accepts it again if the sha256 still
matches). A vanished vision projector only drops ``mmproj_path``: the model still works for text.
A corrupt manifest is kept aside and the list rebuilt from the models folder (:meth:`ModelStore.rescan`).
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gemmadesk.core.catalog import Catalog, CatalogEntry, load_catalog
from gemmadesk.core.gguf_header import GGUFHeaderError, read_header
from gemmadesk.core.paths import AppPaths, app_paths, atomic_write_text, hf_cache_dir
from gemmadesk.core.settings import Settings, SettingsStore
from gemmadesk.core.types import ModelSource
from gemmadesk.core.units import human_bytes

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
HASH_BLOCK = 8 * 1024 * 1024


class StoreError(Exception):
    """A store problem explained for a person."""


@dataclass(frozen=True)
class InstalledModel:
    id: str
    entry_id: str | None
    path: Path
    size_bytes: int
    sha256: str | None
    mmproj_path: Path | None
    source: ModelSource
    status: str  # "ok" | "missing" | "changed"
    display_name: str
    owned: bool = True  # False: the file belongs to the user (import, pre-existing HF cache); never deleted


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    """Sequential sha256 of a file; ``on_bytes(n)`` after each block (progress / cancellation hook)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(HASH_BLOCK):
            h.update(block)
            if on_bytes is not None:
                on_bytes(len(block))
    return h.hexdigest()


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-") or "model"


class ModelStore:
    """Installed models, backed by ``models.json``. Thread-safe within a process."""

    def __init__(
        self,
        paths: AppPaths | None = None,
        *,
        use_hf_cache: bool | None = None,
        models_dir: Path | None = None,
        catalog: Catalog | None = None,
        settings: Settings | None = None,
    ) -> None:
        """``settings``: the user's settings as the app already read them (read from disk when None)."""
        self.paths = paths or app_paths()
        settings = settings or SettingsStore(self.paths.settings_file).load()
        self.use_hf_cache = settings.use_hf_cache if use_hf_cache is None else use_hf_cache
        custom = models_dir or (Path(settings.models_dir).expanduser() if settings.models_dir else None)
        self.models_dir = custom or self.paths.models_dir
        self.catalog = catalog or load_catalog()
        self.manifest_path = self.paths.data_dir / "models.json"
        self._lock = threading.RLock()
        self.problems: list[str] = []  # things the store recovered from, for the UI to show once
        self._needs_rescan = False

    # ----- where files go ------------------------------------------------------------------------
    def target_path(self, repo_id: str, filename: str) -> Path:
        """Where a verified download of ``repo_id/filename`` is placed in GemmaDesk's own store."""
        return self.models_dir / repo_id.replace("/", "--") / filename

    def partial_dir(self) -> Path:
        """Resumable partial files; on the same file system as the store so the final move is atomic."""
        if self.models_dir == self.paths.models_dir:
            return self.paths.downloads_dir
        return self.models_dir / ".downloads"

    def hf_cache(self) -> Path:
        return hf_cache_dir()

    # ----- manifest ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _updating(self) -> Iterator[None]:
        """Serialise read-modify-write of the manifest: across threads, and across processes (the app
        and a `gemmadesk pull` in a terminal) with an OS file lock. Readers need no lock: writes are
        atomic replaces."""
        with self._lock:
            lock_path = self.manifest_path.with_name("models.json.lock")
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            with lock_path.open("a+b") as fh:
                _lock_file(fh.fileno())
                try:
                    yield
                finally:
                    _unlock_file(fh.fileno())

    def _read(self) -> list[dict[str, Any]]:
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            aside = self.manifest_path.with_name(f"models.json.corrupt-{os.getpid()}")
            self.manifest_path.replace(aside)
            self.problems.append(f"the model list was unreadable ({exc}); kept it as {aside.name} and "
                                 f"rebuilt the list from the files in {self.models_dir}")
            log.warning(self.problems[-1])
            self._needs_rescan = True
            return []
        models = data.get("models", []) if isinstance(data, dict) else []
        return [m for m in models if isinstance(m, dict) and "id" in m and "path" in m]

    def _write(self, records: list[dict[str, Any]]) -> None:
        payload = json.dumps({"version": MANIFEST_VERSION, "models": records}, indent=2, sort_keys=True)
        atomic_write_text(self.manifest_path, payload)

    @staticmethod
    def _to_model(rec: dict[str, Any]) -> InstalledModel:
        path = Path(rec["path"])
        mmproj = Path(rec["mmproj_path"]) if rec.get("mmproj_path") else None
        main = _stat(path)
        recorded = (rec.get("size_bytes"), rec.get("mtime_ns"))
        status = "missing" if main is None else "ok" if main == recorded else "changed"
        if mmproj is not None:
            proj = _stat(mmproj)
            if proj is None:
                mmproj = None  # the projector vanished: the model still works for text; a pull restores it
            elif proj != (rec.get("mmproj_size"), rec.get("mmproj_mtime_ns")) and status == "ok":
                status = "changed"
        return InstalledModel(
            id=str(rec["id"]),
            entry_id=rec.get("entry_id"),
            path=path,
            size_bytes=int(rec.get("size_bytes", 0)),
            sha256=rec.get("sha256"),
            mmproj_path=mmproj,
            source=ModelSource.parse(rec.get("source", "download")),
            status=status,
            display_name=str(rec.get("display_name", rec["id"])),
            owned=bool(rec.get("owned", True)),
        )

    # ----- public API --------------------------------------------------------------------------
    def list(self) -> list[InstalledModel]:
        with self._lock:
            records = self._read()
            if self._needs_rescan:
                self._needs_rescan = False
                self.rescan()
                records = self._read()
            return [self._to_model(r) for r in records]

    def rescan(self) -> builtins.list[InstalledModel]:
        """Adopt GGUF models in the models folder that the list does not know (after a lost manifest, or
        files copied there by hand). Matched to the catalog by name and size; sha256 unknown until
        :meth:`verify`. Vision projectors are left for a download to attach."""
        known = {Path(r["path"]) for r in self._read()} | {Path(r["mmproj_path"]) for r in self._read()
                                                           if r.get("mmproj_path")}
        adopted: builtins.list[InstalledModel] = []
        for path in sorted(self.models_dir.rglob("*.gguf")) if self.models_dir.is_dir() else []:
            if path in known:
                continue
            try:
                header = _header(path)
            except StoreError:
                continue
            if header.get("general.architecture") == "clip":
                continue
            entry = self._match_catalog(path)
            model_id = entry.id if entry is not None else self._free_id("custom-" + _slug(path.stem))
            name = entry.label if entry is not None else str(header.get("general.name") or path.stem)
            adopted.append(self.record(model_id=model_id, entry_id=entry.id if entry else None, path=path,
                                       sha256=None, source=ModelSource.DOWNLOAD, display_name=name, owned=True))
        return adopted

    def get(self, model_id: str) -> InstalledModel:
        for model in self.list():
            if model.id == model_id or model.entry_id == model_id:
                return model
        raise KeyError(f"no installed model {model_id!r}")

    def find_for_entry(self, entry_id: str) -> InstalledModel | None:
        return next((m for m in self.list() if m.entry_id == entry_id), None)

    def record(
        self,
        *,
        model_id: str,
        entry_id: str | None,
        path: Path,
        sha256: str | None,
        source: ModelSource,
        display_name: str,
        owned: bool,
        mmproj_path: Path | None = None,
        mmproj_sha256: str | None = None,
        mmproj_owned: bool | None = None,
    ) -> InstalledModel:
        """Add or replace a record; the caller has verified the file(s). Sizes/mtimes are taken now."""
        st = _stat(path)
        if st is None:
            raise StoreError(f"{path} does not exist")
        rec: dict[str, Any] = {
            "id": model_id, "entry_id": entry_id, "path": str(path), "size_bytes": st[0], "mtime_ns": st[1],
            "sha256": sha256, "source": source, "display_name": display_name, "owned": owned,
        }
        if mmproj_path is not None:
            mst = _stat(mmproj_path)
            if mst is None:
                raise StoreError(f"{mmproj_path} does not exist")
            rec.update(
                mmproj_path=str(mmproj_path), mmproj_size=mst[0], mmproj_mtime_ns=mst[1],
                mmproj_sha256=mmproj_sha256, mmproj_owned=owned if mmproj_owned is None else mmproj_owned,
            )
        with self._updating():
            records = [r for r in self._read() if r["id"] != model_id]
            records.append(rec)
            self._write(records)
        return self._to_model(rec)

    def attach_mmproj(
        self, model_id: str, mmproj_path: Path, sha256: str | None, *, owned: bool = True
    ) -> InstalledModel:
        """Add the vision projector to an installed model (downloaded after the main file)."""
        model = self.get(model_id)
        return self.record(
            model_id=model.id, entry_id=model.entry_id, path=model.path, sha256=model.sha256,
            source=model.source, display_name=model.display_name, owned=model.owned,
            mmproj_path=mmproj_path, mmproj_sha256=sha256, mmproj_owned=owned,
        )

    def remove(self, model_id: str) -> None:
        """Forget a model and delete the files GemmaDesk owns (never a user's imported file)."""
        with self._updating():
            records = self._read()
            victim = next((r for r in records if model_id in (r["id"], r.get("entry_id"))), None)
            if victim is None:
                raise KeyError(f"no installed model {model_id!r}")
            if victim.get("owned", True):
                _delete_owned(Path(victim["path"]))
            if victim.get("mmproj_path") and victim.get("mmproj_owned", victim.get("owned", True)):
                _delete_owned(Path(victim["mmproj_path"]))
            self._write([r for r in records if r is not victim])

    def verify(self, model_id: str) -> InstalledModel:
        """Re-hash a ``changed`` model; accept it again if the sha256 still matches, else say so."""
        model = self.get(model_id)
        if model.status == "missing":
            raise StoreError(f"{model.path} is missing; download or import it again")
        if model.sha256 and sha256_file(model.path) != model.sha256:
            raise StoreError(f"{model.path} no longer matches its sha256: it was modified or is damaged")
        with self._lock:
            rec = next(r for r in self._read() if r["id"] == model.id)
        return self.record(
            model_id=model.id, entry_id=model.entry_id, path=model.path, sha256=model.sha256,
            source=model.source, display_name=model.display_name, owned=model.owned,
            mmproj_path=model.mmproj_path, mmproj_sha256=rec.get("mmproj_sha256"),
            mmproj_owned=rec.get("mmproj_owned"),
        )

    def import_file(self, path: Path) -> InstalledModel:
        """Register a GGUF the user already has, in place. Matched to the catalog when it is one of ours."""
        path = Path(path).expanduser().resolve()
        if not path.is_file():
            raise StoreError(f"{path} does not exist or is not a file")
        header = _header(path)
        arch = str(header.get("general.architecture", "?"))
        if arch == "clip":
            raise StoreError(f"{path.name} is a vision projector (mmproj), not a model: import the main GGUF")
        entry = self._match_catalog(path)
        size = path.stat().st_size
        if entry is not None and entry.file is not None and entry.file.sha256:
            sha = sha256_file(path)
            if sha != entry.file.sha256:
                entry = None  # same name and size but different bytes: treat it as the user's own file
        else:
            sha = None
        name = str(header.get("general.name") or path.stem)
        have = self.find_for_entry(entry.id) if entry is not None else None
        if entry is not None and have is not None and have.path != path and have.status == "ok":
            raise StoreError(f"{entry.label} is already installed at {have.path}")
        same_file = next((m.id for m in self.list() if m.path == path), None)
        model_id = entry.id if entry is not None else same_file or self._free_id("custom-" + _slug(path.stem))
        return self.record(
            model_id=model_id,
            entry_id=entry.id if entry is not None else None,
            path=path,
            sha256=sha,
            source=ModelSource.IMPORT,
            display_name=entry.label if entry is not None else f"{name} ({arch}, {human_bytes(size)})",
            owned=False,
        )

    def _match_catalog(self, path: Path) -> CatalogEntry | None:
        size = path.stat().st_size
        for entry in self.catalog.runnable:
            if entry.file is not None and entry.file.filename == path.name and entry.file.size_bytes == size:
                return entry
        return None

    def _free_id(self, base: str) -> str:
        taken = {r["id"] for r in self._read()}
        candidate, n = base, 2
        while candidate in taken:
            candidate, n = f"{base}-{n}", n + 1
        return candidate


if sys.platform == "win32":
    import msvcrt

    def _lock_file(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)  # itself retries for ~10 s before raising
                return
            except OSError:
                continue

    def _unlock_file(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _lock_file(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock_file(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _header(path: Path) -> dict[str, Any]:
    """A GGUF's key/value metadata (the shared fast reader: no weights read, truncation detected)."""
    try:
        return read_header(path).metadata
    except GGUFHeaderError as exc:
        raise StoreError(str(exc)) from exc


def _delete_owned(path: Path) -> None:
    """Delete a downloaded file; in the HF cache layout also the blob a snapshot link points to."""
    if path.is_symlink():
        blob = path.resolve()
        path.unlink(missing_ok=True)
        blob.unlink(missing_ok=True)
    else:
        path.unlink(missing_ok=True)
