"""Per-conversation settings: system prompt, sampling, context length."""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QFormLayout, QLabel, QPlainTextEdit, QSpinBox, QWidget

from gemmadesk.ui.setup_controller import CONTEXT_CHOICES


@dataclass
class ConversationSettings:
    system_prompt: str = ""
    temperature: float = 1.0
    top_p: float = 0.95
    top_k: int = 64
    max_tokens: int = 2048
    n_ctx: int = 8192
    thinking: bool = False


class ChatSettingsPanel(QWidget):
    changed = Signal()

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
        self.n_ctx.currentIndexChanged.connect(self.changed)
        for row in range(form.rowCount()):  # fixed captions: plain text, never guessed as HTML
            item = form.itemAt(row, QFormLayout.ItemRole.LabelRole)
            caption = item.widget() if item is not None else None
            if isinstance(caption, QLabel):
                caption.setTextFormat(Qt.TextFormat.PlainText)

    def set_values(self, s: ConversationSettings) -> None:
        widgets = (self.system_prompt, self.temperature, self.top_p, self.top_k, self.max_tokens, self.n_ctx)
        for w in widgets:
            w.blockSignals(True)
        self.system_prompt.setPlainText(s.system_prompt)
        self.temperature.setValue(s.temperature)
        self.top_p.setValue(s.top_p)
        self.top_k.setValue(s.top_k)
        self.max_tokens.setValue(s.max_tokens)
        i = self.n_ctx.findData(s.n_ctx)
        self.n_ctx.setCurrentIndex(i if i >= 0 else self.n_ctx.findData(8192))
        for w in widgets:
            w.blockSignals(False)

    def values(self, thinking: bool) -> ConversationSettings:
        return ConversationSettings(
            system_prompt=self.system_prompt.toPlainText(),
            temperature=self.temperature.value(),
            top_p=self.top_p.value(),
            top_k=self.top_k.value(),
            max_tokens=self.max_tokens.value(),
            n_ctx=int(self.n_ctx.currentData()),
            thinking=thinking,
        )


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
