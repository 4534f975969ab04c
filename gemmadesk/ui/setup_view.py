"""The first-run screen: what this machine has, which Gemma 4 models fit, and the download panel."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from gemmadesk.core.hardware import Hardware
from gemmadesk.core.units import human_bytes
from gemmadesk.ui.fit_model import ENTRY_ID_ROLE, RECOMMENDED_ROLE, VERDICT_ROLE, FitTableModel
from gemmadesk.ui.setup_controller import CONTEXT_CHOICES

BADGE_COLOURS = {"fits": "#2e7d32", "tight": "#b26a00", "too large": "#c62828", "info only": "#607d8b"}


def hardware_summary_html(hw: Hardware) -> str:
    """RAM, every GPU with its memory and whether this llama.cpp build can use it, and the backend."""
    lines = [
        f"<b>Memory:</b> {human_bytes(hw.ram_total_bytes)} RAM ({human_bytes(hw.ram_available_bytes)} free)"
        f" &nbsp;·&nbsp; <b>CPU:</b> {_esc(hw.cpu_name) or 'unknown'} ({hw.cpu_threads} threads)"
    ]
    if not hw.gpus:
        lines.append("<b>GPU:</b> none found — models run on the CPU")
    for gpu in hw.gpus:
        usable = f"usable ({gpu.backend})" if gpu.usable_by_build else "<i>not usable by this build</i>"
        kind = "shared memory" if gpu.memory_kind != "discrete" else "VRAM"
        lines.append(f"<b>GPU:</b> {_esc(gpu.name)} — {human_bytes(gpu.total_bytes)} {kind} — {usable}")
    lines.append(f"<b>Engine:</b> {_esc(hw.backend.label)}")
    return "<br>".join(lines)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class VerdictDelegate(QStyledItemDelegate):
    """Paints the verdict column as a coloured badge."""

    def paint(
        self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        verdict = index.data(VERDICT_ROLE)
        if index.column() != FitTableModel.COLUMNS.index("Verdict") or not verdict:
            super().paint(painter, option, index)
            return
        self.initStyleOption(option, index)
        style = option.widget.style() if option.widget else None
        if style is not None:  # selection background, without the text
            option.text = ""
            style.drawControl(style.ControlElement.CE_ItemViewItem, option, painter, option.widget)
        text = str(index.data(Qt.ItemDataRole.DisplayRole))
        metrics = option.fontMetrics
        width = metrics.horizontalAdvance(text) + 16
        height = metrics.height() + 4
        rect = QRect(option.rect.left() + 6, option.rect.center().y() - height // 2, width, height)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setBrush(QColor(BADGE_COLOURS.get(verdict, "#607d8b")))
        painter.setPen(Qt.PenStyle.NoPen)
        painter.drawRoundedRect(rect, height / 2, height / 2)
        painter.setPen(QColor("white"))
        painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        base = super().sizeHint(option, index)
        return QSize(base.width() + 28, base.height())  # room for the badge's padding


class SetupView(QWidget):
    """Hardware summary, context control, fit table and the recommendation's reason."""

    context_changed = Signal(int)
    selection_changed = Signal(str)  # entry id ("" when nothing downloadable is selected)

    def __init__(self, model: FitTableModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.hardware_label = QLabel("Inspecting this machine…")
        self.hardware_label.setTextFormat(Qt.TextFormat.RichText)
        self.hardware_label.setWordWrap(True)
        self.hardware_label.setAccessibleName("Hardware summary")

        self.context_box = QComboBox()
        self.context_box.setAccessibleName("Context length")
        for n in CONTEXT_CHOICES:
            self.context_box.addItem(f"{n // 1024}K tokens", n)
        self.context_box.currentIndexChanged.connect(
            lambda i: self.context_changed.emit(int(self.context_box.itemData(i)))
        )
        ctx_row = QHBoxLayout()
        ctx_label = QLabel("&Context length:")
        ctx_label.setBuddy(self.context_box)
        ctx_row.addWidget(ctx_label)
        ctx_row.addWidget(self.context_box)
        ctx_row.addStretch(1)

        self.table = QTableView()
        self.table.setAccessibleName("Models and whether they fit")
        self.table.setModel(model)
        self.table.setItemDelegateForColumn(FitTableModel.COLUMNS.index("Verdict"), VerdictDelegate(self.table))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.setShowGrid(False)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(4, QHeaderView.ResizeMode.Stretch)
        self.table.selectionModel().currentRowChanged.connect(lambda cur, _prev: self._emit_selection(cur))
        model.modelReset.connect(self._restore_selection)

        self.reason_label = QLabel()
        self.reason_label.setWordWrap(True)
        self.reason_label.setAccessibleName("Why this model")

        title = QLabel("<h2>Which Gemma 4 model fits this machine?</h2>")
        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(self.hardware_label)
        layout.addLayout(ctx_row)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.reason_label)
        self._wanted: str | None = None  # the row the user picked; kept when the numbers change
        self._restoring = False

    def set_context(self, n_ctx: int) -> None:
        i = self.context_box.findData(n_ctx)
        if i >= 0:
            self.context_box.setCurrentIndex(i)

    def show_hardware(self, hw: Hardware) -> None:
        self.hardware_label.setText(hardware_summary_html(hw))

    def show_error(self, message: str) -> None:
        self.hardware_label.setText(f"<span style='color:#c62828'>{_esc(message)}</span>")

    def show_reason(self, text: str) -> None:
        self.reason_label.setText(text)

    def selected_entry(self) -> str:
        idx = self.table.selectionModel().currentIndex()
        if not idx.isValid() or not (self.model.flags(idx) & Qt.ItemFlag.ItemIsSelectable):
            return ""
        return str(idx.data(ENTRY_ID_ROLE))

    def select_entry(self, entry_id: str) -> None:
        row = self.model.row_of(entry_id)
        if row >= 0:
            self.table.selectRow(row)
            self.table.setCurrentIndex(self.model.index(row, 0))

    def _restore_selection(self) -> None:
        """After the numbers change keep the user's choice, else pre-select the recommended row."""
        wanted = self._wanted or self.model.recommended
        if wanted:
            self._restoring = True  # a pre-selection is not the user's choice
            self.select_entry(wanted)
            self._restoring = False
        for r in range(self.model.rowCount()):
            if self.model.index(r, 0).data(RECOMMENDED_ROLE):
                self.table.scrollTo(self.model.index(r, 0))

    def _emit_selection(self, index: QModelIndex) -> None:
        entry = self.selected_entry() if index.isValid() else ""
        if entry and not self._restoring:
            self._wanted = entry
        self.selection_changed.emit(entry)
