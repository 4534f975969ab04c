"""The one-off job runner: results and errors come back on the GUI thread; once closed (the window is
closing) it starts nothing more. Before, a result delivered after the window had waited for the pool could
start a new job (a listing, a partial-download check) that was still running when the window was gone."""

from __future__ import annotations

import threading

from PySide6.QtCore import QThread

from gemmadesk.ui.tasks import TaskRunner


def test_results_and_errors_arrive_on_the_gui_thread(qtbot) -> None:  # type: ignore[no-untyped-def]
    runner = TaskRunner()
    seen: list[tuple[str, object, bool]] = []
    gui = QThread.currentThread()
    runner.run(lambda: 41 + 1, lambda r: seen.append(("done", r, QThread.currentThread() is gui)))

    def boom() -> None:
        raise ValueError("bad file")

    runner.run(boom, on_error=lambda e: seen.append(("error", str(e.exc), QThread.currentThread() is gui)))
    qtbot.waitUntil(lambda: len(seen) == 2, timeout=10_000)
    assert sorted(seen, key=str) == [("done", 42, True), ("error", "bad file", True)]
    assert runner.pending == 0


def test_a_closed_runner_starts_nothing_more(qtbot) -> None:  # type: ignore[no-untyped-def]
    runner = TaskRunner()
    release = threading.Event()
    ran: list[str] = []
    def first() -> None:
        release.wait(10)
        ran.append("first")

    runner.run(first)
    release.set()
    assert runner.close()
    runner.run(lambda: ran.append("after close"), lambda _r: ran.append("delivered"))
    qtbot.wait(200)
    assert ran == ["first"], "a job asked for after close() never runs"
    assert runner.pending == 0
