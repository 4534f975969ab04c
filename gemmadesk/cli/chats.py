"""``gemmadesk chats list | search | export | import``: the saved conversations, from the terminal.

The same history and the same export format as the app's File menu (:mod:`gemmadesk.core.history_io`):
``export ID -o FILE.md`` (Markdown) or ``FILE.json``, ``export --all -o FILE.json``; ``import FILE.json``
adds the conversations of an export as new chats (nothing existing is changed; chats already there are
skipped).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from gemmadesk.cli.common import print_json


def register(sub: Any) -> None:
    chats = sub.add_parser("chats", help="list, search, export and import saved conversations", description=__doc__)
    actions = chats.add_subparsers(dest="chats_command", metavar="ACTION", required=True)
    p = actions.add_parser("list", help="list conversations, most recent first")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_list)
    p = actions.add_parser("search", help="full-text search of every message")
    p.add_argument("text")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_search)
    p = actions.add_parser("export", help="export a conversation (Markdown or JSON) or all of them (JSON)")
    p.add_argument("id", nargs="?", type=int, help="conversation id (see `gemmadesk chats list`)")
    p.add_argument("--all", action="store_true", help="every conversation, as one JSON file")
    p.add_argument("--format", choices=("md", "json"), help="default: from the file name, else Markdown")
    p.add_argument("-o", "--output", type=Path, help="file to write (default: print to the terminal)")
    p.set_defaults(func=run_export)
    p = actions.add_parser("import", help="add the conversations of a JSON export as new chats")
    p.add_argument("path", type=Path)
    p.set_defaults(func=run_import)


def _store() -> Any:
    from gemmadesk.core.history import HistoryStore

    store = HistoryStore()
    for notice in store.take_notices():
        print(f"warning: {notice}", file=sys.stderr)
    return store


def run_list(args: argparse.Namespace) -> int:
    store = _store()
    try:
        convs = store.list_conversations()
    finally:
        store.close()
    if args.json:
        print_json([{"id": c.id, "title": c.title, "updated_at": c.updated_at} for c in convs])
    for c in convs if not args.json else []:
        print(f"{c.id:6}  {datetime.fromtimestamp(c.updated_at):%Y-%m-%d %H:%M}  {c.title}")
    if not convs and not args.json:
        print("No saved conversations yet.")
    return 0


def run_search(args: argparse.Namespace) -> int:
    store = _store()
    try:
        hits = store.search(args.text, limit=200)
    finally:
        store.close()
    if args.json:
        print_json([{"conversation_id": h.conversation_id, "title": h.conversation_title, "message_id": h.message_id,
                     "role": h.role, "snippet": h.snippet} for h in hits])
        return 0
    for h in hits:
        where = "title" if h.message_id is None else h.role
        print(f"{h.conversation_id:6}  [{where}] {h.conversation_title}: {h.snippet}")
    return 0 if hits else 1


def run_export(args: argparse.Namespace) -> int:
    from gemmadesk.core.history_io import export_text, write_export

    if (args.id is None) == (not args.all):
        print("error: give a conversation id or --all", file=sys.stderr)
        return 2
    fmt = args.format or ("json" if args.all or (args.output and args.output.suffix.lower() == ".json") else "md")
    if args.all and fmt != "json":
        print("error: all conversations are exported as JSON (--format json)", file=sys.stderr)
        return 2
    store = _store()
    try:
        if args.output is None:
            sys.stdout.write(export_text(store, args.id, fmt) + "\n")
            return 0
        size = write_export(store, args.output, args.id, fmt)
    finally:
        store.close()
    print(f"Wrote {args.output} ({size:,} bytes).", file=sys.stderr)
    return 0


def run_import(args: argparse.Namespace) -> int:
    from gemmadesk.core.history_io import import_file

    store = _store()
    try:
        result = import_file(store, args.path)
    finally:
        store.close()
    print(result.summary())
    return 0
