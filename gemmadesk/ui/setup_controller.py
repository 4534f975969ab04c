"""First-run logic behind the memory-fit list: probe the machine, plan every model, track what is installed.

The probe runs on the thread pool (it loads llama.cpp); planning is arithmetic on plain data and is
redone in the GUI thread whenever the context length changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from PySide6.QtCore import QObject, Signal

from gemmadesk.core import hardware as hw_mod
from gemmadesk.core.catalog import Catalog, CatalogEntry
from gemmadesk.core.catalog_refresh import current_catalog
from gemmadesk.core.fit import FitOptions, Recommendation, recommend
from gemmadesk.core.hardware import Hardware
from gemmadesk.core.store import ModelStore
from gemmadesk.ui.fit_model import FitRow, FitTableModel
from gemmadesk.ui.tasks import TaskError, TaskRunner

log = logging.getLogger(__name__)

CONTEXT_CHOICES = (2048, 4096, 8192, 16384, 32768, 65536, 131072)


class SetupController(QObject):
    hardware_ready = Signal(object)  # Hardware
    hardware_failed = Signal(str)
    plans_changed = Signal(str)  # the recommendation's one-line explanation

    def __init__(
        self,
        tasks: TaskRunner,
        store: ModelStore,
        catalog: Catalog | None = None,
        options: FitOptions | None = None,
        prober: Callable[[], Hardware] = hw_mod.probe,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._tasks = tasks
        self._prober = prober
        self.store = store
        self.catalog = catalog or current_catalog()
        self.model = FitTableModel(self)
        self.hardware: Hardware | None = None
        self.options = options or FitOptions()  # the user's planning options (Settings), context included
        self.recommendation: Recommendation | None = None

    def probe(self) -> None:
        self._tasks.run(self._prober, self.set_hardware, self._probe_failed, name="hardware probe")

    def _probe_failed(self, error: TaskError) -> None:
        self.hardware_failed.emit(f"Could not inspect this machine: {error}")

    def set_hardware(self, hardware: Hardware) -> None:
        self.hardware = hardware
        self.hardware_ready.emit(hardware)
        self.recompute()

    def set_context(self, n_ctx: int) -> None:
        if n_ctx != self.options.n_ctx:
            self.options = replace(self.options, n_ctx=n_ctx)
            self.recompute()

    def recompute(self) -> None:
        if self.hardware is None:
            return
        rec = recommend(self.hardware, self.catalog, self.options)
        self.recommendation = rec
        plans = {p.entry_id: p for p in rec.plans}
        installed = self.installed_entry_ids()
        rows = [FitRow(e, plans.get(e.id) if e.runnable else None, e.id in installed) for e in self.catalog.entries]
        self.model.set_rows(rows, rec.best.entry_id if rec.best else None)
        self.plans_changed.emit(rec.explanation)

    def installed_entry_ids(self) -> set[str]:
        try:
            return {m.entry_id for m in self.store.list() if m.entry_id and m.status == "ok"}
        except OSError as exc:
            log.warning("could not list installed models: %s", exc)
            return set()

    def has_partial_download(self, entry_id: str) -> bool:
        """A partial file from an earlier, interrupted download of this entry exists (resume offered)."""
        entry = self.catalog.get(entry_id)
        if entry.file is None:
            return False
        partial_dir = self.store.partial_dir()
        return partial_dir.is_dir() and any(partial_dir.glob(f"*--{entry.file.filename}.part"))

    def entry(self, entry_id: str) -> CatalogEntry:
        return self.catalog.get(entry_id)
