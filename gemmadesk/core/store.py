"""The model store: which GGUF files GemmaDesk knows as installed, where they are, and which it wrote.

The list is a JSON manifest (``<data dir>/models.json``, a :class:`~gemmadesk.core.versioned_file.VersionedFile`:
atomic writes, a ``filelock`` around read-modify-write, newer versions refused, older ones migrated, a
corrupt file kept aside) plus the files themselves. A record is only ever added after the file verified
(downloads) or passed :func:`~gemmadesk.core.model_check.check_model_file` (imports), so nothing
half-written or unloadable is listed. Files are not copied: downloads land in the store folder (or the
user's Hugging Face cache when ``Settings.use_hf_cache`` is on); imports and files found in the Hugging
Face cache stay where they are and are only referenced.

Ownership: GemmaDesk deletes only what it wrote itself. When a download is installed, a *receipt*
(``<data dir>/receipts/*.json``) records each file written (path, device, inode, size, mtime, sha256) and
each symlink made, *before* the file is moved into place. :meth:`ModelStore.remove` deletes a file only
while it still is that very file (same inode, size and mtime, not a symlink), unlinks only the symlinks
it made, and otherwise just forgets the model, saying the file was kept. Nothing in ``models.json`` can
make GemmaDesk delete a file, and a rebuilt list never adopts a file as owned without its receipt.

Receipts also make an install survive a failed list write (a disk that fills after the last byte): on
the next listing the store finds the receipt of a verified file that the list lacks and adopts it.

Each listing re-checks the files: ``missing`` when the model file vanished, ``changed`` when its size or
mtime differ from what was recorded (``verify()`` re-hashes it and accepts it again if the sha256 still
matches). A vanished vision projector only drops ``mmproj_path``: the model still works for text.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gemmadesk.core.catalog import Catalog, CatalogEntry, load_catalog
from gemmadesk.core.model_check import ModelFileError, check_model_file
from gemmadesk.core.paths import AppPaths, app_paths, atomic_write_text, hf_cache_dir
from gemmadesk.core.safe_paths import UnsafePathError, check_filename, check_repo_id, inside
from gemmadesk.core.settings import Settings, SettingsStore
from gemmadesk.core.types import ModelSource
from gemmadesk.core.units import human_bytes
from gemmadesk.core.versioned_file import VersionedFile

log = logging.getLogger(__name__)

MANIFEST_VERSION = 2  # 2: ownership moved from the "owned" flag to receipts
HASH_BLOCK = 8 * 1024 * 1024
SOURCES = ("download", "import", "hf-cache")
RECEIPT_VERSION = 1
MAX_RECORDS = 10_000
MAX_RECEIPTS = 10_000
MAX_RECEIPT_BYTES = 64 * 1024
RECEIPTS_CACHE_S = 2.0  # also bounds staleness on file systems with coarse folder mtimes
MAX_SCAN_ENTRIES = 20_000  # a rebuild looks at no more than this many folder entries
MAX_SCAN_DEPTH = 3  # models/<org--repo>/<file> (and one folder more for files in repo sub-folders)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


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
    owned: bool = True  # GemmaDesk wrote this very file (its receipt matches): only then may remove() delete it


@dataclass(frozen=True)
class Removal:
    """What :meth:`ModelStore.remove` did: files it deleted, and files it left in place (not its own)."""

    model_id: str
    deleted: tuple[Path, ...]
    kept: tuple[Path, ...]


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
    except (OSError, ValueError):
        return None
    return st.st_size, st.st_mtime_ns


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-")[:80] or "model"


# ----- receipts: what GemmaDesk wrote -----------------------------------------------------------------
@dataclass(frozen=True)
class WrittenFile:
    """A regular file GemmaDesk wrote, identified by device, inode, size and mtime."""

    path: str
    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, final_path: Path, st: os.stat_result) -> WrittenFile:
        """``st``: the stat of the file now (a rename into ``final_path`` keeps inode, size and mtime)."""
        return cls(str(final_path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def same_inode(self) -> bool:
        """A regular file (not a symlink) with the device and inode GemmaDesk's file had. Not proof on its
        own: a file system reuses the inode number of a deleted file for the next new one."""
        try:
            st = os.lstat(self.path)
        except (OSError, ValueError):
            return False
        return stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) == (self.dev, self.ino)

    def is_still_ours(self) -> bool:
        """The very file GemmaDesk wrote and verified: same device, inode, size and mtime (to the
        nanosecond), a regular file, not a symlink. Only such a file is ever deleted."""
        try:
            st = os.lstat(self.path)
        except (OSError, ValueError):
            return False
        return stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == (
            self.dev, self.ino, self.size, self.mtime_ns)


@dataclass(frozen=True)
class WrittenLink:
    """A symlink GemmaDesk made (the Hugging Face cache's snapshot link to a blob)."""

    path: str
    target: str

    def is_still_ours(self) -> bool:
        try:
            return os.path.islink(self.path) and os.readlink(self.path) == self.target
        except (OSError, ValueError):
            return False


@dataclass(frozen=True)
class Receipt:
    model_path: str  # the path the list records (the file, or the snapshot link in the HF cache)
    role: str  # "main" | "mmproj"
    entry_id: str | None
    sha256: str
    source: str  # "download" | "hf-cache"
    display_name: str
    files: tuple[WrittenFile, ...]
    links: tuple[WrittenLink, ...] = ()
    written_at: float = field(default_factory=time.time)

    def is_intact(self) -> bool:
        """Every file and link it lists is still exactly what GemmaDesk made: what remove() may delete and
        what a rebuilt list may adopt as a verified download."""
        return all(f.is_still_ours() for f in self.files) and all(link.is_still_ours() for link in self.links)

    def to_json(self) -> str:
        return json.dumps({
            "kind": "gemmadesk-receipt", "version": RECEIPT_VERSION, "model_path": self.model_path,
            "role": self.role, "entry_id": self.entry_id, "sha256": self.sha256, "source": self.source,
            "display_name": self.display_name, "written_at": self.written_at,
            "files": [vars(f) for f in self.files], "links": [vars(link) for link in self.links],
        }, indent=1)

    @classmethod
    def parse(cls, data: Any) -> Receipt | None:
        """A receipt from JSON, or None when anything in it is not what GemmaDesk writes."""
        if not isinstance(data, dict) or data.get("kind") != "gemmadesk-receipt" or data.get("version") != 1:
            return None
        try:
            files = tuple(WrittenFile(**{k: f[k] for k in ("path", "dev", "ino", "size", "mtime_ns")})
                          for f in data["files"])
            links = tuple(WrittenLink(str(x["path"]), str(x["target"])) for x in data.get("links", []))
            receipt = cls(
                model_path=data["model_path"], role=data["role"], entry_id=data.get("entry_id"),
                sha256=data["sha256"], source=data["source"], display_name=data.get("display_name") or "",
                files=files, links=links, written_at=float(data.get("written_at", 0.0)),
            )
        except (KeyError, TypeError, ValueError):
            return None
        ints_ok = all(isinstance(v, int) and not isinstance(v, bool)
                      for f in files for v in (f.dev, f.ino, f.size, f.mtime_ns))
        strs_ok = all(isinstance(v, str) and "\x00" not in v and os.path.isabs(v)
                      for v in [receipt.model_path, *(f.path for f in files), *(x.path for x in links)])
        if not (ints_ok and strs_ok and files and receipt.role in ("main", "mmproj")
                and receipt.source in SOURCES and isinstance(receipt.sha256, str) and _SHA256.match(receipt.sha256)
                and (receipt.entry_id is None or isinstance(receipt.entry_id, str))
                and isinstance(receipt.display_name, str)):
            return None
        return receipt


# ----- manifest records -------------------------------------------------------------------------------
def _clean_record(rec: Any) -> dict[str, Any] | None:
    """A manifest record with the types GemmaDesk writes, or None (``"path": 7``, ``"size_bytes": "abc"``)."""
    if not isinstance(rec, dict):
        return None

    def text(key: str, *, required: bool = False, path: bool = False) -> bool:
        value = rec.get(key)
        if value is None:
            return not required
        return (isinstance(value, str) and bool(value) and "\x00" not in value and len(value) <= 4096
                and (not path or os.path.isabs(value)))

    def number(key: str) -> bool:
        value = rec.get(key)
        return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)

    def digest(key: str) -> bool:
        value = rec.get(key)
        return value is None or (isinstance(value, str) and bool(_SHA256.match(value)))

    ok = (text("id", required=True) and text("path", required=True, path=True) and text("entry_id")
          and text("display_name") and text("mmproj_path", path=True) and text("source")
          and number("size_bytes") and number("mtime_ns") and number("mmproj_size") and number("mmproj_mtime_ns")
          and digest("sha256") and digest("mmproj_sha256"))
    if not ok:
        return None
    out = dict(rec)
    if out.get("source") not in SOURCES:
        out["source"] = "import"
    return out


def _migrate_manifest_1_to_2(data: dict[str, Any]) -> dict[str, Any]:
    """v1 trusted an ``owned`` flag; v2 trusts receipts. Records v1 owned are marked for the store to write
    receipts for, where the file is still exactly as v1 recorded it (see ``ModelStore._receipts_for_legacy``)."""
    models = data.get("models", [])
    if isinstance(models, list):
        for rec in models:
            ours = isinstance(rec, dict) and rec.get("owned", True) is True
            if ours and rec.get("source") in ("download", "hf-cache"):
                rec["legacy_owned"] = True
    return data


class ModelStore:
    """Installed models, backed by ``models.json`` and the receipts. Thread-safe within a process."""

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
        self.problems: list[str] = []  # things the store recovered from, for the UI to show once
        settings = settings or SettingsStore(self.paths.settings_file).load()
        self.use_hf_cache = settings.use_hf_cache if use_hf_cache is None else use_hf_cache
        custom = models_dir
        if custom is None and settings.models_dir:
            chosen = Path(settings.models_dir).expanduser()
            if chosen.is_absolute():
                custom = chosen
            else:
                self.problems.append(f"The models folder in the settings ({settings.models_dir!r}) is not a full "
                                     f"path, so the default {self.paths.models_dir} is used: choose the folder again.")
        self.models_dir = custom or self.paths.models_dir
        self.catalog = catalog or load_catalog()
        self.manifest_path = self.paths.data_dir / "models.json"
        self.receipts_dir = self.paths.data_dir / "receipts"
        self._file = VersionedFile(self.manifest_path, what="the model list", version_key="version",
                                   current=MANIFEST_VERSION, migrations={1: _migrate_manifest_1_to_2})
        self._lock = threading.RLock()
        self.refused: str | None = None  # set when models.json is from a newer GemmaDesk: nothing is changed
        self._seen_problems: set[str] = set()
        self._lost = False
        self._receipts_cache: tuple[tuple[int, int], float, dict[str, Receipt]] | None = None

    def _problem(self, message: str) -> None:
        if message not in self._seen_problems:
            self._seen_problems.add(message)
            self.problems.append(message)
            log.warning(message)

    # ----- where files go ------------------------------------------------------------------------
    def target_path(self, repo_id: str, filename: str) -> Path:
        """Where a verified download of ``repo_id/filename`` is placed in GemmaDesk's own store: always
        inside the models folder (raises :class:`StoreError` for a name that would leave it)."""
        try:
            return inside(self.models_dir, check_repo_id(repo_id).replace("/", "--"), check_filename(filename))
        except UnsafePathError as exc:
            raise StoreError(str(exc)) from exc

    def partial_dir(self) -> Path:
        """Resumable partial files; on the same file system as the store so the final move is atomic."""
        if self.models_dir == self.paths.models_dir:
            return self.paths.downloads_dir
        return self.models_dir / ".downloads"

    def hf_cache(self) -> Path:
        return hf_cache_dir()

    # ----- manifest ----------------------------------------------------------------------------
    def _load_records(self) -> builtins.list[dict[str, Any]]:
        """The valid records of models.json (call with the lock held). Recovers from what it can."""
        loaded = self._file.load()
        self.refused = loaded.problem if loaded.status == "newer" else None
        if loaded.status == "corrupt":
            self._lost = True  # the next listing rebuilds what it can (receipts, then the models folder)
        if loaded.problem:
            self._problem(loaded.problem)
        if loaded.data is None:
            return []
        raw = loaded.data.get("models", [])
        raw = raw if isinstance(raw, list) else [raw]
        records: builtins.list[dict[str, Any]] = []
        seen: set[str] = set()
        bad = 0
        for item in raw[:MAX_RECORDS]:
            rec = _clean_record(item)
            if rec is None or rec["id"] in seen:
                bad += 1
                continue
            seen.add(rec["id"])
            records.append(rec)
        bad += max(0, len(raw) - MAX_RECORDS)
        if bad:
            self._set_aside_bad_records(records, bad)
        if loaded.status == "migrated" and loaded.version == 1:
            self._receipts_for_legacy(records)
            try:
                with self._file.lock():
                    self._save(records)
            except OSError as exc:
                log.warning("could not save the upgraded model list: %s", exc)
        return records

    def _set_aside_bad_records(self, records: builtins.list[dict[str, Any]], bad: int) -> None:
        """Keep a copy of the list as it was, then write it without the unreadable entries."""
        try:
            aside = self.manifest_path.with_name("models.json.invalid-1")
            n = 1
            while aside.exists():
                n += 1
                aside = self.manifest_path.with_name(f"models.json.invalid-{n}")
            shutil.copyfile(self.manifest_path, aside)
            with self._file.lock():
                self._save(records)
        except OSError as exc:
            self._problem(f"{bad} entries of the model list {self.manifest_path} are unreadable and are ignored; "
                          f"the file could not be cleaned up ({exc.strerror or exc}).")
            return
        self._problem(f"{bad} entries of the model list were unreadable and are ignored; the list as it was "
                      f"is kept as {aside}.")

    def _save(self, records: builtins.list[dict[str, Any]]) -> None:
        self._file.save({"models": records})

    def _updating(self) -> Any:
        if self.refused:
            raise StoreError(self.refused)
        return self._file.lock()

    def _read(self) -> builtins.list[dict[str, Any]]:
        with self._lock:
            return self._load_records()

    # ----- receipts ----------------------------------------------------------------------------
    def _receipt_path(self, model_path: Path | str) -> Path:
        key = hashlib.sha256(str(model_path).encode("utf-8", "surrogateescape")).hexdigest()[:40]
        return self.receipts_dir / f"{key}.json"

    def _receipts(self) -> dict[str, Receipt]:
        """Every readable receipt, by the model path it is for. Cached briefly while the folder is unchanged
        (each receipt is written by a rename into the folder, which changes the folder's mtime)."""
        try:
            st = self.receipts_dir.stat()
        except OSError:
            return {}
        key = (st.st_ino, st.st_mtime_ns)
        cached = self._receipts_cache
        if cached is not None and cached[0] == key and time.monotonic() - cached[1] < RECEIPTS_CACHE_S:
            return dict(cached[2])
        out = self._read_receipts()
        self._receipts_cache = (key, time.monotonic(), out)
        return dict(out)

    def _read_receipts(self) -> dict[str, Receipt]:
        out: dict[str, Receipt] = {}
        try:
            entries = sorted(self.receipts_dir.iterdir())
        except OSError:
            return out
        for path in entries[:MAX_RECEIPTS]:
            try:
                if path.is_symlink() or not path.is_file() or path.stat().st_size > MAX_RECEIPT_BYTES:
                    continue
                receipt = Receipt.parse(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, RecursionError):
                continue
            if receipt is not None and path.name == self._receipt_path(receipt.model_path).name:
                out[receipt.model_path] = receipt
        return out

    def receipt_for(self, model_path: Path) -> Receipt | None:
        """The receipt of the download at ``model_path``, if GemmaDesk wrote one (whether still intact or not)."""
        path = self._receipt_path(model_path)
        try:
            if path.is_symlink() or path.stat().st_size > MAX_RECEIPT_BYTES:
                return None
            receipt = Receipt.parse(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, RecursionError):
            return None
        return receipt if receipt is not None and receipt.model_path == str(model_path) else None

    def owns(self, path: Path) -> bool:
        """GemmaDesk wrote the file (or link) at ``path`` and it is still that file: it may replace or delete it."""
        receipt = self.receipt_for(path)
        return receipt is not None and receipt.is_intact()

    def write_receipt(self, receipt: Receipt) -> None:
        """Record what a download wrote; called *before* the file is moved into place (see the module doc)."""
        atomic_write_text(self._receipt_path(receipt.model_path), receipt.to_json())

    def _receipts_for_legacy(self, records: builtins.list[dict[str, Any]]) -> None:
        """Upgrading a v1 list: a file v1 marked as its own download gets a receipt only if it is still a
        regular file exactly as v1 recorded it (same size and mtime) inside the models folder or the HF cache."""
        roots = [self.models_dir.resolve(), self.hf_cache().resolve()]
        for rec in records:
            if not rec.pop("legacy_owned", False):
                continue
            for key, size_key, mtime_key, sha_key, role in (
                ("path", "size_bytes", "mtime_ns", "sha256", "main"),
                ("mmproj_path", "mmproj_size", "mmproj_mtime_ns", "mmproj_sha256", "mmproj"),
            ):
                if not rec.get(key) or not rec.get(sha_key):
                    continue
                path = Path(rec[key])
                files, links = [], []
                real = path
                if path.is_symlink():  # an HF cache snapshot link to its blob
                    try:
                        target = os.readlink(path)
                        real = (path.parent / target).resolve()
                    except OSError:
                        continue
                    if real.parent.name != "blobs" or not path.is_relative_to(real.parent.parent):
                        continue
                    links.append(WrittenLink(str(path), target))
                try:
                    st = real.lstat()
                except OSError:
                    continue
                in_roots = any(real.resolve().is_relative_to(root) for root in roots)
                if not in_roots or not stat.S_ISREG(st.st_mode) or \
                        (st.st_size, st.st_mtime_ns) != (rec.get(size_key), rec.get(mtime_key)):
                    continue
                files.append(WrittenFile.of(real, st))
                try:
                    self.write_receipt(Receipt(str(path), role, rec.get("entry_id"), rec[sha_key],
                                               rec.get("source", "download"), rec.get("display_name") or "",
                                               tuple(files), tuple(links)))
                except OSError as exc:
                    log.warning("could not write a receipt for %s: %s", path, exc)

    def _adopt_orphans(self, records: builtins.list[dict[str, Any]], receipts: dict[str, Receipt]) -> bool:
        """Add downloads whose receipt is intact but which the list lacks (the list write failed after the
        file was installed, or the list was lost). Returns True when records changed."""
        known = {r["path"] for r in records}
        changed = False
        for receipt in sorted(receipts.values(), key=lambda r: (r.role != "main", r.written_at)):
            if receipt.model_path in known or not receipt.is_intact():
                continue
            st = _stat(Path(receipt.model_path))
            if st is None:
                continue
            if receipt.role == "main":
                entry = self._catalog_entry(receipt.entry_id)
                model_id = receipt.entry_id or self._free_id("custom-" + _slug(Path(receipt.model_path).stem), records)
                if any(r["id"] == model_id for r in records):
                    continue
                records.append({
                    "id": model_id, "entry_id": receipt.entry_id, "path": receipt.model_path, "size_bytes": st[0],
                    "mtime_ns": st[1], "sha256": receipt.sha256, "source": receipt.source,
                    "display_name": receipt.display_name or (entry.label if entry else Path(receipt.model_path).name),
                    "owned": True,
                })
                self._problem(f"Found the verified download {receipt.model_path} that the model list had lost; "
                              "it is listed again.")
            else:
                owner = next((r for r in records if receipt.entry_id and r.get("entry_id") == receipt.entry_id
                              and not r.get("mmproj_path")), None)
                if owner is None:
                    continue
                owner.update(mmproj_path=receipt.model_path, mmproj_size=st[0], mmproj_mtime_ns=st[1],
                             mmproj_sha256=receipt.sha256, mmproj_owned=True)
            known.add(receipt.model_path)
            changed = True
        return changed

    def _catalog_entry(self, entry_id: str | None) -> CatalogEntry | None:
        return next((e for e in self.catalog.entries if e.id == entry_id), None) if entry_id else None

    def _to_model(self, rec: dict[str, Any], receipts: dict[str, Receipt]) -> InstalledModel:
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
        receipt = receipts.get(str(path))
        return InstalledModel(
            id=rec["id"],
            entry_id=rec.get("entry_id"),
            path=path,
            size_bytes=int(rec.get("size_bytes") or 0),
            sha256=rec.get("sha256"),
            mmproj_path=mmproj,
            source=ModelSource.parse(rec["source"]),
            status=status,
            display_name=rec.get("display_name") or rec["id"],
            owned=receipt is not None and receipt.is_intact(),
        )

    # ----- public API --------------------------------------------------------------------------
    def list(self) -> builtins.list[InstalledModel]:
        """Installed models. With a list from a newer GemmaDesk this is empty and ``refused`` says why."""
        with self._lock:
            records = self._load_records()
            lost, self._lost = self._lost, False
            receipts = self._receipts()
            if self.refused is None and (self._adopt_orphans(records, receipts) | (lost and self._rescan(records))):
                try:
                    with self._file.lock():
                        self._save(records)
                except OSError as exc:
                    self._problem(f"The model list {self.manifest_path} could not be saved ({exc.strerror or exc}); "
                                  "your models are still listed: free some disk space.")
            return [self._to_model(r, receipts) for r in records]

    def rescan(self) -> builtins.list[InstalledModel]:
        """Adopt what the list does not know: downloads with an intact receipt (as GemmaDesk's own) and
        runnable GGUF models in the models folder (as the user's files: listed, never deleted)."""
        with self._lock, self._updating():
            records = self._load_records()
            before = {r["id"] for r in records}
            receipts = self._receipts()
            if self._adopt_orphans(records, receipts) | self._rescan(records):
                self._save(records)
            return [self._to_model(r, receipts) for r in records if r["id"] not in before]

    def _rescan(self, records: builtins.list[dict[str, Any]]) -> bool:
        """Add runnable GGUFs found in the models folder as not owned. Bounded: depth, entries, no symlinks."""
        known = {r["path"] for r in records} | {r["mmproj_path"] for r in records if r.get("mmproj_path")}
        changed = False
        for path in _scan_ggufs(self.models_dir):
            if str(path) in known:
                continue
            try:
                header = check_model_file(path)
            except ModelFileError:
                continue  # projectors, partial or foreign files: left alone
            entry = self._match_catalog(path)
            model_id = self._free_id(entry.id if entry is not None else "custom-" + _slug(path.stem), records)
            st = _stat(path)
            if st is None:
                continue
            name = entry.label if entry is not None else header.name
            records.append({"id": model_id, "entry_id": entry.id if entry else None, "path": str(path),
                            "size_bytes": st[0], "mtime_ns": st[1], "sha256": None, "source": "import",
                            "display_name": name[:200], "owned": False})
            known.add(str(path))
            changed = True
        return changed

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
        """Add or replace a record; the caller has verified the file(s). Sizes/mtimes are taken now.

        ``owned`` is kept in the list as information only: whether GemmaDesk may delete a file is decided
        by its receipt (:meth:`write_receipt`), never by the list."""
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
        with self._lock:
            self._load_records()
            with self._updating():
                records = [r for r in self._load_records() if r["id"] != model_id]
                records.append(rec)
                self._save(records)
            return self._to_model(rec, self._receipts())

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

    def remove(self, model_id: str) -> Removal:
        """Forget a model; delete its files only where GemmaDesk wrote them (intact receipt), never a file
        it did not create, never through a symlink. Returns what was deleted and what was kept."""
        with self._lock:
            self._load_records()
            with self._updating():
                records = self._load_records()
                victim = next((r for r in records if model_id in (r["id"], r.get("entry_id"))), None)
                if victim is None:
                    raise KeyError(f"no installed model {model_id!r}")
                rest = [r for r in records if r is not victim]
                still_used = {r["path"] for r in rest} | {r["mmproj_path"] for r in rest if r.get("mmproj_path")}
                receipts = self._receipts()
                deleted: builtins.list[Path] = []
                kept: builtins.list[Path] = []
                for key in ("path", "mmproj_path"):
                    if not victim.get(key) or victim[key] in still_used:
                        continue
                    path = Path(victim[key])
                    receipt = receipts.get(victim[key])
                    if receipt is not None and receipt.is_intact():
                        self._delete_written(receipt)
                        deleted.append(path)
                    elif os.path.lexists(path):
                        kept.append(path)
                self._save(rest)
        return Removal(model_id, tuple(deleted), tuple(kept))

    def _delete_written(self, receipt: Receipt) -> None:
        for link in receipt.links:
            if link.is_still_ours():
                os.unlink(link.path)  # the link itself, never what it points to
        for written in receipt.files:
            if written.is_still_ours():  # re-checked just before: same inode, size, mtime; not a symlink
                os.unlink(written.path)
        self._receipt_path(receipt.model_path).unlink(missing_ok=True)

    def verify(self, model_id: str) -> InstalledModel:
        """Re-hash a ``changed`` model; accept it again if the sha256 still matches, else say so."""
        model = self.get(model_id)
        if model.status == "missing":
            raise StoreError(f"{model.path} is missing; download or import it again")
        if model.sha256 and sha256_file(model.path) != model.sha256:
            raise StoreError(f"{model.path} no longer matches its sha256: it was modified or is damaged")
        with self._lock:
            rec = next(r for r in self._read() if r["id"] == model.id)
            self._refresh_receipt(model.path, model.sha256)
            if model.mmproj_path is not None:
                self._refresh_receipt(model.mmproj_path, rec.get("mmproj_sha256"))
        return self.record(
            model_id=model.id, entry_id=model.entry_id, path=model.path, sha256=model.sha256,
            source=model.source, display_name=model.display_name, owned=model.owned,
            mmproj_path=model.mmproj_path, mmproj_sha256=rec.get("mmproj_sha256"),
            mmproj_owned=rec.get("mmproj_owned"),
        )

    def _refresh_receipt(self, path: Path, sha256: str | None) -> None:
        """A file GemmaDesk wrote was only touched (same inode, bytes re-verified): update its mtime."""
        receipt = self._receipts().get(str(path))
        if receipt is None or sha256 != receipt.sha256 or not all(link.is_still_ours() for link in receipt.links):
            return
        files = []
        for written in receipt.files:
            try:
                st = os.lstat(written.path)
            except OSError:
                return
            if not written.same_inode():
                return  # another file now: not ours
            files.append(WrittenFile.of(Path(written.path), st))
        self.write_receipt(Receipt(receipt.model_path, receipt.role, receipt.entry_id, receipt.sha256,
                                   receipt.source, receipt.display_name, tuple(files), receipt.links))

    def import_file(self, path: Path) -> InstalledModel:
        """Register a GGUF the user already has, in place (never copied, never deleted). It must be a model
        llama.cpp can run (:func:`check_model_file`). Matched to the catalog when it is one of ours."""
        path = Path(path).expanduser().resolve()
        try:  # a missing file, a folder or a named pipe: the GGUF reader says which, without blocking
            header = check_model_file(path)
        except ModelFileError as exc:
            raise StoreError(str(exc)) from exc
        arch = header.architecture
        entry = self._match_catalog(path)
        size = path.stat().st_size
        if entry is not None and entry.file is not None and entry.file.sha256:
            sha = sha256_file(path)
            if sha != entry.file.sha256:
                entry = None  # same name and size but different bytes: treat it as the user's own file
        else:
            sha = None
        name = header.name[:200]
        have = self.find_for_entry(entry.id) if entry is not None else None
        if entry is not None and have is not None and have.path != path and have.status == "ok":
            raise StoreError(f"{entry.label} is already installed at {have.path}")
        with self._lock:
            records = self._read()
            same_file = next((r["id"] for r in records if r["path"] == str(path)), None)
            model_id = (entry.id if entry is not None
                        else same_file or self._free_id("custom-" + _slug(path.stem), records))
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

    @staticmethod
    def _free_id(base: str, records: Iterable[dict[str, Any]]) -> str:
        taken = {r["id"] for r in records}
        candidate, n = base, 2
        while candidate in taken:
            candidate, n = f"{base}-{n}", n + 1
        return candidate


def _scan_ggufs(root: Path) -> Sequence[Path]:
    """``*.gguf`` regular files below ``root``: symlinks (files or folders) are not followed, hidden folders
    (``.downloads``) skipped, depth and entry count bounded, so a hostile or huge folder costs little."""
    found: builtins.list[Path] = []
    budget = MAX_SCAN_ENTRIES
    stack: builtins.list[tuple[Path, int]] = [(root, 0)]
    while stack and budget > 0:
        folder, depth = stack.pop()
        try:
            with os.scandir(folder) as it:
                for item in it:
                    budget -= 1
                    if budget <= 0:
                        break
                    if item.is_symlink() or item.name.startswith("."):
                        continue
                    if item.is_dir(follow_symlinks=False):
                        if depth + 1 < MAX_SCAN_DEPTH:
                            stack.append((Path(item.path), depth + 1))
                    elif item.name.lower().endswith(".gguf") and item.is_file(follow_symlinks=False):
                        found.append(Path(item.path))
        except OSError:
            continue
    return sorted(found)
