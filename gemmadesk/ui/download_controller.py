"""Runs one model download at a time on the thread pool and turns its callbacks into GUI-thread signals.

``gemmadesk.core.downloads`` (and with it huggingface_hub) is imported on the first download, not at
start-up. Pause and cancel go through the core's thread-safe ``DownloadControl``; the partial file is
kept, so a paused or cancelled download (or one interrupted by closing the app) resumes where it stopped
when started again, or is discarded on request (:meth:`DownloadController.discard`, which frees the
space). How much of a partial is on disk is looked up on the thread pool too (:meth:`check_partial`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot

from gemmadesk.core.catalog import CatalogEntry
from gemmadesk.core.fit import FitOptions
from gemmadesk.core.hardware import Hardware
from gemmadesk.core.store import InstalledModel, ModelStore
from gemmadesk.ui.tasks import TaskError, TaskRunner

if TYPE_CHECKING:  # imported for real on the first download (it pulls in huggingface_hub)
    from gemmadesk.core.downloads import DownloadControl, Progress, RetryPolicy

log = logging.getLogger(__name__)


class _Relay(QObject):
    """GUI-thread object; the worker emits ``progress`` on it and Qt queues it across threads."""

    progress = Signal(object)


class DownloadController(QObject):
    progress = Signal(object)  # downloads.Progress
    finished = Signal(object)  # InstalledModel
    failed = Signal(str)  # why, in words the user can act on
    stopped = Signal(str)  # "paused" | "cancelled"
    warnings = Signal(list)  # preflight messages that do not stop the download
    partial_found = Signal(str, object)  # entry id, partials.PartialInfo | None
    discarded = Signal(str, object)  # entry id, bytes freed (int: may exceed 2**31)

    def __init__(self, tasks: TaskRunner, store: ModelStore, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._tasks = tasks
        self._store = store
        self._relay = _Relay(self)
        self._relay.progress.connect(self._on_progress)
        self._control: DownloadControl | None = None  # while a download runs
        self.entry_id: str | None = None
        self.retry: RetryPolicy | None = None  # None: the downloader's default (patient) policy

    @Slot(object)
    def _on_progress(self, progress: Progress) -> None:
        """Queued from the download thread to this GUI-thread slot (a @Slot, see tasks.py on why)."""
        self.progress.emit(progress)

    @property
    def active(self) -> bool:
        return self._control is not None

    def start(self, entry: CatalogEntry, hw: Hardware | None, options: FitOptions) -> None:
        if self._control is not None:
            return
        from gemmadesk.core import downloads

        control = downloads.DownloadControl()
        self._control = control
        self.entry_id = entry.id
        store, relay, retry = self._store, self._relay, self.retry

        def job() -> InstalledModel:
            if hw is not None:
                pre = downloads.preflight(entry, hw, options, store)
                if not pre.ok:
                    raise downloads.DownloadError("; ".join(pre.messages))
            return downloads.download(
                entry, store, on_progress=relay.progress.emit, control=control, retry=retry,
                with_mmproj=options.with_mmproj and entry.mmproj is not None,
            )

        self._tasks.run(job, self._done, self._error, name=f"download {entry.id}")

    def pause(self) -> None:
        if self._control is not None:
            self._control.pause()

    def cancel(self) -> None:
        if self._control is not None:
            self._control.cancel()

    def check_partial(self, entry: CatalogEntry) -> None:
        """Look up (on the thread pool) what an earlier download of ``entry`` left; ``partial_found`` says."""
        from gemmadesk.core.partials import partial_info

        store = self._store
        self._tasks.run(lambda: partial_info(entry, store), lambda info: self.partial_found.emit(entry.id, info),
                        lambda error: log.warning("could not look at %s's partial download: %s", entry.id, error),
                        name=f"partial {entry.id}")

    def discard(self, entry: CatalogEntry) -> None:
        """Delete the kept partial download of ``entry`` (not while it downloads); ``discarded`` says how much
        space that freed."""
        if self._control is not None:
            return
        from gemmadesk.core.partials import discard_partial

        store = self._store
        self._tasks.run(
            lambda: discard_partial(entry, store), lambda freed: self.discarded.emit(entry.id, freed),
            lambda error: self.failed.emit(f"The partial download could not be deleted: {error}"),
            name=f"discard {entry.id}",
        )

    def shutdown(self) -> None:
        """Closing the app: pause (keeps the partial file for resuming) and wait for the worker."""
        self.pause()
        if self._tasks.wait():
            self._control = None  # the worker ended; its queued report may arrive after the window is gone

    def _done(self, installed: InstalledModel) -> None:
        self._control = None
        self.finished.emit(installed)

    def _error(self, error: TaskError) -> None:
        from gemmadesk.core import downloads

        self._control = None
        exc = error.exc
        if isinstance(exc, downloads.DownloadPaused):
            self.stopped.emit("paused")
        elif isinstance(exc, downloads.DownloadCancelled):
            self.stopped.emit("cancelled")
        elif isinstance(exc, downloads.DownloadError):
            self.failed.emit(str(exc))
        else:
            self.failed.emit(f"Unexpected error: {type(exc).__name__}: {exc}")
