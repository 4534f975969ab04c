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

Editing rules (decided here, the UI follows them):
- :meth:`HistoryStore.edit_user_message` changes a user message and deletes every later message of the
  conversation (the later replies answered the old text); the caller then generates a new reply.
- :meth:`HistoryStore.remove_last_reply` (for "regenerate") deletes the last assistant message.
- Thoughts are stored with the reply for display but :meth:`HistoryStore.chat_messages` (what is sent to
  the model) never includes them.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from gemmadesk.core.paths import app_paths
from gemmadesk.core.types import ChatMessage, Role

Status = Literal["complete", "partial"]
DEFAULT_TITLE = "New chat"


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


MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1, _v2, _v3)
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


@dataclass(frozen=True)
class SearchHit:
    conversation_id: int
    conversation_title: str
    message_id: int | None  # None: the conversation's title matched
    role: Role | None
    snippet: str


def _conversation(row: sqlite3.Row) -> Conversation:
    return Conversation(
        row["id"], row["title"], row["created_at"], row["updated_at"], row["system_prompt"], row["model"]
    )


def _message(row: sqlite3.Row) -> Message:
    return Message(
        id=row["id"], conversation_id=row["conversation_id"], role=row["role"], content=row["content"],
        thoughts=row["thoughts"], model=row["model"], settings=json.loads(row["settings_json"] or "{}"),
        stats=json.loads(row["stats_json"] or "{}"), status=row["status"], created_at=row["created_at"],
        updated_at=row["updated_at"] or row["created_at"],
    )  # fmt: skip


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

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else app_paths().history_db
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=5000")
            migrate(self._db)
        except sqlite3.DatabaseError as exc:
            raise HistoryError(f"The chat history at {self.path} cannot be opened: {exc}.") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, args).fetchall())

    # ------------------------------------------------------------ conversations
    def create_conversation(
        self, title: str = DEFAULT_TITLE, system_prompt: str = "", model: str | None = None
    ) -> Conversation:
        with self._tx() as db:
            now = time.time()
            cur = db.execute(
                "INSERT INTO conversations (title, created_at, updated_at, system_prompt, model) "
                "VALUES (?, ?, ?, ?, ?)",
                (title, now, now, system_prompt, model),
            )
        return self.get_conversation(int(cur.lastrowid or 0))

    def get_conversation(self, conversation_id: int) -> Conversation:
        rows = self._query("SELECT * FROM conversations WHERE id = ?", (conversation_id,))
        if not rows:
            raise HistoryError(f"Conversation {conversation_id} does not exist (it may have been deleted).")
        return _conversation(rows[0])

    def list_conversations(self) -> list[Conversation]:
        """Most recently active first."""
        rows = self._query("SELECT * FROM conversations ORDER BY updated_at DESC, id DESC")
        return [_conversation(r) for r in rows]

    def rename(self, conversation_id: int, title: str) -> None:
        self._update_conversation(conversation_id, "title", title.strip() or DEFAULT_TITLE)

    def set_system_prompt(self, conversation_id: int, text: str) -> None:
        self._update_conversation(conversation_id, "system_prompt", text)

    def set_model(self, conversation_id: int, model: str | None) -> None:
        self._update_conversation(conversation_id, "model", model)

    def _update_conversation(self, conversation_id: int, column: str, value: Any) -> None:
        with self._tx() as db:
            cur = db.execute(f"UPDATE conversations SET {column} = ? WHERE id = ?", (value, conversation_id))
        if cur.rowcount == 0:
            raise HistoryError(f"Conversation {conversation_id} does not exist (it may have been deleted).")

    def delete_conversation(self, conversation_id: int) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    # ----------------------------------------------------------------- messages
    def messages(self, conversation_id: int) -> list[Message]:
        rows = self._query("SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,))
        return [_message(r) for r in rows]

    def get_message(self, message_id: int) -> Message:
        rows = self._query("SELECT * FROM messages WHERE id = ?", (message_id,))
        if not rows:
            raise HistoryError(f"Message {message_id} does not exist (it may have been deleted).")
        return _message(rows[0])

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
    ) -> Message:
        """Append and commit one message. The first user message also titles a "New chat"."""
        now = time.time()
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO messages (conversation_id, role, content, thoughts, model, settings_json, "
                "stats_json, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (conversation_id, role, content, thoughts, model, json.dumps(settings or {}),
                 json.dumps(stats or {}), status, now, now),
            )  # fmt: skip
            db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conversation_id))
            if role == "user":
                db.execute(
                    "UPDATE conversations SET title = ? WHERE id = ? AND title = ?",
                    (_title_from(content), conversation_id, DEFAULT_TITLE),
                )
        return self.get_message(int(cur.lastrowid or 0))

    def begin_reply(
        self, conversation_id: int, model: str | None = None, settings: dict[str, Any] | None = None
    ) -> int:
        """Create the assistant row a streaming reply is saved into (status "partial" until finished)."""
        msg = self.add_message(conversation_id, "assistant", "", model=model, settings=settings, status="partial")
        return msg.id

    def update_partial(self, message_id: int, content: str, thoughts: str) -> None:
        """Save the reply so far: one UPDATE of one row (cheap enough to run every second)."""
        with self._tx() as db:
            db.execute(
                "UPDATE messages SET content = ?, thoughts = ?, updated_at = ? WHERE id = ?",
                (content, thoughts, time.time(), message_id),
            )

    def finish_reply(
        self,
        message_id: int,
        content: str,
        thoughts: str,
        stats: dict[str, Any] | None = None,
        status: Status = "complete",
    ) -> None:
        """Store the final reply. Use status "partial" for a reply the user stopped."""
        with self._tx() as db:
            db.execute(
                "UPDATE messages SET content = ?, thoughts = ?, stats_json = ?, status = ?, updated_at = ? "
                "WHERE id = ?",
                (content, thoughts, json.dumps(stats or {}), status, time.time(), message_id),
            )
            db.execute(
                "UPDATE conversations SET updated_at = ? "
                "WHERE id = (SELECT conversation_id FROM messages WHERE id = ?)",
                (time.time(), message_id),
            )

    def delete_message(self, message_id: int) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM messages WHERE id = ?", (message_id,))

    def edit_user_message(self, message_id: int, content: str) -> list[Message]:
        """Replace a user message's text and delete every later message of its conversation; returns
        the conversation's remaining messages (ending with the edited one)."""
        msg = self.get_message(message_id)
        if msg.role != "user":
            raise HistoryError("Only your own messages can be edited; regenerate a reply instead.")
        with self._tx() as db:
            db.execute(
                "UPDATE messages SET content = ?, updated_at = ? WHERE id = ?",
                (content, time.time(), message_id),
            )
            db.execute("DELETE FROM messages WHERE conversation_id = ? AND id > ?", (msg.conversation_id, message_id))
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
        out += [ChatMessage(m.role, m.content) for m in self.messages(conversation_id) if m.content.strip()]
        return out

    # ------------------------------------------------------------ search/export
    def search(self, text: str, limit: int = 50) -> list[SearchHit]:
        """Conversations whose title, and messages whose text, contain ``text`` (LIKE: case-insensitive
        for ASCII; ``%`` and ``_`` match literally). Title hits come first (``message_id`` None), then
        message hits, newest first."""
        needle = text.strip()
        if not needle:
            return []
        pattern = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        titles = self._query(
            "SELECT id, title FROM conversations WHERE title LIKE ? ESCAPE '\\' ORDER BY updated_at DESC LIMIT ?",
            (pattern, limit),
        )
        rows = self._query(
            "SELECT m.id AS mid, m.role, m.content, c.id AS cid, c.title FROM messages m "
            "JOIN conversations c ON c.id = m.conversation_id "
            "WHERE m.content LIKE ? ESCAPE '\\' ORDER BY m.id DESC LIMIT ?",
            (pattern, limit),
        )
        hits = [SearchHit(r["id"], r["title"], None, None, r["title"]) for r in titles]
        hits += [SearchHit(r["cid"], r["title"], r["mid"], r["role"], _snippet(r["content"], needle)) for r in rows]
        return hits[:limit]

    def export_json(self, conversation_id: int) -> dict[str, Any]:
        conv = self.get_conversation(conversation_id)
        return {
            "format": "gemmadesk-conversation",
            "version": 1,
            "conversation": asdict(conv),
            "messages": [asdict(m) for m in self.messages(conversation_id)],
        }

    def export_markdown(self, conversation_id: int) -> str:
        conv = self.get_conversation(conversation_id)
        lines = [f"# {conv.title}", "", f"_Exported from GemmaDesk on {_iso(time.time())}_", ""]
        if conv.system_prompt.strip():
            lines += ["## System", "", conv.system_prompt.strip(), ""]
        for m in self.messages(conversation_id):
            head = "## You" if m.role == "user" else f"## {m.model or 'Model'}"
            if m.status == "partial":
                head += " (stopped)"
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
            lines += [m.content.strip(), ""]
        return "\n".join(lines)


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


def _title_from(text: str) -> str:
    line = " ".join(text.split())
    return (line[:57] + "…") if len(line) > 60 else (line or DEFAULT_TITLE)


def _snippet(content: str, needle: str, width: int = 60) -> str:
    at = content.lower().find(needle.lower())
    if at < 0:
        return content[: 2 * width]
    start = max(0, at - width)
    return ("…" if start else "") + content[start : at + len(needle) + width] + "…" * (at + width < len(content))


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")
