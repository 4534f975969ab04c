"""`gemmadesk pull | list | rm | import`: download, list, remove and import models from the terminal.

MODEL is a catalog id or what ``Catalog.find()`` accepts (``e2b``, ``12b:ud-q4_k_xl``), or any GGUF on the
Hub as ``ORG/REPO/FILE.gguf``. A pull that is interrupted (Ctrl+C, closed terminal, killed) keeps its
partial file: run the same command again to resume.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from gemmadesk.cli.common import add_hardware_arg, load_hardware, print_json
from gemmadesk.core.catalog import CatalogEntry
from gemmadesk.core.catalog_refresh import current_catalog
from gemmadesk.core.downloads import (
    DownloadCancelled,
    DownloadError,
    DownloadPaused,
    Progress,
    download,
    hub_file_entry,
    preflight,
)
from gemmadesk.core.fit import FitOptions
from gemmadesk.core.store import InstalledModel, ModelStore, StoreError
from gemmadesk.core.units import human_bytes


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("pull", help="download a model (resumable, verified)")
    p.add_argument("model", metavar="MODEL", help="catalog id, SIZE[:FORMAT] (e.g. e2b, 12b:ud-q4_k_xl), "
                   "or ORG/REPO/FILE.gguf")
    p.add_argument("--format", help="quantization format, e.g. Q4_0 or UD-Q4_K_XL")
    p.add_argument("--revision", help="a branch, tag or commit instead of the catalog's pinned revision")
    p.add_argument("--mmproj", action="store_true", help="also download the vision projector (images)")
    p.add_argument("--yes", action="store_true", help="download even if it will not run on this machine")
    p.add_argument("--json", action="store_true", help="progress and result as JSON lines on stdout")
    add_hardware_arg(p)
    p.set_defaults(func=run_pull)

    p = sub.add_parser("list", help="list installed models")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_list)

    p = sub.add_parser("rm", help="remove an installed model (deletes downloaded files)")
    p.add_argument("model", metavar="MODEL", help="installed model id (see `gemmadesk list`)")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=run_rm)

    p = sub.add_parser("import", help="register a GGUF you already have (it is not copied)")
    p.add_argument("path", type=Path, metavar="PATH")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run_import)


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def find_entry(model: str, fmt: str | None = None, revision: str | None = None) -> CatalogEntry:
    """MODEL as the catalog knows it, or ORG/REPO/FILE.gguf for any Hub file. Raises KeyError (with the
    message as its argument) for an unknown model or a name that is not safe to download."""
    if model.count("/") >= 2 and model.lower().endswith(".gguf"):
        org, repo, filename = model.split("/", 2)
        try:
            return hub_file_entry(f"{org}/{repo}", filename, revision or "main")
        except DownloadError as exc:
            raise KeyError(str(exc)) from exc
    catalog = current_catalog()
    return catalog.find(f"{model}:{fmt}" if fmt and ":" not in model else model)


def _model_dict(m: InstalledModel) -> dict[str, object]:
    return {
        "id": m.id, "entry_id": m.entry_id, "path": str(m.path), "size_bytes": m.size_bytes,
        "sha256": m.sha256,
        "mmproj_path": str(m.mmproj_path) if m.mmproj_path else None, "source": m.source, "status": m.status,
        "display_name": m.display_name,
    }


class _Bar:
    """A one-line terminal progress bar on stderr, redrawn at most 10 times a second."""

    def __init__(self) -> None:
        self._last = 0.0

    def __call__(self, p: Progress) -> None:
        now = time.monotonic()
        final = p.state.value in ("done", "failed", "cancelled", "paused")
        if not final and now - self._last < 0.1:
            return
        self._last = now
        frac = p.bytes_done / p.bytes_total if p.bytes_total else 0.0
        filled = int(frac * 30)
        eta = f" ETA {int(p.eta_s) // 60}:{int(p.eta_s) % 60:02d}" if p.eta_s is not None else ""
        speed = f" {human_bytes(int(p.speed_bps))}/s" if p.speed_bps else ""
        line = (f"\r{p.filename[:40]:40} [{'#' * filled}{'.' * (30 - filled)}] {frac * 100:5.1f}% "
                f"{human_bytes(p.bytes_done)}/{human_bytes(p.bytes_total)}{speed}{eta} {p.state.value:<11}")
        sys.stderr.write(line)
        if final:
            sys.stderr.write("\n")
        sys.stderr.flush()


def _json_progress(p: Progress) -> None:
    print(json.dumps({"event": "progress", "entry_id": p.entry_id, "filename": p.filename,
                      "state": p.state.value, "bytes_done": p.bytes_done, "bytes_total": p.bytes_total,
                      "speed_bps": round(p.speed_bps, 1), "eta_s": p.eta_s, "error": p.error}), flush=True)


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def run_pull(args: argparse.Namespace) -> int:
    try:
        entry = find_entry(args.model, args.format, args.revision)
    except KeyError as exc:
        return _error(str(exc.args[0]))
    store = ModelStore()
    if entry.size != "custom":
        check = preflight(entry, load_hardware(args), FitOptions(with_mmproj=args.mmproj), store)
        for message in check.messages:
            print(message, file=sys.stderr)
        if not check.ok:
            return _error("not enough disk space")
        if not check.will_run and not args.yes and not _confirm("Download it anyway?"):
            return _error("not downloaded (it will not run here); pass --yes to download anyway")
    try:
        model = download(entry, store, with_mmproj=args.mmproj, revision=args.revision,
                         on_progress=_json_progress if args.json else _Bar())
    except (DownloadPaused, DownloadCancelled) as exc:
        return _error(f"{exc}; run the same command again to resume")
    except DownloadError as exc:
        return _error(str(exc))
    except KeyboardInterrupt:
        print("\ninterrupted: the partial download is kept; run the same command again to resume",
              file=sys.stderr)
        return 130
    if args.json:
        print(json.dumps({"event": "installed", **_model_dict(model)}), flush=True)
    else:
        size = human_bytes(model.size_bytes)
        print(f"Installed {model.display_name}: {model.path} ({size}, sha256 verified)")
    return 0


def _warn_problems(store: ModelStore) -> None:
    for problem in store.problems:
        print(f"warning: {problem}", file=sys.stderr)
    store.problems.clear()


def run_list(args: argparse.Namespace) -> int:
    store = ModelStore()
    try:
        models = store.list()
    except (StoreError, OSError) as exc:
        return _error(str(exc))
    if store.refused:
        return _error(store.refused)
    _warn_problems(store)
    if args.json:
        print_json([_model_dict(m) for m in models])
        return 0
    if not models:
        print("No models installed. Try `gemmadesk pull e2b`.")
        return 0
    for m in models:
        flag = "" if m.status == "ok" else f"  [{m.status.upper()}]"
        print(f"{m.id:32} {human_bytes(m.size_bytes):>10}  {m.source:8}  {m.path}{flag}")
    return 0


def run_rm(args: argparse.Namespace) -> int:
    store = ModelStore()
    try:
        model = store.get(args.model)
    except KeyError as exc:
        return _error(str(exc.args[0]) if not store.refused else store.refused)
    _warn_problems(store)
    what = "delete" if model.owned else "forget (your file stays where it is)"
    if not args.yes and not _confirm(f"{what.capitalize()} {model.display_name} at {model.path}?"):
        return _error("not removed; pass --yes to remove without asking")
    try:
        removal = store.remove(model.id)
    except (StoreError, OSError) as exc:
        return _error(f"could not remove {model.id}: {exc}")
    print(f"Removed {model.id}" + (f"; deleted {', '.join(map(str, removal.deleted))}" if removal.deleted else ""))
    for path in removal.kept:
        print(f"Kept {path}: GemmaDesk did not create this file (or it was replaced), so it was left in place; "
              "delete it yourself if you no longer need it.")
    return 0


def run_import(args: argparse.Namespace) -> int:
    try:
        model = ModelStore().import_file(args.path)
    except (StoreError, OSError) as exc:
        return _error(f"cannot import {args.path}: {exc}")
    if args.json:
        print_json(_model_dict(model))
    else:
        kind = f"catalog model {model.entry_id}" if model.entry_id else "custom model"
        print(f"Imported {model.display_name} as {model.id} ({kind}): {model.path}")
    return 0
