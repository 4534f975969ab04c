"""The download panel: progress bar, speed and ETA, pause/resume, cancel, retry, and "Start chatting"."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget

from gemmadesk.core.units import human_bytes


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "estimating…"
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min left"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s left"
    return f"{s} s left"


class DownloadPanel(QWidget):
    """Pure view; the window wires its signals to the DownloadController."""

    download_clicked = Signal()
    pause_clicked = Signal()
    resume_clicked = Signal()
    cancel_clicked = Signal()
    chat_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.status = QLabel("Select a model to download.")
        self.status.setWordWrap(True)
        self.status.setAccessibleName("Download status")
        self.bar = QProgressBar()
        self.bar.setAccessibleName("Download progress")
        self.bar.setRange(0, 1000)
        self.bar.hide()
        self.download_button = QPushButton("&Download")
        self.pause_button = QPushButton("&Pause")
        self.cancel_button = QPushButton("Cancel")
        self.chat_button = QPushButton("Start &chatting")
        self.chat_button.setDefault(True)
        for button, name in (
            (self.download_button, "Download selected model"),
            (self.pause_button, "Pause or resume download"),
            (self.cancel_button, "Cancel download"),
            (self.chat_button, "Open the chat"),
        ):
            button.setAccessibleName(name)
        self.download_button.clicked.connect(self.download_clicked)
        self.pause_button.clicked.connect(self._pause_or_resume)
        self.cancel_button.clicked.connect(self.cancel_clicked)
        self.chat_button.clicked.connect(self.chat_clicked)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for b in (self.download_button, self.pause_button, self.cancel_button, self.chat_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.status)
        layout.addWidget(self.bar)
        layout.addLayout(buttons)
        self._paused = False
        self.set_idle("", can_download=False)

    # ------------------------------------------------------------------ states
    def _buttons(self, download: bool, pause: bool, cancel: bool, chat: bool) -> None:
        self.download_button.setVisible(download)
        self.pause_button.setVisible(pause)
        self.cancel_button.setVisible(cancel)
        self.chat_button.setVisible(chat)

    def set_idle(self, label: str, can_download: bool, installed: bool = False, partial: bool = False) -> None:
        self.bar.setVisible(partial)
        if installed:
            self.status.setText(f"{label} is installed.")
            self._buttons(False, False, False, True)
            return
        if not can_download:
            self.status.setText(label or "Select a model to download.")
            self._buttons(True, False, False, False)
            self.download_button.setEnabled(False)
            return
        self.download_button.setEnabled(True)
        self.download_button.setText("&Resume download" if partial else "&Download")
        self.status.setText(
            f"{label} — partly downloaded, ready to resume." if partial else f"Ready to download {label}."
        )
        self._buttons(True, False, False, False)

    def set_progress(
        self, label: str, done: int, total: int, speed_bps: float, eta_s: float | None, state: str
    ) -> None:
        self._paused = False
        self.bar.show()
        self.bar.setValue(int(1000 * done / total) if total else 0)
        self.bar.setFormat(f"{human_bytes(done)} of {human_bytes(total)}")
        speed = f"{human_bytes(speed_bps)}/s · {format_eta(eta_s)}"
        detail = "checking the file…" if state == "verifying" else speed
        self.status.setText(f"Downloading {label}: {detail}")
        self.pause_button.setText("&Pause")
        self._buttons(False, True, True, False)

    def set_paused(self, label: str) -> None:
        self._paused = True
        self.status.setText(f"{label}: paused. The partial file is kept; resume any time, even after a restart.")
        self.pause_button.setText("&Resume")
        self._buttons(False, True, True, False)

    def set_failed(self, label: str, message: str) -> None:
        self.status.setText(f"<b>Download of {label} failed:</b> {message}")
        self.download_button.setText("&Retry")
        self.download_button.setEnabled(True)
        self._buttons(True, False, False, False)

    def set_done(self, label: str) -> None:
        self.bar.setValue(1000)
        self.status.setText(f"{label} is downloaded and verified.")
        self._buttons(False, False, False, True)
        self.chat_button.setFocus()

    def _pause_or_resume(self) -> None:
        (self.resume_clicked if self._paused else self.pause_clicked).emit()
