"""The chat settings: the open conversation's system prompt (with presets) and sampling, and the loaded
model's context.

The context box shows what the model host has loaded (``set_context``, fed from the host's state) and
reports a choice with ``context_chosen``: the model is reloaded with it; the box never keeps a value of
its own that could disagree with the loaded model.

Layout: the presets row, the system prompt (it takes the height there is), then the numbers in a compact
form: nothing is spread over the panel's height, and no caption is cut (captions sit above or beside
fields that shrink first). Presets come from :class:`~gemmadesk.core.presets.PresetStore`: picking one
replaces the system prompt; "Save…" keeps the current prompt under a name; "Delete" removes a preset of
the user's.
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QPlainTextEdit,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from gemmadesk.core.presets import Preset, PresetError, PresetStore
from gemmadesk.core.types import SamplingParams
from gemmadesk.ui.setup_controller import CONTEXT_CHOICES


class ChatSettingsPanel(QWidget):
    changed = Signal()  # system prompt or sampling edited
    context_chosen = Signal(int)
    error = Signal(str)  # a preset could not be saved or read: one sentence

    def __init__(self, presets: PresetStore | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.presets_store = presets
        self.presets: list[Preset] = []
        self.preset_box = QComboBox()
        self.preset_box.setAccessibleName("System prompt presets")
        self.preset_box.setPlaceholderText("Presets…")
        self.preset_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.preset_box.setMinimumContentsLength(6)
        self.preset_box.activated.connect(self._preset_chosen)
        self.save_preset_button = QToolButton()
        self.save_preset_button.setText("Save…")
        self.save_preset_button.setAccessibleName("Save the system prompt as a preset")
        self.save_preset_button.clicked.connect(self.ask_preset_name)
        self.delete_preset_button = QToolButton()
        self.delete_preset_button.setText("Delete")
        self.delete_preset_button.setAccessibleName("Delete the chosen preset")
        self.delete_preset_button.clicked.connect(self.delete_preset)
        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setAccessibleName("System prompt")
        self.system_prompt.setPlaceholderText("Optional instructions for the whole conversation")
        self.system_prompt.setMinimumHeight(120)
        self.system_prompt.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.temperature = _double(0.0, 2.0, 0.05, "Temperature")
        self.top_p = _double(0.0, 1.0, 0.01, "Top p")
        self.top_k = _int(0, 1000, "Top k")
        self.max_tokens = _int(16, 32768, "Maximum reply tokens")
        self.n_ctx = QComboBox()
        self.n_ctx.setAccessibleName("Context length")
        self.n_ctx.setToolTip("Changing the context length reloads the model")
        for n in CONTEXT_CHOICES:
            self.n_ctx.addItem(f"{n // 1024}K tokens", n)
        presets_row = QHBoxLayout()
        presets_row.addWidget(self.preset_box, 1)
        presets_row.addWidget(self.save_preset_button)
        presets_row.addWidget(self.delete_preset_button)
        prompt_label = _caption("System &prompt")
        prompt_label.setBuddy(self.system_prompt)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        for caption, field in (("T&emperature", self.temperature), ("Top &p", self.top_p), ("Top &k", self.top_k),
                               ("Max reply &tokens", self.max_tokens), ("Conte&xt", self.n_ctx)):  # fmt: skip
            label = _caption(caption)
            label.setBuddy(field)
            form.addRow(label, field)
        layout = QVBoxLayout(self)
        layout.addLayout(presets_row)
        layout.addWidget(prompt_label)
        layout.addWidget(self.system_prompt, 1)
        layout.addLayout(form)
        note = _caption("Changing the context reloads the model.")
        note.setWordWrap(True)
        note.setMinimumWidth(120)  # wraps instead of widening the panel
        note.setStyleSheet("color: gray")
        layout.addWidget(note)
        self.system_prompt.textChanged.connect(self.changed)
        self.system_prompt.textChanged.connect(self._prompt_edited)
        for w in (self.temperature, self.top_p, self.top_k, self.max_tokens):
            w.valueChanged.connect(self.changed)
        self.n_ctx.activated.connect(self._context_activated)
        self._params = SamplingParams()
        self.name_dialog: QInputDialog | None = None
        self.reload_presets()

    # ------------------------------------------------------------------ presets
    def set_preset_store(self, store: PresetStore) -> None:
        self.presets_store = store
        self.reload_presets()

    def reload_presets(self, select: str = "") -> None:
        store = self.presets_store
        self.presets = store.all() if store is not None else []
        if store is not None and store.problems:
            self.error.emit(" ".join(store.problems))
            store.problems.clear()
        self.preset_box.blockSignals(True)
        self.preset_box.clear()
        for preset in self.presets:
            self.preset_box.addItem(preset.name if preset.builtin else f"{preset.name} (yours)", preset.name)
            self.preset_box.setItemData(self.preset_box.count() - 1, preset.text, Qt.ItemDataRole.ToolTipRole)
        self.preset_box.setCurrentIndex(self.preset_box.findData(select) if select else -1)
        self.preset_box.blockSignals(False)
        self._preset_buttons()

    def current_preset(self) -> Preset | None:
        name = self.preset_box.currentData()
        return next((p for p in self.presets if p.name == name), None)

    def _preset_chosen(self, _index: int) -> None:
        preset = self.current_preset()
        if preset is not None:
            self.system_prompt.setPlainText(preset.text)  # emits changed: the conversation keeps it
        self._preset_buttons()

    def _prompt_edited(self) -> None:
        preset = self.current_preset()
        if preset is not None and preset.text != self.system_prompt.toPlainText():
            self.preset_box.setCurrentIndex(-1)  # the prompt is no longer that preset
            self._preset_buttons()

    def _preset_buttons(self) -> None:
        preset = self.current_preset()
        self.delete_preset_button.setEnabled(preset is not None and not preset.builtin)
        self.save_preset_button.setEnabled(self.presets_store is not None)

    def ask_preset_name(self) -> QInputDialog:
        dialog = QInputDialog(self)
        dialog.setObjectName("preset-name")
        dialog.setWindowTitle("Save preset")
        dialog.setLabelText("Name for this system prompt:")
        dialog.textValueSelected.connect(self.save_preset)
        dialog.finished.connect(dialog.deleteLater)
        self.name_dialog = dialog
        dialog.open()
        return dialog

    def save_preset(self, name: str) -> None:
        if self.presets_store is None:
            return
        try:
            saved = self.presets_store.save(name, self.system_prompt.toPlainText())
        except (PresetError, OSError) as exc:
            self.error.emit(f"The preset was not saved: {exc}")
            return
        self.reload_presets(select=saved.name)

    def delete_preset(self) -> None:
        preset = self.current_preset()
        if self.presets_store is None or preset is None or preset.builtin:
            return
        try:
            self.presets_store.delete(preset.name)
        except OSError as exc:
            self.error.emit(f"The preset was not deleted: {exc}")
            return
        self.reload_presets()

    # ------------------------------------------------------------------ values
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
        match = next((i for i, p in enumerate(self.presets) if p.text == system_prompt and system_prompt), -1)
        self.preset_box.setCurrentIndex(match)
        self._preset_buttons()

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


def _caption(text: str) -> QLabel:
    label = QLabel(text)
    label.setTextFormat(Qt.TextFormat.PlainText)  # fixed captions: plain text, never guessed as HTML
    # An underlined mnemonic splits the word where it is drawn and loses the kerning there ("T&e…"), so the
    # caption is drawn wider than Qt measures it: room for that, or its last letter is cut.
    label.setMinimumWidth(label.sizeHint().width() + label.fontMetrics().averageCharWidth())
    return label


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
