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
from gemmadesk.core.fit import Plan, Verdict
from gemmadesk.core.units import human_bytes

_Index = QModelIndex | QPersistentModelIndex

ENTRY_ID_ROLE = Qt.ItemDataRole.UserRole + 1
VERDICT_ROLE = Qt.ItemDataRole.UserRole + 2  # "fits" | "tight" | "too large" | "info only"
RECOMMENDED_ROLE = Qt.ItemDataRole.UserRole + 3


@dataclass(frozen=True)
class FitRow:
    entry: CatalogEntry
    plan: Plan | None  # None for formats this app does not run
    installed: bool = False

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
        plan = self.plan
        if plan is None:
            return self.entry.runner
        if plan.verdict == Verdict.GPU:
            return f"GPU ({plan.gpu_name})" if plan.gpu_name else "GPU"
        if plan.verdict == Verdict.PARTIAL:
            return f"GPU + CPU ({plan.n_gpu_layers}/{plan.n_layers} layers on GPU)"
        if plan.verdict == Verdict.CPU:
            return "CPU"
        return "—"


class FitTableModel(QAbstractTableModel):
    COLUMNS = ("Model", "Format", "Size on disk", "Memory needed", "Runs on", "Verdict")

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
            if row.plan is not None:
                return row.plan.reason
            return f"Not runnable in GemmaDesk: {row.entry.runner}. {row.entry.notes}".strip()
        if role == Qt.ItemDataRole.ForegroundRole and row.plan is None:
            return QColor(128, 128, 128)  # information rows read as secondary
        if role == ENTRY_ID_ROLE:
            return row.entry.id
        if role == VERDICT_ROLE:
            return row.verdict
        if role == RECOMMENDED_ROLE:
            return row.entry.id == self._recommended
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return f"{self._display(row, col)}"
        return None

    def _display(self, row: FitRow, col: int) -> str:
        entry = row.entry
        if col == 0:
            marks = []
            if entry.id == self._recommended:
                marks.append("★ recommended")
            if row.installed:
                marks.append("✓ installed")
            name = f"Gemma 4 {entry.size}"
            return f"{name}  ({', '.join(marks)})" if marks else name
        if col == 1:
            return f"{entry.format} · {entry.publisher}"
        if col == 2:
            return human_bytes(entry.file.size_bytes) if entry.file else "—"
        if col == 3:
            return human_bytes(row.plan.estimate.total_bytes) if row.plan else "—"
        if col == 4:
            return row.runs_on
        return row.verdict
