"""One way to keep a versioned JSON file (``settings.json``, ``models.json``): read, check, migrate, write.

- A missing file is "missing" (the owner uses its defaults).
- A file that is not a JSON object, is larger than ``max_bytes``, or whose version is not a whole number
  >= the first version (``"abc"``, ``0``, ``true``) is "corrupt": it is moved aside as
  ``NAME.corrupt-N`` (never deleted) and the owner starts fresh, with one sentence saying where it went.
- A file written by a newer GemmaDesk is "newer": it is neither used nor ever overwritten (``save``
  refuses with :class:`NewerFileError`), and the sentence says to update GemmaDesk.
- An older file is migrated step by step in memory (``migrations[v]`` takes v to v+1); the first save
  after a migration first keeps the old file as ``NAME.vN.bak`` so a downgrade can go back to it.
- Writes are atomic (temp file, fsync, ``os.replace``) and ``lock()`` serialises read-modify-write across
  threads and processes with ``filelock`` (the OS file lock: released when a process is killed).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from filelock import FileLock

from gemmadesk.core.paths import atomic_write_text

log = logging.getLogger(__name__)

Status = Literal["missing", "ok", "migrated", "newer", "corrupt", "unreadable"]
Migration = Callable[[dict[str, Any]], dict[str, Any]]
DEFAULT_MAX_BYTES = 16 * 2**20
LOCK_TIMEOUT_S = 30.0


# Files this process moved aside, and the sentence that said so: every later reader of the same path in this
# run (the app reads settings.json in more than one place at start) still gets the notice, not silence.
_KEPT_ASIDE: dict[Path, tuple[str, Path]] = {}
_KEPT_ASIDE_LOCK = threading.Lock()


class NewerFileError(OSError):
    """The file on disk was written by a newer GemmaDesk; it is left as it is. ``str()`` says what to do."""


@dataclass(frozen=True)
class Loaded:
    status: Status
    data: dict[str, Any] | None  # at the current version; None unless status is "ok" or "migrated"
    problem: str | None = None  # one sentence for the user (corrupt, newer, unreadable)
    version: int | None = None  # the version found on disk
    kept_as: Path | None = None  # where a corrupt file was moved


class VersionedFile:
    """A JSON object file with an integer version under ``version_key``."""

    def __init__(
        self,
        path: Path,
        *,
        what: str,
        version_key: str,
        current: int,
        migrations: Mapping[int, Migration] | None = None,
        first_version: int = 1,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.path = Path(path)
        self.what = what  # "the settings file", "the model list": how the sentences name it
        self.version_key = version_key
        self.current = current
        self.migrations = dict(migrations or {})
        self.first_version = first_version
        self.max_bytes = max_bytes
        self._refused_version: int | None = None  # set once a newer file was seen: never overwrite it
        self._migrated_from: int | None = None
        self._thread_lock = threading.RLock()
        self._file_lock = FileLock(str(self.path.with_name(self.path.name + ".lock")), timeout=LOCK_TIMEOUT_S)

    # ----- reading -------------------------------------------------------------------------------
    def load(self) -> Loaded:
        try:
            size = self.path.stat().st_size
            if size > self.max_bytes:
                return self._corrupt(f"it is {size:,} bytes, far larger than such a file can be", None)
            raw = self.path.read_bytes()
        except FileNotFoundError:
            with _KEPT_ASIDE_LOCK:
                earlier = _KEPT_ASIDE.get(self.path.absolute())
            if earlier is not None:
                return Loaded("missing", None, earlier[0], None, earlier[1])
            return Loaded("missing", None)
        except OSError as exc:
            return Loaded("unreadable", None, f"Could not read {self.what} {self.path} ({exc.strerror or exc}); "
                                              "using defaults for now: check the file's permissions.")
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            return self._corrupt(f"it is not valid JSON ({_short(exc)})", None)
        if not isinstance(data, dict):
            return self._corrupt("it is not a JSON object", None)
        version = data.get(self.version_key, self.first_version)
        if isinstance(version, bool) or not isinstance(version, int) or version < self.first_version:
            return self._corrupt(f"its version {_short(version)} is not a version GemmaDesk ever wrote", None)
        if version > self.current:
            self._refused_version = version
            return Loaded("newer", None, (
                f"{self.what.capitalize()} {self.path} was written by a newer GemmaDesk (version {version}; this "
                f"one reads up to {self.current}), so it was left untouched: update GemmaDesk to use it."
            ), version)
        self._refused_version = None
        if version == self.current:
            return Loaded("ok", data, None, version)
        try:
            for step in range(version, self.current):
                data = self.migrations[step](dict(data))
                data[self.version_key] = step + 1
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return self._corrupt(f"it could not be upgraded from version {version} ({_short(exc)})", version)
        self._migrated_from = version
        return Loaded("migrated", data, None, version)

    def _corrupt(self, why: str, version: int | None) -> Loaded:
        try:
            aside = self.keep_aside("corrupt")
        except OSError as exc:
            return Loaded("corrupt", None, (
                f"{self.what.capitalize()} {self.path} is damaged ({why}) and could not be moved aside "
                f"({exc.strerror or exc}); using defaults: move or delete it yourself."
            ), version)
        log.warning("%s %s was damaged (%s); kept as %s", self.what, self.path, why, aside)
        problem = f"{self.what.capitalize()} was damaged ({why}); it was kept as {aside} and a fresh one started."
        with _KEPT_ASIDE_LOCK:
            _KEPT_ASIDE[self.path.absolute()] = (problem, aside)
        return Loaded("corrupt", None, problem, version, aside)

    def keep_aside(self, label: str) -> Path:
        """Move the file to ``NAME.LABEL-N`` (the first free N); returns the new path."""
        n = 1
        while True:
            aside = self.path.with_name(f"{self.path.name}.{label}-{n}")
            if not aside.exists() and not aside.is_symlink():
                self.path.replace(aside)
                return aside
            n += 1

    # ----- writing -------------------------------------------------------------------------------
    def save(self, data: Mapping[str, Any]) -> None:
        """Write ``data`` at the current version, atomically. Raises :class:`NewerFileError` rather than
        overwrite a newer file, and OSError when the disk refuses."""
        with self._thread_lock:
            if self._refused_version is not None or self._on_disk_is_newer():
                raise NewerFileError(
                    f"{self.what.capitalize()} {self.path} was written by a newer GemmaDesk, so GemmaDesk did not "
                    "overwrite it: update GemmaDesk to save changes."
                )
            if self._migrated_from is not None and self.path.is_file():
                backup = self.path.with_name(f"{self.path.name}.v{self._migrated_from}.bak")
                if not backup.exists():
                    shutil.copy2(self.path, backup)
                self._migrated_from = None
            payload = {**data, self.version_key: self.current}
            atomic_write_text(self.path, json.dumps(payload, indent=2, sort_keys=True))
            with _KEPT_ASIDE_LOCK:
                _KEPT_ASIDE.pop(self.path.absolute(), None)  # a fresh file is there now

    def _on_disk_is_newer(self) -> bool:
        """Another process may have written a newer file since we read ours."""
        try:
            if self.path.stat().st_size > self.max_bytes:
                return False
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return False
        version = data.get(self.version_key) if isinstance(data, dict) else None
        return isinstance(version, int) and not isinstance(version, bool) and version > self.current

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the file's lock (threads and processes) around a read-modify-write."""
        with self._thread_lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._file_lock:  # one reentrant lock object: nesting in one thread does not deadlock
                yield


def _short(value: object) -> str:
    text = str(value) if isinstance(value, BaseException) else repr(value)
    return text if len(text) <= 80 else text[:79] + "…"
