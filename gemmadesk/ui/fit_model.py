"""The memory-fit list as a Qt table model over plain Python rows (testable without any window).

One row per catalog entry: runnable GGUFs carry a fit :class:`~gemmadesk.core.fit.Plan`; the other
formats (compressed-tensors for vLLM, mobile, unquantized) are rows of information with no plan and
cannot be selected for download.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor

from gemmadesk.core.catalog import CatalogEntry
from gemmadesk.core.fit import MemoryBudget, Plan, Verdict
from gemmadesk.core.speed import format_rate
from gemmadesk.core.units import human_bytes
from gemmadesk.ui.richtext import plain_tooltip

_Index = QModelIndex | QPersistentModelIndex

ENTRY_ID_ROLE = Qt.ItemDataRole.UserRole + 1
VERDICT_ROLE = Qt.ItemDataRole.UserRole + 2  # "fits" | "tight" | "too large" | "info only"
RECOMMENDED_ROLE = Qt.ItemDataRole.UserRole + 3
MEMORY_BARS_ROLE = Qt.ItemDataRole.UserRole + 4  # tuple[MemoryBar, ...] for the memory column
SLOW_ROLE = Qt.ItemDataRole.UserRole + 5  # True when the expected speed is slow
NOTE_ROLE = Qt.ItemDataRole.UserRole + 6  # why this row's numbers may surprise ("" when they do not)


@dataclass(frozen=True)
class MemoryBar:
    """One bar of the memory column: what the model takes of one pool, and what is free for models there."""

    pool: str  # "VRAM" | "RAM" | "RAM (shared with the GPU)"
    used: int
    available: int  # free for models (after the reserve)

    @property
    def fraction(self) -> float:
        return self.used / self.available if self.available > 0 else float("inf")

    @property
    def over(self) -> bool:
        return self.used > self.available

    def text(self) -> str:
        """Short, drawn beside the bar: "3.8 / 21.4 GiB" (GiB with one decimal, so the column stays narrow)."""
        return f"{self.used / 2**30:.1f} / {max(self.available, 0) / 2**30:.1f} GiB"

    def sentence(self) -> str:
        if self.over:
            return (f"{self.pool}: needs {human_bytes(self.used)}, more than the {human_bytes(self.available)} free "
                    "for models")
        return (f"{self.pool}: {human_bytes(self.used)} of the {human_bytes(self.available)} free for models, "
                f"{human_bytes(self.available - self.used)} left")


def memory_bars(plan: Plan, budget: MemoryBudget) -> tuple[MemoryBar, ...]:
    """The bars for a plan: VRAM (when it uses the GPU) and RAM; one pool on shared-memory GPUs."""
    e = plan.estimate
    if budget.shared_memory and plan.n_gpu_layers > 0:
        return (MemoryBar("RAM (shared with the GPU)", e.total_bytes, budget.ram_for_models),)
    bars = []
    if plan.n_gpu_layers > 0:
        bars.append(MemoryBar("VRAM", e.gpu_bytes, budget.vram_for_models))
    bars.append(MemoryBar("RAM", e.cpu_bytes, budget.ram_for_models))
    return tuple(bars)


@dataclass(frozen=True)
class FitRow:
    entry: CatalogEntry
    plan: Plan | None  # None for formats this app does not run
    installed: bool = False
    bars: tuple[MemoryBar, ...] = ()  # filled by the controller (it knows the machine's budget)
    note: str = ""  # why this row's numbers may surprise (e.g. a smaller model needing more memory)

    @property
    def downloadable(self) -> bool:
        return self.entry.runnable and self.plan is not None

    @property
    def verdict(self) -> str:
        if self.plan is None:
            return "info only"
        if self.plan.verdict == Verdict.TOO_LARGE:
            return "too large"
        return "tight" if self.plan.tight else "fits"

    @property
    def runs_on(self) -> str:
        """Short (the GPU's name is in the summary above the list; the tooltip has the details)."""
        plan = self.plan
        if plan is None:
            return self.entry.runner
        if plan.verdict == Verdict.GPU:
            return "GPU"
        if plan.verdict == Verdict.PARTIAL:
            return "GPU + CPU"
        if plan.verdict == Verdict.CPU:
            return "CPU"
        return "—"

    @property
    def runs_on_detail(self) -> str:
        plan = self.plan
        if plan is None or plan.verdict == Verdict.TOO_LARGE:
            return self.runs_on
        if plan.verdict == Verdict.GPU:
            return f"Everything on the {plan.gpu_name}" if plan.gpu_name else "Everything on the GPU"
        if plan.verdict == Verdict.PARTIAL:
            return f"{plan.n_gpu_layers - 1} of {plan.n_layers} layers on the {plan.gpu_name}, the rest on the CPU"
        return "On the CPU"


class FitTableModel(QAbstractTableModel):
    # The format is the model cell's second line (one column fewer: the list fits an 800 px window).
    COLUMNS = ("Model", "Size on disk", "Memory needed", "Speed", "Runs on", "Verdict")
    MODEL, SIZE, MEMORY, SPEED, RUNS_ON, VERDICT = range(6)

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[FitRow] = []
        self._recommended: str | None = None

    # ------------------------------------------------------------------ data in
    def set_rows(self, rows: list[FitRow], recommended: str | None) -> None:
        """Replace all rows (context changes recompute every plan, so a reset is the honest signal)."""
        self.beginResetModel()
        self._rows = list(rows)
        self._recommended = recommended
        self.endResetModel()

    def rows(self) -> list[FitRow]:
        return list(self._rows)

    def row_of(self, entry_id: str) -> int:
        for i, row in enumerate(self._rows):
            if row.entry.id == entry_id:
                return i
        return -1

    @property
    def recommended(self) -> str | None:
        return self._recommended

    # ------------------------------------------------------------------ Qt interface
    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        horizontal = orientation == Qt.Orientation.Horizontal
        if role == Qt.ItemDataRole.DisplayRole and horizontal and 0 <= section < len(self.COLUMNS):
            return self.COLUMNS[section]
        return None

    def flags(self, index: _Index) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        row = self._rows[index.row()]
        if row.downloadable:
            return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        return Qt.ItemFlag.ItemIsEnabled  # information rows are shown, never offered

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not (0 <= index.row() < len(self._rows)):
            return None
        row = self._rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(row, col)
        if role == Qt.ItemDataRole.ToolTipRole:
            return plain_tooltip(self._tooltip(row, col))
        if role == Qt.ItemDataRole.ForegroundRole and row.plan is None:
            return QColor(128, 128, 128)  # information rows read as secondary
        if role == ENTRY_ID_ROLE:
            return row.entry.id
        if role == VERDICT_ROLE:
            return row.verdict
        if role == RECOMMENDED_ROLE:
            return row.entry.id == self._recommended
        if role == MEMORY_BARS_ROLE:
            return row.bars if col == self.MEMORY else None
        if role == SLOW_ROLE:
            return bool(row.plan and row.plan.speed and row.plan.speed.slow)
        if role == NOTE_ROLE:
            return row.note
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return self._accessible(row, col)
        return None

    def _tooltip(self, row: FitRow, col: int) -> str:
        plan = row.plan
        if plan is None:
            return f"Not runnable in GemmaDesk: {row.entry.runner}. {row.entry.notes}".strip()
        parts = [plan.reason[:1].upper() + plan.reason[1:] + "."]
        if col == self.MODEL:
            parts = [f"{row.entry.label}: {row.runs_on_detail.lower()}." if plan.fits else row.entry.label]
            if row.entry.id == self._recommended:
                parts.insert(0, "★ Recommended for this machine.")
            if row.installed:
                parts.insert(0, "✓ Installed.")
        if col == self.MEMORY and row.bars:
            parts = [bar.sentence() + "." for bar in row.bars]
        if col == self.SPEED and plan.speed is not None:
            parts = [plan.speed.sentence(), f"Limited mostly by {plan.speed.limited_by}."]
        if col == self.RUNS_ON:
            parts = [row.runs_on_detail + "."]
        if row.note:
            parts.append(row.note)
        return "\n".join(parts)

    def _accessible(self, row: FitRow, col: int) -> str:
        """What a screen reader says for a cell: marks, bars and speed in words, not glyphs and numbers."""
        plan = row.plan
        if col == self.MODEL:
            words = [f"Gemma 4 {row.entry.size}, {row.entry.format} by {row.entry.publisher}"]
            if row.entry.id == self._recommended:
                words.append("recommended")
            if row.installed:
                words.append("installed")
            return ", ".join(words)
        if col == self.MEMORY and row.bars:
            return f"Memory needed {human_bytes(plan.estimate.total_bytes) if plan else ''}. " + \
                " ".join(bar.sentence() + "." for bar in row.bars)
        if col == self.SPEED and plan is not None and plan.speed is not None:
            return plan.speed.sentence()
        if col == self.RUNS_ON:
            return row.runs_on_detail
        return self._display(row, col)

    def _display(self, row: FitRow, col: int) -> str:
        entry = row.entry
        if col == self.MODEL:
            # Marks as glyphs (★ recommended, ✓ installed) keep the column narrow; the tooltip and the
            # accessible text say them in words.
            marks = ("  ★" if entry.id == self._recommended else "") + ("  ✓" if row.installed else "")
            return f"Gemma 4 {entry.size}{marks}\n{entry.format} · {entry.publisher}"
        if col == self.SIZE:
            return human_bytes(entry.file.size_bytes) if entry.file else "—"
        if col == self.MEMORY:
            return human_bytes(row.plan.estimate.total_bytes) if row.plan else "—"
        if col == self.SPEED:
            speed = row.plan.speed if row.plan else None
            if speed is None:
                return "—"
            return f"≈ {format_rate(speed.tokens_per_s)} tok/s" + ("\nslow" if speed.slow else "")
        if col == self.RUNS_ON:
            return row.runs_on
        return row.verdict
