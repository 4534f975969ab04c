"""UI test fixtures: machines as data, and a guard that fails any test leaving Qt threads running."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from PySide6.QtCore import QThread, QThreadPool

from gemmadesk.core.hardware import Hardware
from tests.ui import hardware_fixtures as hwf


@pytest.fixture(autouse=True)
def no_dangling_threads(monkeypatch: pytest.MonkeyPatch, qapp: object) -> Iterator[None]:
    """Like napari's ``_dangling_qthreads``: every QThread a test starts must be finished at teardown,
    and the global pool must be idle (a job still running after its window closed is a bug)."""
    started: list[QThread] = []
    original = QThread.start

    def tracking_start(self: QThread, *args: Any) -> None:
        started.append(self)
        original(self, *args)

    monkeypatch.setattr(QThread, "start", tracking_start)
    yield
    running = [t for t in started if _alive(t) and t.isRunning()]
    pool_busy = QThreadPool.globalInstance().activeThreadCount()
    QThreadPool.globalInstance().waitForDone(30000)
    for thread in running:  # do not let one test's leak crash the next one
        thread.quit()
        thread.wait(30000)
    assert not running, f"QThreads still running after the test: {running}"
    assert pool_busy == 0, f"{pool_busy} thread-pool job(s) still running after the test"


def _alive(thread: QThread) -> bool:
    try:
        thread.objectName()
    except RuntimeError:  # the C++ object was deleted: it cannot be running
        return False
    return True


@pytest.fixture
def window(qtbot, laptop_8gb: Hardware):  # type: ignore[no-untyped-def]
    """The main window on a described 8 GB laptop, showing the chat (no model loaded)."""
    from gemmadesk.ui.main_window import MainWindow

    w = MainWindow(hardware=laptop_8gb)
    qtbot.addWidget(w)
    w.show()
    w.stack.setCurrentWidget(w.chat_view)
    return w


@pytest.fixture
def laptop_8gb() -> Hardware:
    return Hardware.from_dict(hwf.LAPTOP_8GB)


@pytest.fixture
def desktop_24gb_nvidia() -> Hardware:
    return Hardware.from_dict(hwf.DESKTOP_24GB_NVIDIA)


@pytest.fixture
def mac_64gb() -> Hardware:
    return Hardware.from_dict(hwf.MAC_64GB)


