"""GemmaDesk's command line: the same core as the app, for scripts, tests and benchmarks.

Each sub-command lives in its own module of this package and exposes ``register(subparsers)``, which
adds its parser and sets ``func`` (taking the parsed namespace, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from gemmadesk import __version__

# Modules providing sub-commands, in the order `--help` lists them. A module that is missing or fails
# to import is reported, never fatal for the other commands.
COMMAND_MODULES = ("hw", "models", "store", "chat", "chats", "serve", "remote")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gemmadesk",
        description="Run Google's Gemma 4 QAT models locally. With no command, opens the app.",
    )
    parser.add_argument("--version", action="version", version=f"GemmaDesk {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"gemmadesk.cli.{name}")
        except ImportError as exc:
            # A broken optional dependency must not take the other commands down (e.g. `hw` on a
            # machine whose huggingface_hub is too old for `pull`).
            logging.getLogger(__name__).debug("command module %s unavailable", name, exc_info=True)
            broken = sub.add_parser(name, help=f"(unavailable: {exc})")
            broken.set_defaults(func=lambda _args, _exc=exc: _unavailable(_exc))
            continue
        module.register(sub)
    gui = sub.add_parser("gui", help="open the desktop app (Qt options such as -platform pass through)")
    gui.add_argument("qt_args", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    gui.set_defaults(func=_run_gui)
    return parser


def _unavailable(exc: ImportError) -> int:
    print(f"error: this command cannot run here: {exc}. Reinstall GemmaDesk's dependencies.", file=sys.stderr)
    return 1


def _run_gui(args: argparse.Namespace) -> int:
    from gemmadesk.ui.app import main as gui_main

    return gui_main(list(args.qt_args))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    from gemmadesk.core.crash import EXIT_INTERNAL_ERROR, install_excepthooks, record
    from gemmadesk.core.paths import app_paths

    log_file = app_paths().log_file
    # Last chance, for errors nobody caught: the traceback goes to the log file, one line to the terminal.
    uninstall = install_excepthooks(lambda line: print(f"error: {line}", file=sys.stderr), log_file)
    try:
        return int(func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        message = _user_message(exc)
        if message is not None:
            print(f"error: {message}", file=sys.stderr)
            return 1
        print(f"error: {record((type(exc), exc, exc.__traceback__), log_file, f'`{args.command}`')}", file=sys.stderr)
        return EXIT_INTERNAL_ERROR
    finally:
        uninstall()


# Exceptions whose text is already one sentence for a person (module, class): printed as `error: ...`,
# never as a traceback. Looked up in sys.modules, so the check imports nothing.
_USER_ERRORS = (
    ("gemmadesk.core.history", "HistoryError"),
    ("gemmadesk.core.store", "StoreError"),
    ("gemmadesk.core.versioned_file", "NewerFileError"),
    ("gemmadesk.core.engine.errors", "EngineError"),
)


def _user_message(exc: BaseException) -> str | None:
    for module, name in _USER_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return str(exc)
    return None


if __name__ == "__main__":
    sys.exit(main())
