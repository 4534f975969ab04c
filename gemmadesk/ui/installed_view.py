"""The Models page's "Installed" tab: every installed model (downloaded or imported) with its size, whether
it fits this machine now, and where its file is; Start chatting, Delete, Import, and the models folder.

A pure view: the window wires its signals to :class:`~gemmadesk.ui.models_controller.ModelsController` and
the chat. Every text from a file or the store is plain text (never rich text)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gemmadesk.core.store import InstalledModel
from gemmadesk.core.units import human_bytes
from gemmadesk.ui.models_controller import InstalledRow
from gemmadesk.ui.richtext import plain_tooltip
from gemmadesk.ui.setup_view import BADGE_COLOURS
from gemmadesk.ui.widgets import ElidedLabel, plain_label, push_button

SOURCE_WORDS = {"download": "downloaded", "import": "imported", "hf-cache": "Hugging Face cache"}
VERDICT_COLOURS = {**BADGE_COLOURS, "missing": "#c62828", "changed": "#c62828", "unknown": "#607d8b"}
MODEL_ID_ROLE = Qt.ItemDataRole.UserRole + 1


class InstalledPanel(QWidget):
    chat_requested = Signal(str)  # model id
    delete_requested = Signal(object)  # InstalledModel
    import_requested = Signal()
    change_folder_requested = Signal()
    open_folder_requested = Signal()

    COLUMNS = ("Model", "Size", "Fits here", "Source", "File")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.table = QTableWidget(0, len(self.COLUMNS))
        self.table.setAccessibleName("Installed models")
        self.table.setHorizontalHeaderLabels(list(self.COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # long paths keep their file name
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(self.COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._selection)
        self.table.itemDoubleClicked.connect(lambda _item: self._chat())
        self.empty = plain_label("No models installed yet. Download one from the Download tab, or import a GGUF "
                                 "file you already have.")
        self.detail = plain_label(name="About the selected model")
        self.chat_button = QPushButton("Start &chatting")
        self.delete_button = QPushButton("&Delete…")
        self.import_button = QPushButton("&Import GGUF…")
        for button, name in ((self.chat_button, "Chat with the selected model"),
                             (self.delete_button, "Delete the selected model"),
                             (self.import_button, "Import a GGUF file")):  # fmt: skip
            button.setAccessibleName(name)
        self.chat_button.clicked.connect(self._chat)
        self.delete_button.clicked.connect(self._delete)
        self.import_button.clicked.connect(self.import_requested)
        self.folder = ElidedLabel(mode=Qt.TextElideMode.ElideMiddle)
        self.folder.setAccessibleName("Models folder")
        self.change_folder_button = push_button("C&hange…", "Change the models folder", self.change_folder_requested)
        self.open_folder_button = push_button("&Open", "Open the models folder", self.open_folder_requested)
        hint = plain_label("Tip: drop a .gguf file on the window to import it. Imported files stay where they are; "
                           "GemmaDesk only ever deletes files it downloaded.", style="color: gray")

        buttons = QHBoxLayout()
        buttons.addWidget(self.import_button)
        buttons.addStretch(1)
        buttons.addWidget(self.delete_button)
        buttons.addWidget(self.chat_button)
        folder_row = QHBoxLayout()
        caption = QLabel("New downloads go to:")
        caption.setTextFormat(Qt.TextFormat.PlainText)
        folder_row.addWidget(caption)
        folder_row.addWidget(self.folder, 1)
        folder_row.addWidget(self.change_folder_button)
        folder_row.addWidget(self.open_folder_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.empty)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.detail)
        layout.addLayout(buttons)
        layout.addLayout(folder_row)
        layout.addWidget(hint)
        self._models: list[InstalledModel] = []
        self._details: dict[str, str] = {}
        self.set_rows([])

    def set_rows(self, rows: list[InstalledRow]) -> None:
        selected = self.selected()
        self.table.setRowCount(len(rows))
        self._models = [r.model for r in rows]
        for i, row in enumerate(rows):
            m = row.model
            cells = (m.display_name, human_bytes(m.size_bytes), row.verdict,
                     SOURCE_WORDS.get(str(m.source), str(m.source)), str(m.path))  # fmt: skip
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(MODEL_ID_ROLE, m.id)
                item.setToolTip(plain_tooltip(row.detail if col == 2 else text))
                if col == 2:
                    item.setForeground(QColor(VERDICT_COLOURS.get(row.verdict, "#607d8b")))
                self.table.setItem(i, col, item)
            first = self.table.item(i, 0)
            if first is not None:
                first.setData(Qt.ItemDataRole.AccessibleTextRole, f"{m.display_name}, {row.verdict}")
        self._details = {r.model.id: r.detail for r in rows}
        self.empty.setVisible(not rows)
        self.table.setVisible(bool(rows))
        if selected is not None:
            self.select(selected.id)
        elif rows:
            self.table.selectRow(0)
        self._selection()

    def select(self, model_id: str) -> None:
        for i, m in enumerate(self._models):
            if m.id == model_id:
                self.table.selectRow(i)

    def selected(self) -> InstalledModel | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows or not (0 <= rows[0].row() < len(self._models)):
            return None
        return self._models[rows[0].row()]

    def set_folder(self, path: str) -> None:
        self.folder.setText(path)

    def _selection(self) -> None:
        model = self.selected()
        self.chat_button.setEnabled(model is not None and model.status == "ok")
        self.delete_button.setEnabled(model is not None)
        self.delete_button.setText("&Delete…" if model is None or model.owned else "&Remove from list…")
        self.detail.setText(self._details.get(model.id, "") if model is not None else "")

    def _chat(self) -> None:
        model = self.selected()
        if model is not None and model.status == "ok":
            self.chat_requested.emit(model.id)

    def _delete(self) -> None:
        model = self.selected()
        if model is not None:
            self.delete_requested.emit(model)
