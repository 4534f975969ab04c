"""``--demo-state``: drive the real window into one state and save a screenshot (scripts/screenshots.py).

States: ``first-run`` (the fit list), ``downloading`` (a download running, started by clicking the
panel's button), ``chatting`` (the installed model loaded and a prompt sent through the composer; the
screenshot is taken when the reply finished). Each waits for its condition by polling, saves the PNG
and quits; a state that is not reached in ``timeout_s`` saves what is on screen and exits with 1.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from gemmadesk.ui.main_window import MainWindow

log = logging.getLogger(__name__)


class DemoDriver:
    def __init__(self, window: MainWindow, state: str, shot: Path, prompt: str, timeout_s: float = 240) -> None:
        self.window, self.state, self.shot, self.prompt = window, state, shot, prompt
        self.deadline = time.monotonic() + timeout_s
        self.exit_code = 0
        self.steps: list[tuple[Callable[[], bool], Callable[[], None]]] = self._plan()

    def _plan(self) -> list[tuple[Callable[[], bool], Callable[[], None]]]:
        w = self.window
        panel = w.setup_page.panel
        table_ready = lambda: w.setup.model.rowCount() > 0  # noqa: E731
        if self.state == "first-run":
            return [(table_ready, lambda: None)]
        if self.state == "downloading":
            return [
                (table_ready, self._start_download),
                (lambda: panel.bar.value() >= 60 and panel.pause_button.isVisible(), lambda: None),
            ]
        return [
            (lambda: w.chat.report is not None, lambda: self._type(self.prompt)),
            (lambda: not w.chat.busy and bool(w.chat.transcript.messages()[-1].stats), lambda: None),
        ]

    def _start_download(self) -> None:
        self.window.show_setup()
        self.window.setup_page.panel.download_button.click()

    def _type(self, text: str) -> None:
        edit = self.window.chat_view.composer.edit
        edit.setPlainText(text)
        self.window.chat_view.composer.send_button.click()

    def start(self) -> None:
        QTimer.singleShot(200, self._tick)

    def _tick(self) -> None:
        if self.steps and self.steps[0][0]():
            _, action = self.steps.pop(0)
            action()
        if not self.steps:
            QTimer.singleShot(600, self._finish)  # let the last repaint land
            return
        if time.monotonic() > self.deadline:
            log.error("demo state %s not reached in time", self.state)
            self.exit_code = 1
            self._finish()
            return
        QTimer.singleShot(100, self._tick)

    def _finish(self) -> None:
        self.shot.parent.mkdir(parents=True, exist_ok=True)
        self.window.grab().save(str(self.shot))
        log.info("saved %s", self.shot)
        self.window.close()
        QApplication.exit(self.exit_code)
