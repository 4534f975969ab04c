"""The first-run screen: what this machine has, which Gemma 4 models fit, and the download panel."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QPainter, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
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

from gemmadesk.core.fit import GPU_RESERVE_BYTES, image_tokens_note, memory_budget
from gemmadesk.core.hardware import Hardware, decode_threads, gpu_bandwidth
from gemmadesk.core.speed import ram_bandwidth
from gemmadesk.core.units import human_bytes
from gemmadesk.ui.fit_model import (
    ENTRY_ID_ROLE,
    MEMORY_BARS_ROLE,
    NOTE_ROLE,
    RECOMMENDED_ROLE,
    VERDICT_ROLE,
    FitTableModel,
)
from gemmadesk.ui.setup_controller import CONTEXT_CHOICES
from gemmadesk.ui.widgets import plain_label

BADGE_COLOURS = {"fits": "#2e7d32", "tight": "#b26a00", "too large": "#c62828", "info only": "#607d8b"}
# Bar fills: mid-tone, readable on light and dark bases alike (the text beside them uses the palette).
BAR_COLOURS = {"ok": "#43a047", "tight": "#f9a825", "over": "#e53935"}


def _gbs(bytes_per_s: float) -> str:
    return f"{bytes_per_s / 1e9:,.0f} GB/s"


def hardware_summary_html(hw: Hardware) -> str:
    """RAM (one figure free for models, the reserve explained once), the CPU, every GPU with its memory
    and whether this llama.cpp build can use it, and the backend."""
    budget = memory_budget(hw)
    threads = decode_threads(hw.cpu_cores)
    bw, measured = ram_bandwidth(hw, threads)
    reads = f", reads {_gbs(bw)}" if measured else ""
    lines = [
        f"<b>Memory:</b> {human_bytes(hw.ram_total_bytes)} RAM, <b>{human_bytes(budget.ram_for_models)} free for "
        f"models</b> (GemmaDesk leaves {human_bytes(budget.ram_reserve)} for the system and itself{reads})"
        f" &nbsp;·&nbsp; <b>CPU:</b> {_esc(hw.cpu_name) or 'unknown'} ({hw.cpu_cores} cores; decodes with "
        f"{threads} thread{'s' if threads != 1 else ''})"
    ]
    if not hw.gpus:
        lines.append("<b>GPU:</b> none found — models run on the CPU")
    best = hw.best_gpu
    for gpu in hw.gpus:
        usable = f"usable ({gpu.backend})" if gpu.usable_by_build else "<i>not usable by this build</i>"
        if gpu.memory_kind != "discrete":
            memory = f"{human_bytes(gpu.total_bytes)} shared memory (counted in the RAM above)"
        elif gpu is best:
            memory = (f"{human_bytes(gpu.total_bytes)} VRAM, <b>{human_bytes(budget.vram_for_models)} free for "
                      f"models</b> ({human_bytes(GPU_RESERVE_BYTES)} left for the driver)")
        else:
            memory = f"{human_bytes(gpu.total_bytes)} VRAM"
        speed, known = gpu_bandwidth(gpu, hw)
        bandwidth = f" — {_gbs(speed)}" if known and gpu.usable_by_build else ""
        lines.append(f"<b>GPU:</b> {_esc(gpu.name)} — {memory}{bandwidth} — {usable}")
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


class MemoryBarDelegate(QStyledItemDelegate):
    """Paints the memory column as one bar per memory pool (VRAM, RAM): the model's share of what is free
    for models, and the text "used / free" beside it. Colours: the palette's text and a mid-tone track,
    so light and dark themes both read; green / amber (over 90 %) / red (does not fit) fills."""

    BAR_WIDTH = 64
    LABEL_WIDTH_CHARS = "VRAM "

    def paint(
        self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        bars = index.data(MEMORY_BARS_ROLE)
        if not bars:
            super().paint(painter, option, index)
            return
        self.initStyleOption(option, index)
        style = option.widget.style() if option.widget else None
        if style is not None:  # background and selection, without the text
            option.text = ""
            style.drawControl(style.ControlElement.CE_ItemViewItem, option, painter, option.widget)
        selected = bool(option.state & style.StateFlag.State_Selected) if style is not None else False
        text_role = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        text_colour = option.palette.color(text_role)
        track = QColor(text_colour)
        track.setAlpha(50)
        metrics = option.fontMetrics
        line_h = metrics.height() + 2
        top = option.rect.top() + (option.rect.height() - line_h * len(bars)) // 2
        label_w = metrics.horizontalAdvance(self.LABEL_WIDTH_CHARS)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        for i, bar in enumerate(bars):
            y = top + i * line_h
            x = option.rect.left() + 6
            painter.setPen(text_colour)
            short = "RAM" if bar.pool.startswith("RAM") else bar.pool
            painter.drawText(QRect(x, y, label_w, line_h), Qt.AlignmentFlag.AlignVCenter, short)
            x += label_w
            bar_h = max(6, metrics.height() // 2)
            rect = QRectF(x, y + (line_h - bar_h) / 2, self.BAR_WIDTH, bar_h)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(track)
            painter.drawRoundedRect(rect, bar_h / 2, bar_h / 2)
            kind = "over" if bar.over else "tight" if bar.fraction > 0.9 else "ok"
            filled = QRectF(rect)
            filled.setWidth(max(bar_h, rect.width() * min(bar.fraction, 1.0)))
            painter.setBrush(QColor(BAR_COLOURS[kind]))
            painter.drawRoundedRect(filled, bar_h / 2, bar_h / 2)
            painter.setPen(text_colour)
            text_rect = QRect(int(rect.right()) + 6, y, option.rect.right() - int(rect.right()) - 6, line_h)
            painter.drawText(text_rect, Qt.AlignmentFlag.AlignVCenter,
                             metrics.elidedText(bar.text(), Qt.TextElideMode.ElideRight, text_rect.width()))
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        bars = index.data(MEMORY_BARS_ROLE)
        if not bars:
            return super().sizeHint(option, index)
        metrics = option.fontMetrics
        widest = max(metrics.horizontalAdvance(b.text()) for b in bars)
        width = 6 + metrics.horizontalAdvance(self.LABEL_WIDTH_CHARS) + self.BAR_WIDTH + 6 + widest + 8
        return QSize(width, (metrics.height() + 2) * len(bars) + 6)


class SetupView(QWidget):
    """Hardware summary, context control, fit table and the recommendation's reason."""

    context_changed = Signal(int)
    selection_changed = Signal(str)  # entry id ("" when nothing downloadable is selected)
    vision_changed = Signal(bool)  # count and download the vision projector (mmproj) with the model

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
        ctx_label.setTextFormat(Qt.TextFormat.PlainText)
        ctx_label.setBuddy(self.context_box)
        ctx_row.addWidget(ctx_label)
        ctx_row.addWidget(self.context_box)
        self.vision_box = QCheckBox("Include the &vision projector (images; audio on E2B, E4B, 12B)")
        self.vision_box.setAccessibleName("Include the vision projector")
        self.vision_box.toggled.connect(self.vision_changed)
        self.vision_box.toggled.connect(lambda _on: self._vision_tip())
        ctx_row.addWidget(self.vision_box)
        ctx_row.addStretch(1)
        self._vision_tip()

        self.table = QTableView()
        self.table.setAccessibleName("Models and whether they fit")
        self.table.setModel(model)
        self.table.setItemDelegateForColumn(FitTableModel.VERDICT, VerdictDelegate(self.table))
        self.table.setItemDelegateForColumn(FitTableModel.MEMORY, MemoryBarDelegate(self.table))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        # Every row is two lines: the model and its format; a VRAM and a RAM bar; a speed and "slow".
        rows = self.table.verticalHeader()
        rows.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        rows.setMinimumSectionSize(2 * self.table.fontMetrics().height() + 8)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)  # long cells elide (their tooltip says it all) instead of growing the rows
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(FitTableModel.RUNS_ON, QHeaderView.ResizeMode.Stretch)
        self.table.selectionModel().currentRowChanged.connect(lambda cur, _prev: self._emit_selection(cur))
        model.modelReset.connect(self._restore_selection)

        self.reason_label = plain_label(name="Why this model")
        self.note_label = QLabel()  # why the selected row's numbers may surprise (E4B above 12B at 128K)
        self.note_label.setWordWrap(True)
        self.note_label.setAccessibleName("About the selected model")
        self.note_label.hide()

        title = QLabel("<h2>Which Gemma 4 model fits this machine?</h2>")
        title.setTextFormat(Qt.TextFormat.RichText)
        layout = QVBoxLayout(self)
        layout.addWidget(title)
        layout.addWidget(self.hardware_label)
        layout.addLayout(ctx_row)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.reason_label)
        layout.addWidget(self.note_label)
        self._wanted: str | None = None  # the row the user picked; kept when the numbers change
        self._restoring = False

    def set_context(self, n_ctx: int) -> None:
        i = self.context_box.findData(n_ctx)
        if i >= 0:
            self.context_box.setCurrentIndex(i)
        self._vision_tip()

    def _vision_tip(self) -> None:
        n_ctx = self.context_box.currentData()
        note = image_tokens_note(int(n_ctx)) if isinstance(n_ctx, int) else ""
        self.vision_box.setToolTip(
            "Download each model's projector with it, so chats can include pictures and sound; the memory "
            f"column then counts the projector and its image encoder. {note}"
        )

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
                self.table.scrollTo(self.model.index(r, 0), QAbstractItemView.ScrollHint.PositionAtCenter)

    def _emit_selection(self, index: QModelIndex) -> None:
        note = str(index.data(NOTE_ROLE) or "") if index.isValid() else ""
        self.note_label.setText(f"ⓘ {note}" if note else "")
        self.note_label.setVisible(bool(note))
        entry = self.selected_entry() if index.isValid() else ""
        if entry and not self._restoring:
            self._wanted = entry
        self.selection_changed.emit(entry)
