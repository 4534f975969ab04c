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
from gemmadesk.core.fit import FitOptions, MemoryBudget, Recommendation, memory_budget, recommend, surprising_notes
from gemmadesk.core.hardware import Hardware
from gemmadesk.core.speed import MeasuredSpeed
from gemmadesk.core.store import ModelStore
from gemmadesk.ui.fit_model import FitRow, FitTableModel, memory_bars
from gemmadesk.ui.tasks import TaskError, TaskRunner

log = logging.getLogger(__name__)

CONTEXT_CHOICES = (2048, 4096, 8192, 16384, 32768, 65536, 131072)


def _load_measurements(hw: Hardware) -> tuple[MeasuredSpeed, ...]:
    """This machine's recorded decode speeds (a file read: run it on the thread pool)."""
    from gemmadesk.core.speed_log import SpeedLog, machine_key

    return SpeedLog().load(machine_key(hw))


class SetupController(QObject):
    hardware_ready = Signal(object)  # Hardware
    hardware_failed = Signal(str)
    plans_changed = Signal(str)  # the recommendation's one-line explanation
    context_adjusted = Signal(int)  # nothing fitted at the chosen context: the plans are for this one

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
        self.budget: MemoryBudget | None = None
        self.measured: tuple[MeasuredSpeed, ...] = ()  # this machine's recorded decode speeds

    def probe(self) -> None:
        self._tasks.run(self._prober, self.set_hardware, self._probe_failed, name="hardware probe")

    def _probe_failed(self, error: TaskError) -> None:
        self.hardware_failed.emit(f"Could not inspect this machine: {error}")

    def set_hardware(self, hardware: Hardware) -> None:
        self.hardware = hardware
        self.budget = memory_budget(hardware)
        self.hardware_ready.emit(hardware)
        self.recompute()
        self.refresh_measurements()

    def refresh_measurements(self) -> None:
        """Re-read the recorded decode speeds (on the thread pool), then re-plan with them."""
        hw = self.hardware
        if hw is not None:
            self._tasks.run(lambda: _load_measurements(hw), self.set_measurements,
                            lambda err: log.warning("decode speeds not read: %s", err), name="decode speeds")

    def set_measurements(self, measured: tuple[MeasuredSpeed, ...]) -> None:
        if measured != self.measured:
            self.measured = tuple(measured)
            self.recompute()

    def set_context(self, n_ctx: int) -> None:
        if n_ctx != self.options.n_ctx:
            self.options = replace(self.options, n_ctx=n_ctx)
            self.recompute()

    def set_with_mmproj(self, on: bool) -> None:
        """Count (and download) the vision projector with each model: images, and audio on E2B/E4B/12B."""
        if on != self.options.with_mmproj:
            self.options = replace(self.options, with_mmproj=on)
            self.recompute()

    def recompute(self) -> None:
        if self.hardware is None:
            return
        hw = self.hardware
        rec = recommend(hw, self.catalog, self.options, self.measured, CONTEXT_CHOICES)
        plan_list = rec.plans
        if rec.context_reduced:
            # Show the list at the context the recommendation is for, so rows and advice agree.
            self.options = replace(self.options, n_ctx=rec.n_ctx)
            plan_list = recommend(hw, self.catalog, self.options, self.measured, CONTEXT_CHOICES).plans
        self.recommendation = rec
        plans = {p.entry_id: p for p in plan_list}
        notes = surprising_notes(plan_list, self.catalog)
        budget = self.budget or memory_budget(hw)
        installed = self.installed_entry_ids()
        rows = []
        for e in self.catalog.entries:
            plan = plans.get(e.id) if e.runnable else None
            bars = memory_bars(plan, budget) if plan is not None else ()
            rows.append(FitRow(e, plan, e.id in installed, bars, notes.get(e.id, "")))
        self.model.set_rows(rows, rec.best.entry_id if rec.best else None)
        if rec.context_reduced:
            self.context_adjusted.emit(rec.n_ctx)
        self.plans_changed.emit(rec.explanation)

    def installed_entry_ids(self) -> set[str]:
        try:
            return {m.entry_id for m in self.store.list() if m.entry_id and m.status == "ok"}
        except OSError as exc:
            log.warning("could not list installed models: %s", exc)
            return set()

    def has_partial_download(self, entry_id: str) -> bool:
        """A partial file from an earlier, interrupted download of this entry exists (for tests and scripts:
        the page itself looks this up on the thread pool, through ``DownloadController.check_partial``)."""
        from gemmadesk.core.partials import partial_info

        return partial_info(self.catalog.get(entry_id), self.store) is not None

    def entry(self, entry_id: str) -> CatalogEntry:
        return self.catalog.get(entry_id)
