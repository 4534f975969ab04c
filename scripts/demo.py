"""Drive the real window into one state and save a screenshot (run by scripts/screenshots.py).

    python scripts/demo.py --demo-state STATE --screenshot FILE [--demo-prompt TEXT] [--hardware FILE]

The app is built exactly as ``gemmadesk`` builds it (:func:`gemmadesk.ui.app.build`); this driver only
clicks and types. It lives here, not in the package: it is not part of the product.

States: ``first-run`` (the fit list), ``downloading`` (a download running, started by clicking the
panel's button), ``chatting`` (the installed model loaded and a prompt sent through the composer; the
screenshot is taken when the reply finished), ``settings`` (the loaded chat with its Settings panel open
and a preset chosen), ``new-chat`` (a new, empty chat: its hint), ``models`` (the Models page's Installed
tab), ``search`` (``--demo-prompt`` typed into the chat search and the first hit opened: the matching
message framed, its words marked), ``serving`` (Server → Serve this model switched on, on a free port,
and one API request answered: the status bar's URL and count), ``attachments`` (two pictures attached
the way a drop attaches them and sent with the prompt; when the reply finished, a picture and a recording
wait in the composer). Each waits for its condition by polling, saves the PNG and quits; a state that is
not reached in ``timeout_s`` saves what is on screen and exits with 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from gemmadesk.ui.main_window import MainWindow  # noqa: E402

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
        loaded = lambda: w.chat.report is not None  # noqa: E731
        if self.state == "settings":
            return [(loaded, self._settings), (lambda: w.chat_view.settings_panel.isVisible(), lambda: None)]
        if self.state == "new-chat":
            return [(loaded, w.new_chat), (lambda: w.chat_view.messages.hint.isVisible(), lambda: None)]
        if self.state == "models":
            return [(lambda: table_ready() and bool(w.installed.controller.rows), w.installed.show)]
        if self.state == "search":
            return [(loaded, self._search), (lambda: bool(w.chat_view.messages._match[0]), lambda: None)]
        if self.state == "serving":
            from gemmadesk.ui.serve_controller import ServeOptions, ServeState

            w.serve.options = ServeOptions(port=0)  # a free port (the status bar's URL says which)
            on = lambda: w.serve.status.state == ServeState.ON  # noqa: E731
            return [
                (loaded, lambda: w.serve.set_enabled(True)),
                (on, self._api_request),
                (lambda: on() and w.serve.status.requests >= 1, lambda: None),
            ]
        if self.state == "attachments":
            pending = lambda: w.chat_view.composer.pending_attachments()  # noqa: E731
            return [
                (lambda: w.chat.report is not None, self._attach_first),
                (lambda: len(pending()) == 2, lambda: self._type(self.prompt)),
                (lambda: not w.chat.busy and bool(w.chat.transcript.messages()[-1].stats),
                 lambda: w.chat.attachment_jobs.attach_files(self._pictures()[2:])),
                (lambda: len(pending()) == 2, lambda: None),
            ]
        return [
            (loaded, lambda: self._type(self.prompt)),
            (lambda: not w.chat.busy and bool(w.chat.transcript.messages()[-1].stats), lambda: None),
        ]

    def _settings(self) -> None:
        view = self.window.chat_view
        view.settings_toggle.setChecked(True)
        panel = view.settings_panel
        panel.preset_box.setCurrentIndex(panel.preset_box.findData("Code helper"))
        panel.preset_box.activated.emit(panel.preset_box.currentIndex())

    def _search(self) -> None:
        view = self.window.chat_view
        view.sidebar.search.setText(self.prompt)
        view.sidebar.list.setCurrentIndex(self.window.chat.conversations.index(0))
    def _api_request(self) -> None:
        """One OpenAI-style request from another thread, as an API client would send it."""
        import json
        import threading
        import urllib.request

        base = self.window.serve.status.url

        def send() -> None:
            with urllib.request.urlopen(base + "/models", timeout=60) as reply:  # noqa: S310 - 127.0.0.1 only
                model = json.load(reply)["data"][0]["id"]
            body = {"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": self.prompt}]}
            request = urllib.request.Request(base + "/chat/completions", json.dumps(body).encode(),
                                             {"Content-Type": "application/json"})  # fmt: skip
            with urllib.request.urlopen(request, timeout=120) as reply:  # noqa: S310 - 127.0.0.1 only
                reply.read()

        threading.Thread(target=send, daemon=True).start()

    def _attach_first(self) -> None:
        self.window.chat_view.settings_panel.max_tokens.setValue(40)  # a short reply keeps the pictures in view
        self.window.chat.attachment_jobs.attach_files(self._pictures()[:2])

    def _pictures(self) -> list[str]:
        """Demo files drawn here (a sunset, a bar chart, a street map) and a short tone, beside the home folder."""
        from PySide6.QtCore import QPointF, QRectF, Qt
        from PySide6.QtGui import QColor, QImage, QLinearGradient, QPainter, QPen

        folder = Path(self.window.paths.data_dir).parent.parent / "demo-files"  # beside GEMMADESK_HOME
        folder.mkdir(parents=True, exist_ok=True)
        out = []
        sunset = QImage(640, 420, QImage.Format.Format_RGB32)
        p = QPainter(sunset)
        sky = QLinearGradient(0, 0, 0, 260)
        sky.setColorAt(0, QColor("#2b1055"))
        sky.setColorAt(1, QColor("#ff8c42"))
        p.fillRect(0, 0, 640, 260, sky)
        p.setBrush(QColor("#ffd166"))
        p.setPen(Qt.PenStyle.NoPen)
        p.drawEllipse(QPointF(320, 250), 70, 70)
        p.fillRect(0, 260, 640, 160, QColor("#1b3b6f"))
        p.setPen(QPen(QColor("#ffd166"), 3))
        for y in range(270, 410, 18):
            p.drawLine(260 - (y - 260) // 3, y, 380 + (y - 260) // 3, y)
        p.end()
        chart = QImage(480, 360, QImage.Format.Format_RGB32)
        chart.fill(QColor("white"))
        p = QPainter(chart)
        p.setPen(QPen(QColor("#333"), 2))
        p.drawLine(40, 320, 460, 320)
        p.drawLine(40, 20, 40, 320)
        for i, (h, c) in enumerate([(120, "#4e79a7"), (220, "#f28e2b"), (170, "#e15759"), (260, "#76b7b2")]):
            p.fillRect(QRectF(70 + i * 95, 320 - h, 60, h), QColor(c))
        p.end()
        city = QImage(500, 500, QImage.Format.Format_RGB32)
        city.fill(QColor("#eef2e6"))
        p = QPainter(city)
        p.setPen(QPen(QColor("#ffffff"), 14))
        for x in range(40, 500, 110):
            p.drawLine(x, 0, x, 500)
            p.drawLine(0, x, 500, x)
        p.setPen(QPen(QColor("#3a86ff"), 22))
        p.drawLine(0, 330, 500, 250)
        p.end()
        for name, image in (("sunset.png", sunset), ("sales-by-quarter.png", chart), ("street-map.png", city)):
            image.save(str(folder / name))
            out.append(str(folder / name))
        import math
        import struct
        import wave

        tone = folder / "voice-memo.wav"
        with wave.open(str(tone), "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(16000)
            f.writeframes(b"".join(struct.pack("<h", int(6000 * math.sin(i / 6))) for i in range(16000 * 3)))
        out.append(str(tone))
        return out

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


STATES = ("first-run", "downloading", "chatting", "settings", "new-chat", "models", "search", "attachments",
          "serving")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo-state", choices=STATES, required=True)
    parser.add_argument("--screenshot", type=Path, default=Path("screenshot.png"))
    parser.add_argument("--demo-prompt", default="Write a haiku about the sea.")
    parser.add_argument("--demo-size", help="WIDTHxHEIGHT of the window, e.g. 800x600")
    args, app_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    from gemmadesk.ui.app import build

    app, window = build(app_args)  # --hardware and Qt options pass through
    if args.demo_size:
        width, _, height = args.demo_size.partition("x")
        window.resize(int(width), int(height))
    driver = DemoDriver(window, args.demo_state, args.screenshot, args.demo_prompt)
    driver.start()
    return int(app.exec())


if __name__ == "__main__":
    sys.exit(main())
