"""Helpers the window tests share: the real main window with its model loaded, and a real SQLite lock held by
"another process" on the history database."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from gemmadesk.core.paths import app_paths
from gemmadesk.ui.main_window import MainWindow


def open_loaded_window(qtbot, timeout_ms: int) -> MainWindow:  # type: ignore[no-untyped-def]
    """The main window as the user starts it (real hardware probe), once its last model has loaded."""
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.chat.report is not None, timeout=timeout_ms)
    return window


@contextmanager
def history_locked() -> Iterator[threading.Event]:
    """Another connection holds the history database in an exclusive transaction (a real SQLite lock) until
    the block ends or the yielded event is set."""
    release, locked = threading.Event(), threading.Event()

    def hold() -> None:
        db = sqlite3.connect(app_paths().history_db, isolation_level=None)
        db.execute("BEGIN EXCLUSIVE")
        locked.set()
        release.wait(60)
        db.execute("ROLLBACK")
        db.close()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert locked.wait(10)
    try:
        yield release
    finally:
        release.set()
        thread.join(10)
