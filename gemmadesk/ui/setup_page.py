"""The first-run page: the fit list plus the download panel, wired to their controllers."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QMessageBox, QTabWidget, QVBoxLayout, QWidget

from gemmadesk.core.fit import will_not_run_warning
from gemmadesk.core.units import human_bytes
from gemmadesk.ui.download_controller import DownloadController
from gemmadesk.ui.download_view import DownloadPanel
from gemmadesk.ui.setup_controller import SetupController
from gemmadesk.ui.setup_view import SetupView
from gemmadesk.ui.widgets import ask_first, flush_box, push_button

if TYPE_CHECKING:  # the downloads module is imported on the first download, not at start-up
    from gemmadesk.core.downloads import Progress
    from gemmadesk.core.partials import PartialInfo


class SetupPage(QWidget):
    chat_requested = Signal(str)  # installed model id
    context_chosen = Signal(int)
    back_requested = Signal()  # "Back to chat" (or Esc)

    def __init__(self, setup: SetupController, downloads: DownloadController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setup = setup
        self.downloads = downloads
        self.view = SetupView(setup.model)
        self.panel = DownloadPanel()
        self._failed_id: str | None = None  # the entry whose download failed last (its panel shows Retry)
        # The page: a way back to the chat, then tabs: the fit list with its download panel; the window adds
        # the installed models (add_tab).
        self.back_button = push_button("← Back to &chat", "Back to the chat", self.back_requested,
                                       tip="Back to the chat (Esc)")
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, self.back_requested.emit)
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        download_tab = QWidget()
        flush_box(QVBoxLayout, download_tab, self.view, self.panel, grow=self.view)
        self.tabs.addTab(download_tab, "&Download models")
        self.tabs.setCornerWidget(self.back_button, Qt.Corner.TopLeftCorner)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs, 1)
        self.view.set_context(setup.options.n_ctx)

        setup.hardware_ready.connect(self.view.show_hardware)
        setup.hardware_failed.connect(self.view.show_error)
        setup.plans_changed.connect(self.view.show_reason)
        setup.context_adjusted.connect(self.view.set_context)
        self.view.context_changed.connect(setup.set_context)
        self.view.context_changed.connect(self.context_chosen)
        self.view.vision_changed.connect(setup.set_with_mmproj)
        self.view.selection_changed.connect(self._selection_changed)
        self.confirm_box: QMessageBox | None = None  # open while asking about a model that will not run

        self.panel.download_clicked.connect(self.start_download)
        self.panel.resume_clicked.connect(self.start_download)
        self.panel.pause_clicked.connect(downloads.pause)
        self.panel.cancel_clicked.connect(downloads.cancel)
        self.panel.discard_clicked.connect(self._discard)
        self.panel.chat_clicked.connect(self._open_chat)
        downloads.progress.connect(self._progress)
        downloads.finished.connect(self._finished)
        downloads.failed.connect(self._failed)
        downloads.stopped.connect(self._stopped)
        downloads.partial_found.connect(self._partial_found)
        downloads.discarded.connect(self._discarded)

    def add_tab(self, widget: QWidget, title: str) -> int:
        return self.tabs.addTab(widget, title)

    # ------------------------------------------------------------------ helpers
    def _label(self, entry_id: str | None) -> str:
        return self.setup.entry(entry_id).label if entry_id else "the model"

    def _selection_changed(self, entry_id: str) -> None:
        self._failed_id = None
        if self.downloads.active:
            return  # the panel shows the running download, whatever is selected
        if not entry_id:
            self.panel.set_idle("This format is shown for information; GemmaDesk runs the GGUF rows.", False)
            return
        installed = self.setup.store.find_for_entry(entry_id)
        self.panel.set_idle(self._label(entry_id), True, installed is not None)
        if installed is None:
            self.downloads.check_partial(self.setup.entry(entry_id))  # a kept partial: shown when found

    def _partial_found(self, entry_id: str, info: PartialInfo | None) -> None:
        """``info`` is a ``partials.PartialInfo`` or None (looked up on the thread pool)."""
        if info is None or self.downloads.active or entry_id != self._current_entry():
            return
        if entry_id == self._failed_id:  # a failed download kept its partial: Retry, or Discard it
            self.panel.offer_discard(info.bytes_done)
            return
        self.panel.set_idle(self._label(entry_id), True, False, (info.bytes_done, info.bytes_total))

    def _current_entry(self) -> str:
        return self.view.selected_entry() or self.downloads.entry_id or ""

    def _discard(self) -> None:
        entry_id = self._current_entry()
        if entry_id and not self.downloads.active:
            self.downloads.discard(self.setup.entry(entry_id))

    def _discarded(self, entry_id: str, freed: int) -> None:
        self.panel.set_discarded(self._label(entry_id), int(freed))

    # ------------------------------------------------------------------ actions
    def start_download(self) -> None:
        """Download the selected model; one that will not run here is downloaded only after the user
        confirms, with the numbers (the same sentence ``gemmadesk pull`` prints)."""
        entry_id = self.view.selected_entry() or self.downloads.entry_id
        if not entry_id or self.confirm_box is not None:
            return
        warning = None
        row = self.setup.model.row_of(entry_id)
        plan = self.setup.model.rows()[row].plan if row >= 0 else None
        if plan is not None and not self.downloads.active:
            warning = will_not_run_warning(plan)
        if warning is None:
            self._download(entry_id)
            return
        entry = self.setup.entry(entry_id)
        size = human_bytes(entry.file.size_bytes) if entry.file else "it"
        box = QMessageBox(QMessageBox.Icon.Warning, "Download a model that will not run here?",
                          f"{entry.label}\n\n{warning}\n\nDownload {size} anyway?", QMessageBox.StandardButton.NoButton,
                          self)
        box.setTextFormat(Qt.TextFormat.PlainText)
        ask_first(self, box, "Download anyway", QMessageBox.ButtonRole.AcceptRole, lambda: self._download(entry_id))

    def _download(self, entry_id: str) -> None:
        entry = self.setup.entry(entry_id)
        self._failed_id = None
        self.panel.set_progress(entry.label, 0, entry.file.size_bytes if entry.file else 0, 0.0, None, "queued")
        self.downloads.start(entry, self.setup.hardware, self.setup.options)

    def _open_chat(self) -> None:
        entry_id = self.view.selected_entry() or self.downloads.entry_id
        installed = self.setup.store.find_for_entry(entry_id) if entry_id else None
        if installed is not None:
            self.chat_requested.emit(installed.id)

    # ------------------------------------------------------------------ download reports
    def _progress(self, p: Progress) -> None:
        self.panel.set_progress(
            self._label(p.entry_id), p.bytes_done, p.bytes_total, p.speed_bps, p.eta_s, p.state.value
        )
        # A "failed" progress event is not acted on here: Retry is offered by _failed, which runs only once
        # the download job has really ended (offering it earlier made a quick Retry click do nothing).

    def _finished(self, _installed: object) -> None:
        self.setup.recompute()  # marks the row installed (and re-selects it) before the panel says so
        self.panel.set_done(self._label(self.downloads.entry_id))

    def _failed(self, message: str) -> None:
        self.panel.set_failed(self._label(self.downloads.entry_id), html.escape(message))
        self._failed_id = self.downloads.entry_id
        if self.downloads.entry_id:
            self.downloads.check_partial(self.setup.entry(self.downloads.entry_id))  # offer Discard if one is kept

    def _stopped(self, how: str) -> None:
        if how == "paused":
            self.panel.set_paused(self._label(self.downloads.entry_id))
        else:
            self._selection_changed(self.view.selected_entry())
