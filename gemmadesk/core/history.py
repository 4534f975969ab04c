"""Chat history in SQLite: conversations and messages, saved as they happen.

Storage: one SQLite file (``app_paths().history_db``) in WAL mode with ``synchronous=NORMAL``: every
committed message survives the process being killed. The schema version is SQLite's ``user_version``;
:data:`MIGRATIONS` is an ordered list of functions, migration *i* takes the database from version *i* to
*i+1*, each in its own transaction. Never edit a released migration: append a new one.

Saving a reply while it streams (what survives a stop or a crash)::

    msg_id = store.begin_reply(conv_id, model="gemma-4-E2B", settings={...})   # row with status "partial"
    saver = PartialSaver(store, msg_id, interval_s=1.0)
    saver.add("answer", text) ...          # UPDATE of that one row at most once per interval
    store.finish_reply(msg_id, answer, thoughts, stats={...}, status="complete" | "partial")

Damage and read-only files (the history never loses a turn, and never deletes a file):

- A damaged database (``file is not a database``, ``database disk image is malformed``, found when opening
  or on any later call) is moved aside as ``chats.sqlite3.damaged-<time>`` (with its ``-wal``), a fresh one
  is started, and every row that can still be read is copied into it (same ids, so open chats go on).
  :attr:`HistoryStore.notices` (and the log) say where the old file is.
- When the database cannot be written (read-only file or folder, full disk, I/O error), new chats,
  messages and reply updates are kept in a journal beside it (``chats.sqlite3.pending.json``, rewritten
  atomically) and shown by every read as if saved. They are written into the database, and the journal
  removed, as soon as it can be written again (checked at most every :data:`RETRY_S`, and at the next
  start). New rows kept only in the journal have negative ids until then.

Editing rules (decided here, the UI follows them):
- :meth:`HistoryStore.edit_user_message` changes a user message and deletes every later message of the
  conversation (the later replies answered the old text); the caller then generates a new reply.
- :meth:`HistoryStore.remove_last_reply` (for "regenerate") deletes the last assistant message.
- Thoughts are stored with the reply for display but :meth:`HistoryStore.chat_messages` (what is sent to
  the model) never includes them.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from gemmadesk.core.attachments import AttachmentStore
from gemmadesk.core.media import AUDIO_TYPES, EXTENSIONS, IMAGE_TYPES
from gemmadesk.core.paths import app_paths, atomic_write_text
from gemmadesk.core.search_text import MAX_QUERY_CHARS, fts_query, like_pattern, match_spans, search_terms, snippet
from gemmadesk.core.types import Attachment, AttachmentKind, ChatMessage, Role

log = logging.getLogger(__name__)

Status = Literal["complete", "partial"]
DEFAULT_TITLE = "New chat"
RETRY_S = 30.0  # how often a read-only or full database is tried again while turns wait in the journal
MAX_JOURNAL_BYTES = 256 * 2**20
SALVAGE_PROBES = 200_000  # row lookups spent stepping over damaged pages when rescuing a damaged database
SALVAGE_GAP = 5_000  # ... and ids in a row that read nothing before giving up (when the largest id is unknown)

# SQLite's primary result codes (the low byte of sqlite3.Error.sqlite_errorcode).
_SHA = re.compile(r"[0-9a-f]{64}")
_MIMES = set(IMAGE_TYPES.values()) | set(AUDIO_TYPES.values())
_DAMAGED = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_UNWRITABLE = {3, 5, 6, 8, 10, 13, 14}  # PERM, BUSY, LOCKED, READONLY, IOERR, FULL, CANTOPEN
_CONVERSATION_COLUMNS = ("title", "created_at", "updated_at", "system_prompt", "model")
_MESSAGE_COLUMNS = ("conversation_id", "role", "content", "thoughts", "model", "settings_json", "stats_json",
                    "status", "created_at", "updated_at", "attachments_json")
MAX_ATTACHMENTS_JSON = 64 * 1024  # a message's attachment list as stored (a few hundred bytes per file)
SWEEP_MIN_AGE_S = 3600.0  # the start-up sweep leaves younger unreferenced files (another process may use them)


def _v1(db: sqlite3.Connection) -> None:
    db.executescript(
        """
        CREATE TABLE conversations (
            id INTEGER PRIMARY KEY, title TEXT NOT NULL, created_at REAL NOT NULL, updated_at REAL NOT NULL);
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
            role TEXT NOT NULL, content TEXT NOT NULL, created_at REAL NOT NULL);
        """
    )


def _v2(db: sqlite3.Connection) -> None:
    """Replies get thoughts, model, settings/stats JSON and a status; conversations a system prompt."""
    db.executescript(
        """
        ALTER TABLE messages ADD COLUMN thoughts TEXT NOT NULL DEFAULT '';
        ALTER TABLE messages ADD COLUMN model TEXT;
        ALTER TABLE messages ADD COLUMN settings_json TEXT NOT NULL DEFAULT '{}';
        ALTER TABLE messages ADD COLUMN stats_json TEXT NOT NULL DEFAULT '{}';
        ALTER TABLE messages ADD COLUMN status TEXT NOT NULL DEFAULT 'complete';
        ALTER TABLE messages ADD COLUMN updated_at REAL;
        UPDATE messages SET updated_at = created_at;
        ALTER TABLE conversations ADD COLUMN system_prompt TEXT NOT NULL DEFAULT '';
        ALTER TABLE conversations ADD COLUMN model TEXT;
        """
    )


def _v3(db: sqlite3.Connection) -> None:
    db.executescript(
        """
        CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
        CREATE INDEX conversations_by_update ON conversations(updated_at);
        """
    )


# Full-text search (issue 11 item 9): an FTS5 index over the messages' text, kept in step by triggers. Its
# own migration and its own functions, so that other migrations can be ordered around it. A SQLite build
# without FTS5 still migrates (the version is the same), searches with LIKE, and has no triggers that would
# make every write fail; the next start on a build with FTS5 creates the index and fills it from the messages.
FTS_TABLE = "messages_fts"
_FTS_TRIGGERS = {
    "messages_fts_insert": "AFTER INSERT ON messages BEGIN "
                           "INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END",
    "messages_fts_delete": "AFTER DELETE ON messages BEGIN INSERT INTO messages_fts(messages_fts, rowid, "
                           "content) VALUES ('delete', old.id, old.content); END",
    "messages_fts_update": "AFTER UPDATE OF content ON messages BEGIN INSERT INTO messages_fts(messages_fts, rowid, "
                           "content) VALUES ('delete', old.id, old.content); "
                           "INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content); END",
}  # fmt: skip


def fts5_available(db: sqlite3.Connection) -> bool:
    """This SQLite build has the FTS5 module (probed with a temporary table)."""
    try:
        db.execute("CREATE VIRTUAL TABLE temp.gemmadesk_fts5_probe USING fts5(x)")
        db.execute("DROP TABLE temp.gemmadesk_fts5_probe")
    except sqlite3.OperationalError:
        return False
    return True


def _fts_complete(db: sqlite3.Connection) -> bool:
    """The index table and all three triggers exist (so the index matches the messages)."""
    have = {r[0]: r[1] for r in db.execute("SELECT name, type FROM sqlite_master WHERE name LIKE 'messages_fts%'")}
    return have.get(FTS_TABLE) == "table" and all(have.get(name) == "trigger" for name in _FTS_TRIGGERS)


def _fts_index(db: sqlite3.Connection) -> None:
    """Migration: the full-text index of the messages (where this SQLite build has FTS5)."""
    ensure_fts(db)


def ensure_fts(db: sqlite3.Connection) -> bool:
    """Make the index match this SQLite build; returns whether search can use it. With FTS5: create the
    table and triggers that are missing and, if anything was missing, rebuild the index from the messages
    (idempotent). Without FTS5: drop GemmaDesk's triggers (they would fail every write); the index is rebuilt
    on the next start with FTS5."""
    if not fts5_available(db):
        for name in _FTS_TRIGGERS:
            db.execute(f"DROP TRIGGER IF EXISTS {name}")
        return False
    if _fts_complete(db):
        return True
    db.execute("SAVEPOINT gemmadesk_fts")
    try:
        db.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5(content, content='messages', "
                   "content_rowid='id', tokenize='unicode61 remove_diacritics 2')")
        for name, body in _FTS_TRIGGERS.items():
            db.execute(f"CREATE TRIGGER IF NOT EXISTS {name} {body}")
        db.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')")
        db.execute("RELEASE gemmadesk_fts")
    except BaseException:
        db.execute("ROLLBACK TO gemmadesk_fts")
        db.execute("RELEASE gemmadesk_fts")
        raise
    return True


def _attachments_migration(db: sqlite3.Connection) -> None:
    """Messages reference their attached images/audio (issue 14): ``attachments_json`` is a JSON list of
    ``{"sha256", "kind", "mime", "ext", "name", "size"}``; the files live content-addressed in the
    :class:`~gemmadesk.core.attachments.AttachmentStore` beside the database. One column (not a table)
    so the journal of unsaved messages and the rescue of a damaged database carry it like any other.
    Kept as its own function so its number can follow whatever other migration lands first."""
    db.executescript(
        """
        ALTER TABLE messages ADD COLUMN attachments_json TEXT NOT NULL DEFAULT '[]';
        CREATE INDEX messages_with_attachments ON messages(id) WHERE attachments_json <> '[]';
        """
    )


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1, _v2, _v3, _fts_index, _attachments_migration)
SCHEMA_VERSION = len(MIGRATIONS)


class HistoryError(Exception):
    """A history operation failed; ``str()`` is a user-facing sentence."""


@dataclass(frozen=True)
class Conversation:
    id: int
    title: str
    created_at: float
    updated_at: float
    system_prompt: str
    model: str | None


@dataclass(frozen=True)
class Message:
    id: int
    conversation_id: int
    role: Role
    content: str
    thoughts: str
    model: str | None
    settings: dict[str, Any]
    stats: dict[str, Any]
    status: Status
    created_at: float
    updated_at: float
    attachments: tuple[Attachment, ...] = ()  # paths inside the history's AttachmentStore (may be missing)


@dataclass(frozen=True)
class SearchHit:
    conversation_id: int
    conversation_title: str
    message_id: int | None  # None: the conversation's title matched
    role: Role | None
    snippet: str
    terms: tuple[str, ...] = ()  # the search terms, for highlighting (gemmadesk.core.search_text)


def _conversation(row: sqlite3.Row) -> Conversation:
    return Conversation(
        row["id"], row["title"], row["created_at"], row["updated_at"], row["system_prompt"], row["model"]
    )


def _message(row: sqlite3.Row | dict[str, Any], store: AttachmentStore | None = None) -> Message:
    keys = row.keys()
    refs = attachment_refs(row["attachments_json"] if "attachments_json" in keys else "[]")
    return Message(
        id=row["id"], conversation_id=row["conversation_id"], role=row["role"], content=row["content"],
        thoughts=row["thoughts"], model=row["model"], settings=_json_object(row["settings_json"]),
        stats=_json_object(row["stats_json"]), status=row["status"], created_at=row["created_at"],
        updated_at=row["updated_at"] or row["created_at"],
        attachments=tuple(_attachment(ref, store) for ref in refs),
    )  # fmt: skip


@dataclass(frozen=True)
class AttachmentRef:
    """One attachment as a message stores it (the file itself is in the AttachmentStore)."""

    sha256: str
    kind: AttachmentKind
    mime: str
    ext: str
    name: str = ""
    size: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"kind": str(self.kind)}

    @property
    def file_name(self) -> str:
        return f"{self.sha256}{self.ext}"


def attachment_refs(text: Any) -> list[AttachmentRef]:
    """The attachments a message's ``attachments_json`` names; anything malformed (a damaged or hand-edited
    database) is left out, never passed on as a path."""
    if not isinstance(text, str) or text in ("", "[]") or len(text) > MAX_ATTACHMENTS_JSON:
        return []
    try:
        items = json.loads(text)
    except (ValueError, RecursionError):
        return []
    out: list[AttachmentRef] = []
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict):
            continue
        sha, kind, mime, ext = item.get("sha256"), item.get("kind"), item.get("mime"), item.get("ext")
        name, size = item.get("name", ""), item.get("size", 0)
        if not (isinstance(sha, str) and _SHA.fullmatch(sha) and kind in ("image", "audio")
                and isinstance(mime, str) and mime in _MIMES and ext in EXTENSIONS.values()
                and isinstance(name, str) and isinstance(size, int) and not isinstance(size, bool)):
            continue
        out.append(AttachmentRef(sha, AttachmentKind(kind), mime, str(ext), name[:200], max(size, 0)))
    return out


def _attachments_json(attachments: Sequence[Attachment]) -> str:
    refs = []
    for att in attachments:
        path = Path(att.path)
        if not _SHA.fullmatch(att.sha256) or path.suffix not in EXTENSIONS.values():
            raise HistoryError(f"“{att.display_name}” was not stored as an attachment; attach it again.")
        try:
            size = path.stat().st_size
        except OSError:
            size = 0
        refs.append(AttachmentRef(att.sha256, AttachmentKind(att.kind), att.mime, path.suffix, att.name, size))
    return json.dumps([r.to_dict() for r in refs])


def _attachment(ref: AttachmentRef, store: AttachmentStore | None) -> Attachment:
    path = store.path_for(ref.sha256, ref.ext) if store is not None else Path(ref.file_name)
    return Attachment(ref.kind, path, ref.sha256, ref.mime, ref.name)


def _json_object(text: Any) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except (TypeError, ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _code(exc: sqlite3.Error) -> int:
    return int(getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


def _is_damage(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return _code(exc) in _DAMAGED or "malformed" in text or "not a database" in text


def _is_unwritable(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return _code(exc) in _UNWRITABLE or "readonly" in text or "read-only" in text or "disk is full" in text


def migrate(db: sqlite3.Connection) -> int:
    """Bring ``db`` to :data:`SCHEMA_VERSION`; returns the version it started from."""
    start = int(db.execute("PRAGMA user_version").fetchone()[0])
    if start > SCHEMA_VERSION:
        raise HistoryError(
            "The chat history was written by a newer GemmaDesk; update GemmaDesk to open it "
            f"(history version {start}, this version reads up to {SCHEMA_VERSION})."
        )
    for version in range(start, SCHEMA_VERSION):
        with db:  # one transaction per migration: a crash leaves a consistent earlier version
            MIGRATIONS[version](db)
            db.execute(f"PRAGMA user_version = {version + 1}")
    return start


class HistoryStore:
    """Conversations and messages. Safe to share between threads (one connection behind a lock)."""

    def __init__(self, path: str | Path | None = None, attachments: AttachmentStore | None = None) -> None:
        self.path = Path(path) if path is not None else app_paths().history_db
        self._memory = str(path) == ":memory:"
        # Attachments live beside the database (``<data dir>/attachments`` for the default one). An
        # in-memory history (nothing saved) references the app's store but never deletes from it: it
        # does not know which files the saved chats use.
        if attachments is not None:
            self.attachments = attachments
        elif self._memory:
            self.attachments = AttachmentStore()
        else:
            self.attachments = AttachmentStore(root=self.path.parent / "attachments")
        self._collects_attachments = not self._memory
        self._lock = threading.RLock()
        self.notices: list[str] = []  # one sentence each: what happened to the history and where things are
        self.read_only: str | None = None  # why new turns wait in the journal (None: saved normally)
        self._journal_path = None if self._memory else self.path.with_name(self.path.name + ".pending.json")
        self._pending = _Pending()
        self._ids: dict[int, int] = {}  # journal id -> database id, once written
        self._next_retry = 0.0
        self._reply_conversation: dict[int, int] = {}  # replies begun in this session -> their conversation
        self._recovered = False  # a damaged database was replaced: rows the caller knows may be gone
        self.fts = False  # search uses the FTS5 index (else LIKE: a SQLite build without FTS5)
        if not self._memory:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = self._open()
        self._load_journal()
        if not self._pending.empty():
            self._flush_pending(force=True)

    # ------------------------------------------------------------ opening, damage, read-only
    def _connect(self, read_only: bool = False) -> sqlite3.Connection:
        if read_only:
            db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False,
                                 isolation_level=None)
        else:
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            if not read_only:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
            db.execute("PRAGMA busy_timeout=5000")
            if read_only:
                version = int(db.execute("PRAGMA user_version").fetchone()[0])
                if version > SCHEMA_VERSION:
                    migrate(db)  # raises the "newer GemmaDesk" HistoryError
                if version < SCHEMA_VERSION:
                    raise HistoryError(
                        f"The chat history {self.path} is from an older GemmaDesk and must be upgraded, but it "
                        "cannot be written: check the file's permissions and the free disk space, then start again."
                    )
                db.execute("SELECT count(*) FROM conversations").fetchone()
                self.fts = fts5_available(db) and _fts_complete(db)
            else:
                migrate(db)
                self.fts = ensure_fts(db)
        except BaseException:
            db.close()
            raise
        return db

    def _open(self) -> sqlite3.Connection:
        try:
            db = self._connect()
            if not self._memory:
                self._probe_writable(db)
            return db
        except HistoryError:
            raise
        except sqlite3.DatabaseError as exc:
            if _is_damage(exc) and not self._memory:
                return self._recover(exc, opening=True)
            if not _is_unwritable(exc) or self._memory:
                raise HistoryError(f"The chat history at {self.path} cannot be opened: {exc}.") from exc
            first = exc
        try:
            db = self._connect(read_only=True)
        except sqlite3.DatabaseError as exc:
            if _is_damage(exc):
                return self._recover(exc, opening=True)
            raise HistoryError(
                f"The chat history at {self.path} cannot be opened ({first}); check that the file and its folder "
                "can be read and written."
            ) from exc
        self._set_read_only(first)
        return db

    def _probe_writable(self, db: sqlite3.Connection) -> None:
        """Say at once (not after the first reply) when the file cannot be written: a write rolled back."""
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            finally:
                db.execute("ROLLBACK")
        except sqlite3.DatabaseError as exc:
            if not _is_unwritable(exc):
                raise
            self._set_read_only(exc)

    def _set_read_only(self, exc: BaseException) -> None:
        if self.read_only is None:
            self.read_only = str(exc)
            self._notice(
                f"The chat history {self.path} cannot be written ({exc}); new messages are kept in "
                f"{self._journal_path} and saved as soon as it can be written again: check the disk space and "
                "the file's permissions."
            )
        self._next_retry = time.monotonic() + RETRY_S

    def _notice(self, text: str) -> None:
        self.notices.append(text)
        log.warning(text)

    def take_notices(self) -> list[str]:
        """The notices not yet shown, oldest first (and forget them)."""
        with self._lock:
            out, self.notices = self.notices, []
            return out

    def _recover(self, exc: BaseException, opening: bool = False) -> sqlite3.Connection:
        """Move the damaged database aside (never deleted), start a fresh one, copy in what can be read."""
        if not opening:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.damaged-{stamp}")
        n = 2
        while aside.exists():
            aside, n = self.path.with_name(f"{self.path.name}.damaged-{stamp}-{n}"), n + 1
        try:
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                side = self.path.with_name(self.path.name + suffix)
                if side.exists():
                    os.replace(side, aside.with_name(aside.name + suffix))
        except OSError as move_error:
            raise HistoryError(
                f"The chat history {self.path} is damaged ({exc}) and could not be moved aside "
                f"({move_error.strerror or move_error}); close GemmaDesk and move the file away yourself."
            ) from move_error
        try:
            db = self._connect()
        except sqlite3.Error as fresh_error:
            raise HistoryError(
                f"The chat history was damaged ({exc}) and moved to {aside}, but a new one could not be started at "
                f"{self.path} ({fresh_error}): check the folder's permissions and free disk space."
            ) from fresh_error
        self._recovered = True
        conversations, messages = _salvage(aside, db)
        self._notice(
            f"The chat history was damaged ({exc}); it was moved to {aside} and a new one started with the "
            f"{conversations} conversations and {messages} messages that could still be read."
        )
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return list(self._db.execute(sql, args).fetchall())
            except sqlite3.DatabaseError as exc:
                if not _is_damage(exc) or self._memory:
                    raise HistoryError(f"The chat history could not be read: {exc}.") from exc
                self._db = self._recover(exc)
                return list(self._db.execute(sql, args).fetchall())

    def _write(self, do: Callable[[sqlite3.Connection], Any], journal: Callable[[], Any]) -> Any:
        """Run ``do`` in a transaction; on damage recover and retry once; when the database cannot be written,
        keep the change in the journal instead (``journal()`` returns what ``do`` would have)."""
        with self._lock:
            if not self._pending.empty() and not self._flush_pending():
                return journal()
            for attempt in (1, 2):
                try:
                    with self._tx() as db:
                        return do(db)
                except sqlite3.DatabaseError as exc:
                    if _is_damage(exc) and attempt == 1 and not self._memory:
                        self._db = self._recover(exc)
                        continue
                    if _is_unwritable(exc) and not self._memory:
                        self._set_read_only(exc)
                        return journal()
                    raise HistoryError(f"The chat history could not be saved: {exc}.") from exc
            raise AssertionError("unreachable")

    # ------------------------------------------------------------ the journal of unsaved changes
    def _load_journal(self) -> None:
        path = self._journal_path
        if path is None or not path.exists():
            return
        try:
            if path.stat().st_size > MAX_JOURNAL_BYTES:
                raise ValueError("too large")
            self._pending = _Pending.parse(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError, KeyError, RecursionError) as exc:
            aside = path.with_name(f"{path.name}.unreadable-{int(time.time())}")
            with contextlib.suppress(OSError):
                os.replace(path, aside)
            self._notice(f"The unsaved chat messages in {path} could not be read ({exc}); the file was kept as "
                         f"{aside}.")
            self._pending = _Pending()
            return
        if not self._pending.empty():
            self._notice(f"Chat messages that could not be saved earlier were found in {path}.")

    def _save_journal(self) -> None:
        if self._journal_path is None:
            return
        try:
            atomic_write_text(self._journal_path, json.dumps(self._pending.to_dict()))
        except OSError as exc:
            raise HistoryError(
                f"This chat could not be saved: the history {self.path} cannot be written ({self.read_only}) and "
                f"neither can {self._journal_path} ({exc.strerror or exc}); copy what you need from the window now."
            ) from exc

    def _flush_pending(self, force: bool = False) -> bool:
        """Write the journal into the database if it can be written now; True when nothing waits any more."""
        if self._pending.empty():
            return True
        if not force and time.monotonic() < self._next_retry:
            return False
        if self.read_only is not None:
            try:
                db = self._connect()
            except sqlite3.DatabaseError as exc:
                self._set_read_only(exc)
                return False
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = db
        try:
            with self._tx() as db:
                ids = self._pending.replay(db, dict(self._ids))
        except sqlite3.DatabaseError as exc:
            if _is_damage(exc):
                self._db = self._recover(exc)
                return self._flush_pending(force=True)
            self._set_read_only(exc)
            return False
        self._ids = ids
        self._pending = _Pending()
        if self._journal_path is not None:
            self._journal_path.unlink(missing_ok=True)  # GemmaDesk's own file, now in the database
        self.read_only = None
        self._notice(f"The chat messages kept while {self.path} could not be written are saved in it now.")
        return True

    def _real(self, some_id: int) -> int:
        """A journal id (negative) as its database id once written (the caller may still hold the old one)."""
        return self._ids.get(some_id, some_id)

    def close(self) -> None:
        """Close the database; turns still waiting in the journal are written first if it can be written
        now (else they stay in the journal for the next start)."""
        with self._lock:
            if not self._pending.empty():
                try:
                    self._flush_pending(force=True)
                except (sqlite3.Error, OSError, HistoryError):
                    log.warning("the journal of unsaved turns stays in %s", self._journal_path, exc_info=True)
            self._db.close()

    # ------------------------------------------------------------ conversations
    def create_conversation(
        self, title: str = DEFAULT_TITLE, system_prompt: str = "", model: str | None = None
    ) -> Conversation:
        now = time.time()

        def do(db: sqlite3.Connection) -> int:
            cur = db.execute(
                "INSERT INTO conversations (title, created_at, updated_at, system_prompt, model) "
                "VALUES (?, ?, ?, ?, ?)",
                (title, now, now, system_prompt, model),
            )
            return int(cur.lastrowid or 0)

        def journal() -> int:
            cid = self._pending.new_id()
            self._pending.conversations[cid] = {"title": title, "created_at": now, "updated_at": now,
                                                "system_prompt": system_prompt, "model": model}
            self._save_journal()
            return cid

        with self._lock:
            return self.get_conversation(self._write(do, journal))

    def get_conversation(self, conversation_id: int) -> Conversation:
        with self._lock:
            cid = self._real(conversation_id)
            if cid in self._pending.conversations:
                return _conversation_of(cid, self._pending.conversations[cid])
            rows = self._query("SELECT * FROM conversations WHERE id = ?", (cid,))
            if not rows:
                raise HistoryError(f"Conversation {conversation_id} does not exist (it may have been deleted).")
            return _conversation_of(cid, {**dict(rows[0]), **self._pending.conversation_updates.get(cid, {})})

    def list_conversations(self) -> list[Conversation]:
        """Most recently active first."""
        with self._lock:
            rows = self._query("SELECT * FROM conversations ORDER BY updated_at DESC, id DESC")
            out = [_conversation_of(r["id"], {**dict(r), **self._pending.conversation_updates.get(r["id"], {})})
                   for r in rows]
            out += [_conversation_of(cid, row) for cid, row in self._pending.conversations.items()]
        return sorted(out, key=lambda c: (c.updated_at, c.id), reverse=True)

    def rename(self, conversation_id: int, title: str) -> None:
        self._update_conversation(conversation_id, "title", title.strip() or DEFAULT_TITLE)

    def set_system_prompt(self, conversation_id: int, text: str) -> None:
        self._update_conversation(conversation_id, "system_prompt", text)

    def set_model(self, conversation_id: int, model: str | None) -> None:
        self._update_conversation(conversation_id, "model", model)

    def _update_conversation(self, conversation_id: int, column: str, value: Any) -> None:
        assert column in _PENDING_CONVERSATION_UPDATES

        def do(db: sqlite3.Connection) -> None:
            cid = self._real(conversation_id)
            cur = db.execute(f"UPDATE conversations SET {column} = ? WHERE id = ?", (value, cid))
            if cur.rowcount == 0:
                raise HistoryError(f"Conversation {conversation_id} does not exist (it may have been deleted).")

        def journal() -> None:
            cid = self._real(conversation_id)
            self.get_conversation(cid)  # raises if there is no such conversation
            _merge_change(self._pending.conversations, self._pending.conversation_updates, cid, {column: value})
            self._save_journal()

        with self._lock:
            if self._real(conversation_id) in self._pending.conversations:
                journal()
            else:
                self._write(do, journal)

    def delete_conversation(self, conversation_id: int) -> None:
        """Delete a conversation and its messages, then the attachment files no other message uses."""

        def do(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM conversations WHERE id = ?", (self._real(conversation_id),))

        with self._lock:
            cid = self._real(conversation_id)
            used = _hashes(self.messages(cid))
            if cid in self._pending.conversations:
                self._pending.drop_conversation(cid)
                self._save_journal()
            else:
                self._write(do, self._refuse_while_unwritable("deleted"))
            self._collect_attachments(used)

    # ------------------------------------------------------------ attachment files
    def referenced_attachments(self) -> set[str]:
        """The content hashes every saved message (and every one waiting in the journal) references."""
        with self._lock:
            rows = self._query("SELECT attachments_json FROM messages WHERE attachments_json <> '[]'")
            refs = {r.sha256 for row in rows for r in attachment_refs(row[0])}
            refs |= {r.sha256 for row in self._pending.messages.values()
                     for r in attachment_refs(row.get("attachments_json"))}
            return refs

    def _may_collect(self) -> bool:
        """Attachment files are deleted only when this history surely knows every message: a saved,
        writable database with no damaged copy kept aside (its chats may still reference them)."""
        if not self._collects_attachments or self._recovered or self.read_only is not None:
            return False
        try:
            return not any(self.path.parent.glob(f"{glob.escape(self.path.name)}.damaged-*"))
        except OSError:
            return False

    def _collect_attachments(self, candidates: set[str]) -> int:
        """After messages were deleted: delete the files of ``candidates`` that no message references any
        more (after the database commit, so a crash leaves an unused file, never a missing one)."""
        if not candidates or not self._may_collect():
            return 0
        removed = 0
        try:
            for sha in sorted(candidates - self.referenced_attachments()):
                removed += self.attachments.remove(sha)
        except (OSError, HistoryError) as exc:  # left for the next start-up sweep
            log.warning("could not delete unused attachments: %s", exc)
        return removed

    def sweep_attachments(self, min_age_s: float = SWEEP_MIN_AGE_S) -> int:
        """Delete stored attachment files no message references (left by a crash between the database and
        the file, or by a chat that was never saved), if older than ``min_age_s``; returns how many."""
        if not self._may_collect():
            return 0
        try:
            with self._lock:
                return self.attachments.remove_unused(self.referenced_attachments(), min_age_s=min_age_s)
        except (OSError, HistoryError) as exc:
            log.warning("could not sweep unused attachments: %s", exc)
            return 0

    def _refuse_while_unwritable(self, what: str) -> Callable[[], None]:
        def refuse() -> None:
            raise HistoryError(
                f"The chat history {self.path} cannot be written just now ({self.read_only}), so nothing was "
                f"{what}: check the disk space and the file's permissions, then try again."
            )

        return refuse

    # ----------------------------------------------------------------- messages
    def messages(self, conversation_id: int) -> list[Message]:
        with self._lock:
            cid = self._real(conversation_id)
            rows = [] if cid < 0 else self._query(
                "SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (cid,))
            store = self.attachments
            out = [_message({**dict(r), **self._pending.message_updates.get(r["id"], {})}, store) for r in rows]
            out += [_message({"id": mid, **row}, store)
                    for mid, row in sorted(self._pending.messages.items(), reverse=True)
                    if self._real(row["conversation_id"]) == cid]
            return out

    def get_message(self, message_id: int) -> Message:
        with self._lock:
            mid = self._real(message_id)
            if mid in self._pending.messages:
                return _message({"id": mid, **self._pending.messages[mid]}, self.attachments)
            rows = self._query("SELECT * FROM messages WHERE id = ?", (mid,))
            if not rows:
                raise HistoryError(f"Message {message_id} does not exist (it may have been deleted).")
            return _message({**dict(rows[0]), **self._pending.message_updates.get(mid, {})}, self.attachments)

    def add_message(
        self,
        conversation_id: int,
        role: Role,
        content: str,
        *,
        thoughts: str = "",
        model: str | None = None,
        settings: dict[str, Any] | None = None,
        stats: dict[str, Any] | None = None,
        status: Status = "complete",
        attachments: Sequence[Attachment] = (),
    ) -> Message:
        """Append and commit one message. The first user message also titles a "New chat".
        ``attachments``: files already in :attr:`attachments` (``AttachmentStore.put``), referenced by hash."""
        now = time.time()
        row = {"role": role, "content": content, "thoughts": thoughts, "model": model,
               "settings_json": json.dumps(settings or {}), "stats_json": json.dumps(stats or {}),
               "status": status, "created_at": now, "updated_at": now,
               "attachments_json": _attachments_json(attachments)}
        title = _title_from(content or " ".join(a.display_name for a in attachments))

        def do(db: sqlite3.Connection) -> int:
            cid = self._real(conversation_id)
            if self._recovered:
                _ensure_conversation(db, cid, now)
            cur = db.execute(
                "INSERT INTO messages (conversation_id, role, content, thoughts, model, settings_json, "
                "stats_json, status, created_at, updated_at, attachments_json) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (cid, *row.values()),
            )  # fmt: skip
            db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, cid))
            if role == "user":
                db.execute(
                    "UPDATE conversations SET title = ? WHERE id = ? AND title = ?",
                    (title, cid, DEFAULT_TITLE),
                )
            return int(cur.lastrowid or 0)

        def journal() -> int:
            cid = self._real(conversation_id)
            conv = self.get_conversation(cid)  # raises if there is no such conversation
            mid = self._pending.new_id()
            self._pending.messages[mid] = {"conversation_id": cid, **row}
            changes: dict[str, Any] = {"updated_at": now}
            if role == "user" and conv.title == DEFAULT_TITLE:
                changes["title"] = title
            if cid in self._pending.conversations:
                self._pending.conversations[cid].update(changes)
            else:
                self._pending.conversation_updates.setdefault(cid, {}).update(changes)
            self._save_journal()
            return mid

        with self._lock:
            if self._real(conversation_id) < 0 and not self._flush_pending():
                mid = journal()
            else:
                mid = self._write(do, journal)
            return self.get_message(mid)

    def begin_reply(
        self, conversation_id: int, model: str | None = None, settings: dict[str, Any] | None = None
    ) -> int:
        """Create the assistant row a streaming reply is saved into (status "partial" until finished)."""
        msg = self.add_message(conversation_id, "assistant", "", model=model, settings=settings, status="partial")
        self._reply_conversation[msg.id] = msg.conversation_id
        return msg.id

    def update_partial(self, message_id: int, content: str, thoughts: str) -> None:
        """Save the reply so far: one UPDATE of one row (cheap enough to run every second)."""
        self._update_message(message_id, {"content": content, "thoughts": thoughts, "updated_at": time.time()})

    def finish_reply(
        self,
        message_id: int,
        content: str,
        thoughts: str,
        stats: dict[str, Any] | None = None,
        status: Status = "complete",
    ) -> None:
        """Store the final reply. Use status "partial" for a reply the user stopped."""
        self._update_message(message_id, {"content": content, "thoughts": thoughts,
                                          "stats_json": json.dumps(stats or {}), "status": status,
                                          "updated_at": time.time()}, touch_conversation=True)

    def _update_message(self, message_id: int, changes: dict[str, Any], touch_conversation: bool = False) -> None:
        def do(db: sqlite3.Connection) -> None:
            mid = self._real(message_id)
            sets = ", ".join(f"{column} = ?" for column in changes)
            cur = db.execute(f"UPDATE messages SET {sets} WHERE id = ?", (*changes.values(), mid))
            cid = self._reply_conversation.get(message_id)
            if cur.rowcount == 0 and self._recovered and cid is not None:
                # the row was lost with the damaged database: write the reply again, it is still known here
                cid = self._real(cid)
                _ensure_conversation(db, cid, changes["updated_at"])
                row = {"role": "assistant", "content": "", "thoughts": "", "model": None, "settings_json": "{}",
                       "stats_json": "{}", "status": "partial", "created_at": changes["updated_at"], **changes}
                db.execute(f"INSERT INTO messages (id, conversation_id, {', '.join(row)}) "
                           f"VALUES (?, ?, {', '.join('?' for _ in row)})", (mid, cid, *row.values()))
            if touch_conversation:
                db.execute("UPDATE conversations SET updated_at = ? WHERE id = "
                           "(SELECT conversation_id FROM messages WHERE id = ?)", (changes["updated_at"], mid))

        def journal() -> None:
            _merge_change(self._pending.messages, self._pending.message_updates, self._real(message_id), changes)
            self._save_journal()

        with self._lock:
            if self._real(message_id) in self._pending.messages and not self._flush_pending():
                journal()
            else:
                self._write(do, journal)

    def delete_message(self, message_id: int) -> None:
        def do(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM messages WHERE id = ?", (self._real(message_id),))

        with self._lock:
            mid = self._real(message_id)
            try:
                used = _hashes([self.get_message(mid)])
            except HistoryError:
                used = set()
            if mid in self._pending.messages:
                del self._pending.messages[mid]
                self._save_journal()
            else:
                self._write(do, self._refuse_while_unwritable("deleted"))
            self._collect_attachments(used)

    def edit_user_message(self, message_id: int, content: str) -> list[Message]:
        """Replace a user message's text and delete every later message of its conversation; returns
        the conversation's remaining messages (ending with the edited one)."""
        msg = self.get_message(message_id)
        if msg.role != "user":
            raise HistoryError("Only your own messages can be edited; regenerate a reply instead.")

        def do(db: sqlite3.Connection) -> None:
            db.execute(
                "UPDATE messages SET content = ?, updated_at = ? WHERE id = ?",
                (content, time.time(), msg.id),
            )
            db.execute("DELETE FROM messages WHERE conversation_id = ? AND id > ?", (msg.conversation_id, msg.id))

        if msg.id < 0 or msg.conversation_id < 0:
            self._refuse_while_unwritable("edited")()
        with self._lock:
            used = _hashes(m for m in self.messages(msg.conversation_id) if m.id > msg.id)
            self._write(do, self._refuse_while_unwritable("edited"))
            self._collect_attachments(used)
        return self.messages(msg.conversation_id)

    def remove_last_reply(self, conversation_id: int) -> list[Message]:
        """For "regenerate": delete the last message if it is a reply; returns what remains."""
        msgs = self.messages(conversation_id)
        if msgs and msgs[-1].role == "assistant":
            self.delete_message(msgs[-1].id)
            msgs = msgs[:-1]
        return msgs

    def chat_messages(self, conversation_id: int) -> list[ChatMessage]:
        """What the model is given: the system prompt and the turns' text, never the thoughts.
        Empty partial replies (stopped before the first token) are left out."""
        conv = self.get_conversation(conversation_id)
        out = [ChatMessage("system", conv.system_prompt)] if conv.system_prompt.strip() else []
        out += [ChatMessage(m.role, m.content, m.attachments) for m in self.messages(conversation_id)
                if m.content.strip() or m.attachments]
        return out

    # ------------------------------------------------------------ import
    def add_conversations(self, items: Sequence[tuple[dict[str, Any], Sequence[dict[str, Any]]]]) -> list[int]:
        """Insert whole conversations (an import) in one transaction, each with new ids: nothing that exists
        is changed or replaced. ``items``: (conversation columns, [message columns]) as
        :func:`gemmadesk.core.history_io.parse_export` returns them (checked again here). Refused while the
        history cannot be written (an import is not kept in the journal)."""
        checked = [(_checked(conv, _PENDING_CONVERSATION, partial=False),
                    [_checked(m, _IMPORTED_MESSAGE, partial=False) for m in messages]) for conv, messages in items]

        def do(db: sqlite3.Connection) -> list[int]:
            ids = []
            for conv, messages in checked:
                cur = db.execute(f"INSERT INTO conversations ({', '.join(conv)}) "
                                 f"VALUES ({', '.join('?' for _ in conv)})", tuple(conv.values()))
                cid = int(cur.lastrowid or 0)
                for m in messages:
                    db.execute(f"INSERT INTO messages (conversation_id, {', '.join(m)}) "
                               f"VALUES (?, {', '.join('?' for _ in m)})", (cid, *m.values()))
                ids.append(cid)
            return ids

        result: list[int] = self._write(do, self._refuse_while_unwritable("imported"))
        return result

    # ------------------------------------------------------------ search/export
    def search(self, text: str, limit: int = 50) -> list[SearchHit]:
        """Conversations whose title contains ``text`` (LIKE; ``%`` and ``_`` literally), then messages
        containing every term of ``text`` as the start of a word (:mod:`gemmadesk.core.search_text`: the
        FTS5 index, or LIKE where this SQLite build has no FTS5), newest first. ``SearchHit.terms``: what to
        highlight."""
        needle = text.strip()[:MAX_QUERY_CHARS]
        if not needle:
            return []
        terms = tuple(search_terms(needle))
        titles = self._query(
            "SELECT id, title FROM conversations WHERE title LIKE ? ESCAPE '\\' ORDER BY updated_at DESC LIMIT ?",
            (like_pattern(needle), limit),
        )
        hits = [SearchHit(r["id"], r["title"], None, None, r["title"], terms) for r in titles]
        if terms:
            columns = "m.id AS mid, m.role, m.content, c.id AS cid, c.title"
            if self.fts:
                rows = self._query(
                    f"SELECT {columns} FROM {FTS_TABLE} f JOIN messages m ON m.id = f.rowid "
                    f"JOIN conversations c ON c.id = m.conversation_id WHERE {FTS_TABLE} MATCH ? "
                    "ORDER BY m.id DESC LIMIT ?", (fts_query(list(terms)), limit))
            else:  # LIKE finds the terms anywhere; keep the messages where each starts a word, as FTS5 does
                where = " AND ".join("m.content LIKE ? ESCAPE '\\'" for _ in terms)
                rows = self._query(
                    f"SELECT {columns} FROM messages m JOIN conversations c ON c.id = m.conversation_id "
                    f"WHERE {where} ORDER BY m.id DESC LIMIT ?", (*map(like_pattern, terms), 10 * limit))
                rows = [r for r in rows if all(match_spans(r["content"], [t]) for t in terms)][:limit]
            hits += [SearchHit(r["cid"], r["title"], r["mid"], r["role"], snippet(r["content"], list(terms)), terms)
                     for r in rows]
        return hits[:limit]

    def export_json(self, conversation_id: int) -> dict[str, Any]:
        """The conversation as JSON-ready data. Each message's ``attachments`` lists its files by content hash,
        with ``file`` = ``attachments/<sha256><ext>``: the path :meth:`export_attachments` copies them to."""
        conv = self.get_conversation(conversation_id)
        return {
            "format": "gemmadesk-conversation",
            "version": 1,
            "conversation": asdict(conv),
            "messages": [_exported(m) for m in self.messages(conversation_id)],
        }

    def export_attachments(self, conversation_id: int, folder: str | Path) -> list[str]:
        """Copy the conversation's attachment files into ``folder/attachments/`` (as ``<sha256><ext>``, the
        relative paths the JSON and Markdown exports use); returns the names of files that are missing from
        the store (the exports still name them). Never overwrites a different file."""
        target = Path(folder) / "attachments"
        missing: list[str] = []
        seen: set[str] = set()
        for m in self.messages(conversation_id):
            for att in m.attachments:
                if att.sha256 in seen:
                    continue
                seen.add(att.sha256)
                source = self.attachments.find(att.sha256)
                if source is None:
                    missing.append(att.display_name)
                    continue
                target.mkdir(parents=True, exist_ok=True)
                dest = target / source.name
                if dest.is_symlink() or (dest.exists() and dest.stat().st_size == source.stat().st_size):
                    continue
                tmp = dest.with_name(f".{dest.name}.part")
                shutil.copyfile(source, tmp)
                os.replace(tmp, dest)
        return missing

    def export_folder(self, conversation_id: int, folder: str | Path) -> Path:
        """``chat.md`` + ``chat.json`` + ``attachments/`` in ``folder`` (made if missing); returns the folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.export_attachments(conversation_id, folder)
        atomic_write_text(folder / "chat.json", json.dumps(self.export_json(conversation_id), indent=2))
        atomic_write_text(folder / "chat.md", self.export_markdown(conversation_id))
        return folder

    def export_markdown(self, conversation_id: int) -> str:
        conv = self.get_conversation(conversation_id)
        lines = [f"# {conv.title}", "", f"_Exported from GemmaDesk on {_iso(time.time())}_", ""]
        if conv.system_prompt.strip():
            lines += ["## System", "", conv.system_prompt.strip(), ""]
        for m in self.messages(conversation_id):
            head = "## You" if m.role == "user" else f"## {m.model or 'Model'}"
            if m.status == "partial":
                head += " (stopped)" if m.stats.get("stop_reason") else " (interrupted)"
            lines += [head, f"_{_iso(m.created_at)}_", ""]
            if m.thoughts.strip():
                lines += [
                    "<details><summary>Thoughts</summary>",
                    "",
                    m.thoughts.strip(),
                    "",
                    "</details>",
                    "",
                ]
            lines += [_markdown_attachment(a) for a in m.attachments]
            if m.attachments:
                lines.append("")
            lines += [m.content.strip(), ""]
        return "\n".join(lines)


_PENDING_CONVERSATION_UPDATES = {"title": str, "system_prompt": str, "model": (str, type(None)),
                                 "updated_at": (float, int)}
_PENDING_MESSAGE_UPDATES = {"content": str, "thoughts": str, "stats_json": str, "status": str,
                            "updated_at": (float, int)}
_PENDING_CONVERSATION = {"title": str, "created_at": (float, int), "updated_at": (float, int),
                         "system_prompt": str, "model": (str, type(None))}
_PENDING_MESSAGE = {"conversation_id": int, "role": str, "content": str, "thoughts": str,
                    "model": (str, type(None)), "settings_json": str, "stats_json": str, "status": str,
                    "created_at": (float, int), "updated_at": (float, int), "attachments_json": str}
_IMPORTED_MESSAGE = {k: v for k, v in _PENDING_MESSAGE.items() if k not in ("conversation_id", "attachments_json")}


def _conversation_of(cid: int, row: dict[str, Any]) -> Conversation:
    return Conversation(cid, row["title"], row["created_at"], row["updated_at"], row["system_prompt"], row["model"])


def _ensure_conversation(db: sqlite3.Connection, cid: int, when: float) -> None:
    """After a damaged database was replaced: give a message whose conversation was lost a home again."""
    db.execute("INSERT OR IGNORE INTO conversations (id, title, created_at, updated_at) VALUES (?, ?, ?, ?)",
               (cid, "Recovered chat", when, when))


def _checked(row: Any, schema: dict[str, Any], *, partial: bool) -> dict[str, Any]:
    """A journal row with exactly the known columns and types (the journal is a file: never trusted)."""
    if not isinstance(row, dict) or not set(row) <= set(schema) or (not partial and set(row) != set(schema)):
        raise ValueError("unexpected fields")
    for key, value in row.items():
        kinds = schema[key]
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ValueError(f"{key} has the wrong type")
    if row.get("role", "user") not in ("system", "user", "assistant") or \
            row.get("status", "complete") not in ("complete", "partial"):
        raise ValueError("unknown role or status")
    return dict(row)


def _merge_change(rows: dict[int, dict[str, Any]], updates: dict[int, dict[str, Any]], key: int,
                  changes: dict[str, Any]) -> None:  # fmt: skip
    """A journalled change: a row not yet in the database (in ``rows``) takes it itself; a row in the database
    gets it as a pending update (in ``updates``)."""
    if key in rows:
        rows[key].update(changes)
    else:
        updates.setdefault(key, {}).update(changes)


@dataclass
class _Pending:
    """Changes that wait for the database to be writable: new rows (negative ids) and updates of rows."""

    conversations: dict[int, dict[str, Any]] = field(default_factory=dict)
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)
    conversation_updates: dict[int, dict[str, Any]] = field(default_factory=dict)
    message_updates: dict[int, dict[str, Any]] = field(default_factory=dict)
    next_id: int = -1

    def empty(self) -> bool:
        return not (self.conversations or self.messages or self.conversation_updates or self.message_updates)

    def new_id(self) -> int:
        new, self.next_id = self.next_id, self.next_id - 1
        return new

    def drop_conversation(self, cid: int) -> None:
        self.conversations.pop(cid, None)
        self.messages = {k: v for k, v in self.messages.items() if v["conversation_id"] != cid}

    def to_dict(self) -> dict[str, Any]:
        def rows(table: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
            return [{"id": k, **v} for k, v in sorted(table.items())]

        return {"format": "gemmadesk-pending-chats", "version": 1, "next_id": self.next_id,
                "conversations": rows(self.conversations), "messages": rows(self.messages),
                "conversation_updates": rows(self.conversation_updates), "message_updates": rows(self.message_updates)}

    @classmethod
    def parse(cls, data: Any) -> _Pending:
        if not isinstance(data, dict) or data.get("format") != "gemmadesk-pending-chats" or data.get("version") != 1:
            raise ValueError("not a journal of this GemmaDesk")

        def table(key: str, schema: dict[str, Any], partial: bool, negative: bool) -> dict[int, dict[str, Any]]:
            out: dict[int, dict[str, Any]] = {}
            for raw in data.get(key, []):
                if not isinstance(raw, dict):
                    raise ValueError(f"{key}: not an object")
                row = dict(raw)
                if key == "messages":
                    row.setdefault("attachments_json", "[]")  # journals written before attachments existed
                some_id = row.pop("id", None)
                if isinstance(some_id, bool) or not isinstance(some_id, int) or (some_id < 0) != negative:
                    raise ValueError(f"{key}: bad id")
                out[some_id] = _checked(row, schema, partial=partial)
            return out

        pending = cls(
            conversations=table("conversations", _PENDING_CONVERSATION, False, True),
            messages=table("messages", _PENDING_MESSAGE, False, True),
            conversation_updates=table("conversation_updates", _PENDING_CONVERSATION_UPDATES, True, False),
            message_updates=table("message_updates", _PENDING_MESSAGE_UPDATES, True, False),
        )
        lowest = min([-1, *pending.conversations, *pending.messages])
        pending.next_id = min(lowest - 1, int(data.get("next_id", -1)) if isinstance(data.get("next_id"), int) else -1)
        return pending

    def replay(self, db: sqlite3.Connection, ids: dict[int, int]) -> dict[int, int]:
        """Write everything into ``db`` (inside the caller's transaction); returns journal id -> database id."""
        for cid in sorted(self.conversations, reverse=True):  # -1, -2, ...: the order they were made
            row = self.conversations[cid]
            cur = db.execute(f"INSERT INTO conversations ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                             tuple(row.values()))
            ids[cid] = int(cur.lastrowid or 0)
        for mid in sorted(self.messages, reverse=True):
            row = dict(self.messages[mid])
            row["conversation_id"] = ids.get(row["conversation_id"], row["conversation_id"])
            _ensure_conversation(db, row["conversation_id"], row["created_at"])
            cur = db.execute(f"INSERT INTO messages ({', '.join(row)}) VALUES ({', '.join('?' for _ in row)})",
                             tuple(row.values()))
            ids[mid] = int(cur.lastrowid or 0)
        for cid, changes in self.conversation_updates.items():
            sets = ", ".join(f"{column} = ?" for column in changes)  # columns checked by _checked
            db.execute(f"UPDATE conversations SET {sets} WHERE id = ?", (*changes.values(), ids.get(cid, cid)))
        for mid, changes in self.message_updates.items():
            sets = ", ".join(f"{column} = ?" for column in changes)
            db.execute(f"UPDATE messages SET {sets} WHERE id = ?", (*changes.values(), ids.get(mid, mid)))
        return ids


def _salvage(old: Path, db: sqlite3.Connection) -> tuple[int, int]:
    """Copy every conversation and message that can still be read from the damaged ``old`` into ``db``
    (same ids); returns (conversations, messages) copied. Damaged pages are stepped over row by row."""
    try:
        src = sqlite3.connect(f"{old.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return 0, 0
    counts: list[int] = []
    with contextlib.closing(src):
        for table, columns in (("conversations", ("id", *_CONVERSATION_COLUMNS)),
                               ("messages", ("id", *_MESSAGE_COLUMNS))):
            try:
                have = {r[1] for r in src.execute(f"PRAGMA table_info({table})")}
            except sqlite3.Error:
                counts.append(0)
                continue
            use = [c for c in columns if c in have]
            if "id" not in use or (table == "messages" and "conversation_id" not in use):
                counts.append(0)
                continue
            copied = 0
            db.execute("BEGIN IMMEDIATE")
            try:
                for row in _readable_rows(src, table, use):
                    values = dict(zip(use, row, strict=True))
                    if table == "messages":
                        _ensure_conversation(db, values["conversation_id"], values.get("created_at") or time.time())
                    try:
                        cur = db.execute(f"INSERT OR IGNORE INTO {table} ({', '.join(use)}) "
                                         f"VALUES ({', '.join('?' for _ in use)})", row)
                    except sqlite3.Error:
                        continue  # a row whose values no longer fit (NOT NULL ...): left in the old file
                    copied += max(cur.rowcount, 0)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            counts.append(copied)
    return counts[0], counts[1]


def _readable_rows(src: sqlite3.Connection, table: str, columns: list[str]) -> Iterator[tuple[Any, ...]]:
    cols = ", ".join(columns)
    last = -(2**63)
    try:
        top = src.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0]
    except sqlite3.Error:
        top = None
    probes = SALVAGE_PROBES
    while True:
        try:
            for row in src.execute(f"SELECT {cols} FROM {table} WHERE rowid > ? ORDER BY rowid", (last,)):
                last = row[0]
                yield tuple(row)
            return
        except sqlite3.Error:
            pass
        found = False  # a damaged page: look the following ids up one by one until one reads again
        last = max(last, 0)
        misses = 0  # with the largest id unknown, give up after a long run of ids that read nothing
        while probes > 0 and (top is None or last < top) and (top is not None or misses < SALVAGE_GAP):
            probes -= 1
            misses += 1
            last += 1
            try:
                row = src.execute(f"SELECT {cols} FROM {table} WHERE rowid = ?", (last,)).fetchone()
            except sqlite3.Error:
                continue
            if row is not None:
                found = True
                yield tuple(row)
                break
        if not found:
            return


class PartialSaver:
    """Collects a streaming reply and saves it with :meth:`HistoryStore.update_partial` at most once
    per ``interval_s``, so a crash loses at most that much and the database sees one UPDATE a second."""

    def __init__(self, store: HistoryStore, message_id: int, interval_s: float = 1.0) -> None:
        self.store, self.message_id, self.interval_s = store, message_id, interval_s
        self.answer = ""
        self.thoughts = ""
        self._saved_at = time.monotonic()
        self.saves = 0

    def add(self, kind: str, text: str) -> None:
        if kind == "thought":
            self.thoughts += text
        else:
            self.answer += text
        if time.monotonic() - self._saved_at >= self.interval_s:
            self.flush()

    def flush(self) -> None:
        self.store.update_partial(self.message_id, self.answer, self.thoughts)
        self._saved_at = time.monotonic()
        self.saves += 1


def _hashes(messages: Iterable[Message]) -> set[str]:
    return {a.sha256 for m in messages for a in m.attachments}


def _exported(m: Message) -> dict[str, Any]:
    data = asdict(m)
    data["attachments"] = [
        {"kind": str(a.kind), "mime": a.mime, "name": a.name, "sha256": a.sha256,
         "file": f"attachments/{a.sha256}{Path(a.path).suffix}"}
        for a in m.attachments
    ]  # fmt: skip
    return data


def _markdown_attachment(a: Attachment) -> str:
    """A Markdown line for an attachment: an image (alt text = its name, escaped) or a link to audio."""
    label = re.sub(r"([\\`*_{}\[\]()#+\-.!<>|])", r"\\\1", a.display_name) or "attachment"
    target = f"attachments/{a.sha256}{Path(a.path).suffix}"
    return f"![{label}]({target})" if a.kind == "image" else f"[Audio: {label}]({target})"


def _title_from(text: str) -> str:
    line = " ".join(text.split())
    return (line[:57] + "…") if len(line) > 60 else (line or DEFAULT_TITLE)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")
