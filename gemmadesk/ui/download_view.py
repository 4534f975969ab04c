"""The download panel: progress bar, speed and ETA, pause/resume, cancel, discard, retry, "Start chatting".

A stopped download keeps its partial file: the panel shows how much of it is on disk (also after a
restart) and offers to resume it or to discard it, saying how much space that frees.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QProgressBar, QPushButton, QVBoxLayout, QWidget

from gemmadesk.core.units import human_bytes
from gemmadesk.ui.widgets import flush_box, plain_label


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
    discard_clicked = Signal()
    chat_clicked = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # model names and server messages: never HTML
        self.status = plain_label("Select a model to download.", name="Download status")
        self.bar = QProgressBar()
        self.bar.setAccessibleName("Download progress")
        self.bar.setRange(0, 1000)
        self.bar.hide()
        self.download_button = QPushButton("&Download")
        self.pause_button = QPushButton("&Pause")
        self.cancel_button = QPushButton("Cancel")
        self.discard_button = QPushButton("D&iscard")
        self.chat_button = QPushButton("Start &chatting")
        self.chat_button.setDefault(True)
        for button, name in (
            (self.download_button, "Download selected model"),
            (self.pause_button, "Pause or resume download"),
            (self.cancel_button, "Cancel download"),
            (self.discard_button, "Discard the partial download"),
            (self.chat_button, "Open the chat"),
        ):
            button.setAccessibleName(name)
        self.download_button.clicked.connect(self.download_clicked)
        self.pause_button.clicked.connect(self._pause_or_resume)
        self.cancel_button.clicked.connect(self.cancel_clicked)
        self.discard_button.clicked.connect(self.discard_clicked)
        self.chat_button.clicked.connect(self.chat_clicked)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for b in (self.download_button, self.pause_button, self.cancel_button, self.discard_button,
                  self.chat_button):
            buttons.addWidget(b)
        flush_box(QVBoxLayout, self, self.status, self.bar, buttons)
        self._paused = False
        self._on_disk = 0  # bytes of the partial download on disk, as last reported
        self.set_idle("", can_download=False)

    # ------------------------------------------------------------------ states
    def _buttons(self, download: bool, pause: bool, cancel: bool, chat: bool, discard: bool = False) -> None:
        self.download_button.setVisible(download)
        self.pause_button.setVisible(pause)
        self.cancel_button.setVisible(cancel)
        self.discard_button.setVisible(discard)
        self.chat_button.setVisible(chat)

    def _show_bar(self, done: int, total: int) -> None:
        self.bar.show()
        self.bar.setValue(min(1000, int(1000 * done / total)) if total else 0)
        self.bar.setFormat(f"{human_bytes(done)} of {human_bytes(total)}" if total else human_bytes(done))

    def _offer_discard(self, on_disk: int) -> None:
        self._on_disk = on_disk
        self.discard_button.setText(f"D&iscard ({human_bytes(on_disk)})" if on_disk else "D&iscard")
        self.discard_button.setToolTip(f"Delete the partial download and free {human_bytes(on_disk)}")

    def set_idle(
        self, label: str, can_download: bool, installed: bool = False, partial: tuple[int, int] | None = None
    ) -> None:
        """``partial``: (bytes on disk, full size) of a stopped download of this model, if one is kept."""
        self.bar.setVisible(False)
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
        if partial is None:
            self.status.setText(f"Ready to download {label}.")
            self._buttons(True, False, False, False)
            return
        done, total = partial
        self._show_bar(done, total)
        self._offer_discard(done)
        of_total = f" of {human_bytes(total)}" if total else ""
        self.status.setText(
            f"{label} — partly downloaded ({human_bytes(done)}{of_total} on disk): resume it, or discard it "
            f"to free {human_bytes(done)}."
        )
        self._buttons(True, False, False, False, discard=True)

    def set_progress(
        self, label: str, done: int, total: int, speed_bps: float, eta_s: float | None, state: str
    ) -> None:
        self._paused = False
        self._show_bar(done, total)
        self._on_disk = done
        speed = f"{human_bytes(speed_bps)}/s · {format_eta(eta_s)}"
        detail = "checking the file…" if state == "verifying" else speed
        self.status.setText(f"Downloading {label}: {detail}")
        self.pause_button.setText("&Pause")
        self._buttons(False, True, True, False)

    def set_paused(self, label: str) -> None:
        self._paused = True
        self._offer_discard(self._on_disk)
        self.status.setText(
            f"{label}: paused with {human_bytes(self._on_disk)} on disk. Resume any time, even after a restart, "
            "or discard it to free the space."
        )
        self.pause_button.setText("&Resume")
        self._buttons(False, True, False, False, discard=True)

    def set_failed(self, label: str, message: str) -> None:
        self.status.setText(f"Download of {label} failed: {message}")
        self.download_button.setText("&Retry")
        self.download_button.setEnabled(True)
        self._buttons(True, False, False, False)

    def offer_discard(self, on_disk: int) -> None:
        """After a failure that kept a partial file: offer to discard it too."""
        self._offer_discard(on_disk)
        self.discard_button.setVisible(on_disk > 0)

    def set_discarded(self, label: str, freed: int) -> None:
        self.bar.hide()
        self.status.setText(f"Discarded the partial download of {label}; {human_bytes(freed)} freed.")
        self.download_button.setText("&Download")
        self.download_button.setEnabled(True)
        self._buttons(True, False, False, False)

    def set_done(self, label: str) -> None:
        self.bar.setValue(1000)
        self.status.setText(f"{label} is downloaded and verified.")
        self._buttons(False, False, False, True)
        self.chat_button.setFocus()

    def _pause_or_resume(self) -> None:
        (self.resume_clicked if self._paused else self.pause_clicked).emit()
