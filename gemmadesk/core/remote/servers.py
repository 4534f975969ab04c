"""The user's list of OpenAI-compatible servers, saved in ``<config dir>/servers.json``.

The file holds API keys, so it is created with mode 0600 (owner only) and written atomically (a temp
file with mode 0600, fsync, ``os.replace``); a wider mode found on load is narrowed again. It is
versioned: a file from a newer GemmaDesk is refused (never overwritten), an older one is migrated. A
corrupt file is moved aside (``servers.json.corrupt-N``, never deleted) and the list starts empty;
entries that fail the checks are skipped and reported in :attr:`ServerStore.problems`.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from gemmadesk.core.paths import app_paths, atomic_write_text
from gemmadesk.core.remote.backend import normalize_base_url
from gemmadesk.core.remote.errors import RemoteConfigError, RemoteError, server_text

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MAX_SERVERS = 100
MAX_FILE_BYTES = 1 * 2**20
MAX_NAME = 100
MAX_KEY = 4096


@dataclass(frozen=True)
class ServerEntry:
    id: str
    name: str
    base_url: str
    api_key: str | None = None

    def __repr__(self) -> str:  # never print a key into a log
        key = "set" if self.api_key else "none"
        return f"ServerEntry(id={self.id!r}, name={self.name!r}, base_url={self.base_url!r}, key={key})"


def _checked(raw: Any) -> ServerEntry:
    if not isinstance(raw, dict):
        raise RemoteConfigError("not an object")
    name, key, sid = raw.get("name"), raw.get("api_key"), raw.get("id")
    if not isinstance(sid, str) or not 0 < len(sid) <= 64:
        raise RemoteConfigError("bad id")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_NAME:
        raise RemoteConfigError("bad name")
    if key is not None and (not isinstance(key, str) or len(key) > MAX_KEY or "\n" in key or "\r" in key):
        raise RemoteConfigError("bad key")
    base = raw.get("base_url")
    if not isinstance(base, str):
        raise RemoteConfigError("bad address")
    return ServerEntry(sid, name, normalize_base_url(base), key or None)


class ServerStore:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or (app_paths().config_dir / "servers.json")
        self.problems: list[str] = []
        self._servers: list[ServerEntry] = []
        self._read_only = False
        self._load()

    # ------------------------------------------------------------------ reading
    def _load(self) -> None:
        try:
            st = self.path.lstat()
        except FileNotFoundError:
            return
        if not stat.S_ISREG(st.st_mode):
            self._read_only = True
            self.problems.append(f"{self.path} is not a regular file; GemmaDesk leaves it alone.")
            return
        if st.st_mode & 0o077:
            os.chmod(self.path, 0o600)  # keys must not be readable by others
        try:
            if st.st_size > MAX_FILE_BYTES:
                raise ValueError("file too large")
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("servers"), list):
                raise ValueError("not a server list")
            version = data.get("version")
            if not isinstance(version, int) or isinstance(version, bool):
                raise ValueError("no version")
        except (OSError, ValueError, UnicodeDecodeError, RecursionError) as exc:
            aside = self._set_aside()
            self.problems.append(f"The server list was unreadable ({exc}); it was kept as {aside.name} and "
                                 "the list starts empty.")  # fmt: skip
            return
        if version > SCHEMA_VERSION:
            self._read_only = True
            self.problems.append(f"The server list was written by a newer GemmaDesk (version {version}); update "
                                 "GemmaDesk to change it. It is used read-only.")  # fmt: skip
        for i, raw in enumerate(data["servers"][:MAX_SERVERS]):
            try:
                self._servers.append(_checked(raw))
            except RemoteError as exc:
                self.problems.append(f"Server entry {i + 1} was skipped: {server_text(exc, 120)}.")

    def _set_aside(self) -> Path:
        n = 1
        while (aside := self.path.with_name(f"{self.path.name}.corrupt-{n}")).exists():
            n += 1
        os.replace(self.path, aside)
        return aside

    # ------------------------------------------------------------------ API
    def list(self) -> list[ServerEntry]:
        return list(self._servers)

    def get(self, server_id: str) -> ServerEntry:
        for entry in self._servers:
            if entry.id == server_id:
                return entry
        raise KeyError(server_id)

    def add(self, name: str, base_url: str, api_key: str | None = None) -> ServerEntry:
        if len(self._servers) >= MAX_SERVERS:
            raise RemoteConfigError(f"GemmaDesk keeps at most {MAX_SERVERS} servers; remove one first.")
        entry = _checked({"id": uuid.uuid4().hex[:12], "name": name.strip()[:MAX_NAME] or base_url,
                          "base_url": base_url, "api_key": (api_key or "").strip() or None})  # fmt: skip
        self._servers.append(entry)
        self._save()
        return entry

    def update(self, server_id: str, **changes: Any) -> ServerEntry:
        old = self.get(server_id)
        entry = _checked(asdict(replace(old, **changes)))
        self._servers = [entry if e.id == server_id else e for e in self._servers]
        self._save()
        return entry

    def remove(self, server_id: str) -> None:
        self.get(server_id)
        self._servers = [e for e in self._servers if e.id != server_id]
        self._save()

    def _save(self) -> None:
        if self._read_only:
            raise RemoteConfigError(f"The server list {self.path} is read-only here ({self.problems[0]})")
        text = json.dumps({"version": SCHEMA_VERSION, "servers": [asdict(e) for e in self._servers]}, indent=2)
        atomic_write_text(self.path, text)  # 0600: readable only by the user (the API keys)
