"""Chat exports and imports: a conversation as Markdown or JSON, every conversation as JSON, and a JSON
export read back (the window's File menu and ``gemmadesk chats export|import``).

Formats (``version`` 1; a newer version is refused with a sentence saying to update GemmaDesk):

- one conversation: ``{"format": "gemmadesk-conversation", "version": 1, "conversation": {...},
  "messages": [...]}`` (:meth:`HistoryStore.export_json`);
- all of them: ``{"format": "gemmadesk-conversations", "version": 1, "exported_at": ...,
  "conversations": [{"conversation": {...}, "messages": [...]}, ...]}``.

An import is hostile input until checked: the file must be a regular file (a named pipe is refused, never
waited on) of at most :data:`MAX_IMPORT_BYTES`; the JSON must have the shape above, with bounded counts and
text sizes, known roles, no NUL characters; metadata that does not fit (settings, statistics) is dropped.
Anything wrong refuses the whole file with one sentence naming where. Imported conversations always get
new ids: an import never changes or replaces a chat that exists, and a conversation that is already there
(same title and start time, e.g. the same file imported twice) is skipped. Ids, file paths and any other
fields in the file are ignored.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gemmadesk.core.history import DEFAULT_TITLE, HistoryError, HistoryStore
from gemmadesk.core.paths import atomic_write_text

FORMAT_ONE = "gemmadesk-conversation"
FORMAT_ALL = "gemmadesk-conversations"
EXPORT_VERSION = 1
MAX_IMPORT_BYTES = 64 * 2**20
MAX_CONVERSATIONS = 10_000
MAX_MESSAGES = 200_000  # in one file, all conversations together
MAX_TEXT_CHARS = 1_000_000  # a message's text or thoughts, a system prompt
MAX_TITLE_CHARS = 200  # longer titles are cut
MAX_NAME_CHARS = 200  # a model name
MAX_META_KEYS = 64  # settings / statistics of a reply
LATEST_TIME = 4_102_444_800.0  # 2100-01-01: later (or negative, or not a number) becomes the import's time

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
ROLES = ("user", "assistant")
STATUSES = ("complete", "partial")


class ChatImportError(HistoryError):
    """The file is not a chat export GemmaDesk can import; ``str()`` says why and where."""


@dataclass(frozen=True)
class ImportResult:
    conversation_ids: list[int]  # the new conversations, in the file's order
    skipped: int  # conversations that were already in the history

    def summary(self) -> str:
        n = len(self.conversation_ids)
        text = f"Imported {n} conversation{'s' if n != 1 else ''}"
        if self.skipped:
            text += f"; {self.skipped} {'was' if self.skipped == 1 else 'were'} already in your chats and skipped"
        return text + "."


# ----------------------------------------------------------------------------------------------- export
def export_all(store: HistoryStore) -> dict[str, Any]:
    """Every conversation, oldest first, as one JSON-ready object."""
    conversations = sorted(store.list_conversations(), key=lambda c: (c.created_at, c.id))
    return {
        "format": FORMAT_ALL,
        "version": EXPORT_VERSION,
        "exported_at": time.time(),
        "conversations": [
            {key: value for key, value in store.export_json(c.id).items() if key in ("conversation", "messages")}
            for c in conversations
        ],
    }


def export_text(store: HistoryStore, conversation_id: int | None, fmt: str) -> str:
    """``fmt`` "md" or "json" for one conversation; ``conversation_id`` None: every conversation (JSON)."""
    if conversation_id is None:
        return json.dumps(export_all(store), ensure_ascii=False, indent=1)
    if fmt == "md":
        return store.export_markdown(conversation_id)
    return json.dumps(store.export_json(conversation_id), ensure_ascii=False, indent=1)


def write_export(store: HistoryStore, path: Path, conversation_id: int | None, fmt: str) -> int:
    """Write an export to ``path`` (the user's choice) atomically; returns its size in bytes."""
    text = export_text(store, conversation_id, fmt)
    atomic_write_text(Path(path), text)
    return len(text.encode("utf-8"))


def export_file_name(title: str, fmt: str) -> str:
    """A file name for an export: the title's letters, digits, spaces and dashes, then ``.md``/``.json``."""
    stem = re.sub(r"[^\w\- ]+", "", title, flags=re.UNICODE).strip()[:60].strip() or "chat"
    return f"{stem}.{'md' if fmt == 'md' else 'json'}"


# ----------------------------------------------------------------------------------------------- import
def read_export(path: Path) -> Any:
    """The JSON in ``path``: a regular file of at most :data:`MAX_IMPORT_BYTES` (opened without blocking, so
    a named pipe is refused rather than waited on)."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise ChatImportError(f"{path} cannot be read ({exc.strerror or exc}).") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ChatImportError(f"{path} is not a regular file, so it was not imported.")
        if info.st_size > MAX_IMPORT_BYTES:
            raise ChatImportError(f"{path} is larger than {MAX_IMPORT_BYTES // 2**20} MiB, more than a chat export "
                                  "GemmaDesk imports.")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            raw = fh.read(MAX_IMPORT_BYTES + 1)
    finally:
        os.close(fd)
    if len(raw) > MAX_IMPORT_BYTES:
        raise ChatImportError(f"{path} grew beyond {MAX_IMPORT_BYTES // 2**20} MiB while it was read.")
    try:
        return json.loads(raw.decode("utf-8-sig"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc).split(":")[0]
        raise ChatImportError(f"{path} is not a GemmaDesk chat export (not valid JSON: {why}).") from exc


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


Row = dict[str, Any]


def parse_export(data: Any) -> list[tuple[Row, list[Row]]]:
    """The conversations of an export as (conversation columns, [message columns]) for
    :meth:`HistoryStore.add_conversations`; raises :class:`ChatImportError`."""
    if not isinstance(data, dict) or data.get("format") not in (FORMAT_ONE, FORMAT_ALL):
        raise ChatImportError("This file is not a GemmaDesk chat export (no \"format\" of an export).")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ChatImportError("This chat export has no valid \"version\".")
    if version > EXPORT_VERSION:
        raise ChatImportError(f"This chat export was written by a newer GemmaDesk (format version {version}); "
                              "update GemmaDesk to import it.")
    if data["format"] == FORMAT_ONE:
        items: Any = [data]
    else:
        items = data.get("conversations")
        if not isinstance(items, list):
            raise ChatImportError("This chat export has no list of conversations.")
    if len(items) > MAX_CONVERSATIONS:
        raise ChatImportError(f"This chat export has {len(items):,} conversations; GemmaDesk imports at most "
                              f"{MAX_CONVERSATIONS:,} from one file.")
    now = time.time()
    out: list[tuple[Row, list[Row]]] = []
    total = 0
    for i, item in enumerate(items, 1):
        where = f"conversation {i}"
        if not isinstance(item, dict) or not isinstance(item.get("conversation"), dict):
            raise ChatImportError(f"The chat export's {where} is not a conversation.")
        messages = item.get("messages", [])
        if not isinstance(messages, list):
            raise ChatImportError(f"The chat export's {where} has no list of messages.")
        total += len(messages)
        if total > MAX_MESSAGES:
            raise ChatImportError(f"This chat export has more than {MAX_MESSAGES:,} messages; GemmaDesk imports at "
                                  "most that many from one file.")
        conv = _conversation(item["conversation"], where, now)
        rows = [_message(m, f"{where}, message {j}", conv["created_at"]) for j, m in enumerate(messages, 1)]
        if rows:
            conv["updated_at"] = max(conv["updated_at"], max(r["updated_at"] for r in rows))
        out.append((conv, rows))
    return out


def import_file(store: HistoryStore, path: Path) -> ImportResult:
    """Read, check and add the conversations of a chat export (all or none); see the module docstring."""
    items = parse_export(read_export(path))
    existing = {(c.title, c.created_at) for c in store.list_conversations()}
    new = [(conv, rows) for conv, rows in items if (conv["title"], conv["created_at"]) not in existing]
    ids = store.add_conversations(new) if new else []
    return ImportResult(ids, len(items) - len(new))


def _conversation(raw: dict[str, Any], where: str, now: float) -> Row:
    title = _text(raw.get("title", DEFAULT_TITLE), f"{where}: the title", MAX_TEXT_CHARS)
    title = " ".join(_CONTROL.sub(" ", title).split())[:MAX_TITLE_CHARS] or DEFAULT_TITLE
    created = _time(raw.get("created_at"), now)
    return {
        "title": title,
        "created_at": created,
        "updated_at": max(created, _time(raw.get("updated_at"), created)),
        "system_prompt": _text(raw.get("system_prompt", ""), f"{where}: the system prompt", MAX_TEXT_CHARS),
        "model": _name(raw.get("model")),
    }


def _message(raw: Any, where: str, default_time: float) -> Row:
    if not isinstance(raw, dict):
        raise ChatImportError(f"The chat export's {where} is not a message.")
    role = raw.get("role")
    if role not in ROLES:
        raise ChatImportError(f"The chat export's {where} has the role {str(role)[:20]!r}; only \"user\" and "
                              "\"assistant\" messages can be imported.")
    status = raw.get("status", "complete")
    created = _time(raw.get("created_at"), default_time)
    return {
        "role": role,
        "content": _text(raw.get("content", ""), f"{where}: the text", MAX_TEXT_CHARS),
        "thoughts": _text(raw.get("thoughts", ""), f"{where}: the thoughts", MAX_TEXT_CHARS),
        "model": _name(raw.get("model")),
        "settings_json": json.dumps(_meta(raw.get("settings"))),
        "stats_json": json.dumps(_meta(raw.get("stats"))),
        "status": status if status in STATUSES else "complete",
        "created_at": created,
        "updated_at": max(created, _time(raw.get("updated_at"), created)),
    }


def _text(value: Any, what: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ChatImportError(f"In the chat export, {what} is not text.")
    if len(value) > limit:
        raise ChatImportError(f"In the chat export, {what} is longer than {limit:,} characters.")
    if "\x00" in value:
        raise ChatImportError(f"In the chat export, {what} contains a NUL character.")
    return value


def _name(value: Any) -> str | None:
    if not isinstance(value, str) or not value.strip() or "\x00" in value:
        return None
    return " ".join(_CONTROL.sub(" ", value).split())[:MAX_NAME_CHARS]


def _time(value: Any, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    number = float(value)
    return number if math.isfinite(number) and 0 <= number <= LATEST_TIME else default


def _meta(value: Any) -> dict[str, Any]:
    """Settings or statistics: short keys with plain values; anything else is dropped."""
    if not isinstance(value, dict):
        return {}
    out: dict[str, Any] = {}
    for key, item in list(value.items())[:MAX_META_KEYS]:
        if not isinstance(key, str) or len(key) > 64 or "\x00" in key:
            continue
        plain = item is None or isinstance(item, bool) or (isinstance(item, int) and abs(item) <= 2**53)
        number = isinstance(item, float) and math.isfinite(item)
        text = isinstance(item, str) and len(item) <= 1000 and "\x00" not in item
        if plain or number or text:
            out[key] = item
    return out
