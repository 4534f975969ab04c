"""The last-chance handler: an error nobody caught is written to ``gemmadesk.log`` and told in one line.

The window installs it for the GUI thread (``sys.excepthook``, which PySide6 also calls for exceptions
raised in slots) and for every other thread (``threading.excepthook``) and shows the line as a notice; the
command line prints the line and exits with :data:`EXIT_INTERNAL_ERROR`. The traceback itself only goes
to the log file, the one the Help menu points to.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

log = logging.getLogger("gemmadesk.crash")

EXIT_INTERNAL_ERROR = 70  # EX_SOFTWARE

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def summary(exc: BaseException, log_file: Path | None) -> str:
    """One sentence for the person: what broke and where the details are."""
    where = f" The details are in {log_file}." if log_file is not None else " The log file has the details."
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    what = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return f"Something went wrong inside GemmaDesk ({what}).{where}"


def _logged_to(log_file: Path) -> bool:
    target = str(log_file.resolve()) if log_file.exists() else str(log_file)
    for logger in (logging.getLogger(), logging.getLogger("gemmadesk")):
        for handler in logger.handlers:
            if str(getattr(handler, "baseFilename", "")) == target:
                return True
    return False


def record(exc_info: ExcInfo, log_file: Path | None, where: str = "") -> str:
    """Write the traceback to the log (through the app's log handler, or appended to ``log_file`` when no
    handler writes there: the command line logs to stderr only); returns :func:`summary`. Never raises:
    a failing log must not hide the error it reports."""
    exc = exc_info[1]
    place = f" in {where}" if where else ""
    try:
        if log_file is not None and not _logged_to(log_file):
            log_file.parent.mkdir(parents=True, exist_ok=True)
            with log_file.open("a", encoding="utf-8") as fh:
                fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} CRITICAL gemmadesk.crash: uncaught error{place}\n")
                fh.write("".join(traceback.format_exception(*exc_info)))
        else:
            log.critical("uncaught error%s", place, exc_info=exc_info)
    except Exception:  # pragma: no cover - a broken log file or disk
        pass
    return summary(exc, log_file)


def install_excepthooks(notify: Callable[[str], None], log_file: Path | None) -> Callable[[], None]:
    """Route uncaught errors of every thread to :func:`record`, then ``notify(line)`` (called on the
    failing thread: make it thread-safe). Returns a function that puts the previous hooks back."""
    previous_sys, previous_threading = sys.excepthook, threading.excepthook

    def on_error(exc_info: ExcInfo, where: str) -> None:
        line = record(exc_info, log_file, where)
        try:
            notify(line)
        except Exception:  # pragma: no cover
            log.exception("could not show the error notice")

    def sys_hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            previous_sys(exc_type, exc, tb)
            return
        on_error((exc_type, exc, tb), "the main thread")

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        name = args.thread.name if args.thread is not None else "a thread"
        on_error((args.exc_type, args.exc_value, args.exc_traceback), f"thread {name}")

    sys.excepthook = sys_hook
    threading.excepthook = thread_hook

    def uninstall() -> None:
        sys.excepthook, threading.excepthook = previous_sys, previous_threading

    return uninstall
