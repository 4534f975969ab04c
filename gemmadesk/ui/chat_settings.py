"""The chat settings: the open conversation's system prompt and sampling, and the loaded model's context.

The context box shows what the model host has loaded (``set_context``, fed from the host's state) and
reports a choice with ``context_chosen``: the model is reloaded with it; the box never keeps a value of
its own that could disagree with the loaded model.
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QFormLayout, QLabel, QPlainTextEdit, QSpinBox, QWidget

from gemmadesk.core.types import SamplingParams
from gemmadesk.ui.setup_controller import CONTEXT_CHOICES


class ChatSettingsPanel(QWidget):
    changed = Signal()  # system prompt or sampling edited
    context_chosen = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setAccessibleName("System prompt")
        self.system_prompt.setPlaceholderText("Optional instructions for the whole conversation")
        self.system_prompt.setFixedHeight(90)
        self.temperature = _double(0.0, 2.0, 0.05, "Temperature")
        self.top_p = _double(0.0, 1.0, 0.01, "Top p")
        self.top_k = _int(0, 1000, "Top k")
        self.max_tokens = _int(16, 32768, "Maximum reply tokens")
        self.n_ctx = QComboBox()
        self.n_ctx.setAccessibleName("Context length")
        for n in CONTEXT_CHOICES:
            self.n_ctx.addItem(f"{n // 1024}K tokens", n)
        form = QFormLayout(self)
        form.addRow("System &prompt", self.system_prompt)
        form.addRow("T&emperature", self.temperature)
        form.addRow("Top &p", self.top_p)
        form.addRow("Top &k", self.top_k)
        form.addRow("Max reply &tokens", self.max_tokens)
        form.addRow("Conte&xt (reloads model)", self.n_ctx)
        self.system_prompt.textChanged.connect(self.changed)
        for w in (self.temperature, self.top_p, self.top_k, self.max_tokens):
            w.valueChanged.connect(self.changed)
        self.n_ctx.activated.connect(self._context_activated)
        self._params = SamplingParams()
        for row in range(form.rowCount()):  # fixed captions: plain text, never guessed as HTML
            item = form.itemAt(row, QFormLayout.ItemRole.LabelRole)
            caption = item.widget() if item is not None else None
            if isinstance(caption, QLabel):
                caption.setTextFormat(Qt.TextFormat.PlainText)

    def set_values(self, system_prompt: str, params: SamplingParams) -> None:
        widgets = (self.system_prompt, self.temperature, self.top_p, self.top_k, self.max_tokens)
        for w in widgets:
            w.blockSignals(True)
        self._params = params
        self.system_prompt.setPlainText(system_prompt)
        self.temperature.setValue(params.temperature)
        self.top_p.setValue(params.top_p)
        self.top_k.setValue(params.top_k)
        self.max_tokens.setValue(params.max_tokens)
        for w in widgets:
            w.blockSignals(False)

    def _context_activated(self, index: int) -> None:
        self.context_chosen.emit(int(self.n_ctx.itemData(index)))

    def set_context(self, n_ctx: int) -> None:
        """Show the loaded model's context length (a length not in the list is added)."""
        i = self.n_ctx.findData(n_ctx)
        if i < 0:
            self.n_ctx.addItem(f"{n_ctx:,} tokens", n_ctx)
            i = self.n_ctx.count() - 1
        self.n_ctx.setCurrentIndex(i)

    def values(self, thinking: bool) -> tuple[str, SamplingParams]:
        """(system prompt, sampling); fields this panel does not show keep their values."""
        params = replace(
            self._params,
            temperature=self.temperature.value(),
            top_p=self.top_p.value(),
            top_k=self.top_k.value(),
            max_tokens=self.max_tokens.value(),
            thinking=thinking,
        )
        return self.system_prompt.toPlainText(), params


def _double(lo: float, hi: float, step: float, name: str) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(lo, hi)
    box.setSingleStep(step)
    box.setDecimals(2)
    box.setAccessibleName(name)
    return box


def _int(lo: int, hi: int, name: str) -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setAccessibleName(name)
    return box
