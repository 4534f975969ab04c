"""Remote engines' widgets: "Add a server", and the fit list's ``w4a16-ct`` rows on vLLM (what a GPU server
needs per tensor-parallel degree, the exact ``vllm serve`` command, and a button that adds that server).
Views only: every network call goes through :class:`RemoteController` (thread pool)."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, Qt, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gemmadesk.core.catalog import Catalog, CatalogEntry
from gemmadesk.core.units import human_bytes
from gemmadesk.core.vllm_plan import VllmPlan, is_vllm_entry, plan_vllm
from gemmadesk.ui.fit_model import ENTRY_ID_ROLE
from gemmadesk.ui.remote_controller import RemoteController
from gemmadesk.ui.widgets import flush_box, plain_label, push_button

CONTEXT_CHOICES = (8192, 32768, 131072)


def _plain_captions(form: QFormLayout) -> None:
    for row in range(form.rowCount()):
        item = form.itemAt(row, QFormLayout.ItemRole.LabelRole)
        caption = item.widget() if item is not None else None
        if isinstance(caption, QLabel):
            caption.setTextFormat(Qt.TextFormat.PlainText)


class _ServerFields:
    """Address + API key fields and the "checking…" / problem line shared by both dialogs."""

    def __init__(self, dialog: QDialog, remote: RemoteController) -> None:
        self.remote = remote
        self.dialog = dialog
        self.url = QLineEdit()
        self.url.setAccessibleName("Server address")
        self.url.setPlaceholderText("http://192.168.1.20:8000/v1")
        self.api_key = QLineEdit()
        self.api_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.api_key.setAccessibleName("API key")
        self.api_key.setPlaceholderText("optional")
        self.problem = plain_label(name="Problem", style="color: #c62828")  # server text goes here
        self.checking = False


class _ServerDialog(QDialog):
    """What both dialogs do with the server: check it (models listed), then close once it is saved, or say
    why not and let the user correct it. Subclasses make ``fields`` and ``add_button`` and connect
    ``remote.server_added`` / ``remote.add_failed`` to :meth:`_added` / :meth:`_failed`."""

    remote: RemoteController
    fields: _ServerFields
    add_button: QPushButton

    def _check_and_add(self, name: str, expect_model: str | None) -> None:
        if self.fields.checking:
            return
        self.fields.checking = True
        self.add_button.setEnabled(False)
        self.fields.problem.setStyleSheet("")
        self.fields.problem.setText("Checking the server…")
        self.remote.add_server(name, self.fields.url.text(), self.fields.api_key.text(), expect_model)

    @Slot(object)
    def _added(self, _entry: object) -> None:
        if self.fields.checking:
            self.fields.checking = False
            self.accept()

    @Slot(str)
    def _failed(self, message: str) -> None:
        if not self.fields.checking:
            return
        self.fields.checking = False
        self.add_button.setEnabled(True)
        self.fields.problem.setStyleSheet("color: #c62828")
        self.fields.problem.setText(message)


class AddServerDialog(_ServerDialog):
    """Name, base URL, optional API key; the server is checked (models listed) before it is saved."""

    def __init__(self, remote: RemoteController, parent: QWidget | None = None, *, name: str = "",
                 url: str = "", expect_model: str | None = None) -> None:  # fmt: skip
        super().__init__(parent)
        self.setWindowTitle("Add a server")
        self.remote = remote
        self.expect_model = expect_model
        self.name = QLineEdit(name)
        self.name.setAccessibleName("Server name")
        self.name.setPlaceholderText("GPU box")
        self.fields = _ServerFields(self, remote)
        self.fields.url.setText(url)
        note = plain_label("Any OpenAI-compatible server: vLLM, llama-server, Ollama, LM Studio or another "
                           "GemmaDesk. Certificates are always checked; the key is saved readable only by you.")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.add_button = self.buttons.addButton("Add", QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.accepted.connect(self.submit)
        self.buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow(note)
        form.addRow("&Name", self.name)
        form.addRow("&Address", self.fields.url)
        form.addRow("API &key", self.fields.api_key)
        form.addRow(self.fields.problem)
        form.addRow(self.buttons)
        _plain_captions(form)
        remote.server_added.connect(self._added)
        remote.add_failed.connect(self._failed)

    def submit(self) -> None:
        self._check_and_add(self.name.text().strip(), self.expect_model)


class VllmDialog(_ServerDialog):
    """What a ``w4a16-ct`` checkpoint needs on a vLLM server, the command to start it, and "Add this server"."""

    def __init__(self, entry: CatalogEntry, catalog: Catalog, remote: RemoteController,
                 parent: QWidget | None = None) -> None:  # fmt: skip
        super().__init__(parent)
        self.entry, self.catalog, self.remote = entry, catalog, remote
        self.setWindowTitle(f"Gemma 4 {entry.size} on a GPU server (vLLM)")
        intro = plain_label(f"{entry.repo_id} runs on vLLM with one or more NVIDIA GPUs. Choose the context "
                            "length and the number of GPUs; start the command on your GPU server, then add the server "
                            "here.")
        self.context = QComboBox()
        self.context.setAccessibleName("Context length (--max-model-len)")
        n_train = catalog.arch(entry).n_ctx_train
        for n in CONTEXT_CHOICES:
            if n <= n_train:
                self.context.addItem(f"{n // 1024}K tokens", n)
        self.context.setCurrentIndex(min(1, self.context.count() - 1))
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["GPUs", "Memory per GPU", "Of which weights"])
        self.table.setAccessibleName("GPU memory needed per tensor-parallel degree")
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.command = QLineEdit()
        self.command.setReadOnly(True)
        self.command.setAccessibleName("The vllm serve command")
        copy = push_button("Copy", "Copy the command", self.copy_command)
        row = QHBoxLayout()
        row.addWidget(self.command, 1)
        row.addWidget(copy)
        self.fields = _ServerFields(self, remote)
        self.fields.url.setPlaceholderText("http://gpu-server:8000/v1")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.add_button = self.buttons.addButton("Add this server", QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.accepted.connect(self.submit)
        self.buttons.rejected.connect(self.reject)
        form = QFormLayout()
        form.addRow("Conte&xt", self.context)
        form.addRow(self.table)
        form.addRow("&Command", row)
        form.addRow("Server &address", self.fields.url)
        form.addRow("API &key", self.fields.api_key)
        form.addRow(self.fields.problem)
        _plain_captions(form)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.buttons)
        self.plan: VllmPlan | None = None
        self.context.currentIndexChanged.connect(self._replan)
        self.table.currentCellChanged.connect(lambda *_: self._show_command())
        remote.server_added.connect(self._added)
        remote.add_failed.connect(self._failed)
        self._replan()
        self.resize(640, 420)

    def _replan(self) -> None:
        keep = self.tensor_parallel()
        self.plan = plan_vllm(self.entry, self.catalog, int(self.context.currentData()))
        self.table.setRowCount(len(self.plan.options))
        estimated = " (estimated)" if self.plan.checkpoint_estimated else ""
        for i, option in enumerate(self.plan.options):
            cells = (str(option.tensor_parallel), human_bytes(option.gpu_memory_needed),
                     human_bytes(option.weights_per_gpu) + estimated)  # fmt: skip
            for col, text in enumerate(cells):
                self.table.setItem(i, col, QTableWidgetItem(text))
        rows = [o.tensor_parallel for o in self.plan.options]
        self.table.selectRow(rows.index(keep) if keep in rows else 0)
        self._show_command()

    def tensor_parallel(self) -> int:
        if self.plan is None or not self.plan.options:
            return 1
        row = max(0, self.table.currentRow())
        return self.plan.options[min(row, len(self.plan.options) - 1)].tensor_parallel

    def _show_command(self) -> None:
        if self.plan is not None:
            self.command.setText(self.plan.command(self.tensor_parallel()))

    def copy_command(self) -> None:
        QGuiApplication.clipboard().setText(self.command.text())

    def submit(self) -> None:
        self._check_and_add(f"vLLM · Gemma 4 {self.entry.size}", self.entry.repo_id)


class VllmOffer(QWidget):
    """Under the fit list: for a ``w4a16-ct`` row, a button that opens :class:`VllmDialog`."""

    def __init__(self, table: QAbstractItemView, catalog: Catalog, remote: RemoteController,
                 parent: QWidget | None = None) -> None:  # fmt: skip
        super().__init__(parent)
        self.catalog, self.remote = catalog, remote
        self.entry: CatalogEntry | None = None
        self.dialog: VllmDialog | None = None
        self.label = plain_label()
        self.button = push_button("Run it on a GPU server (vLLM)…", "Run this model on a GPU server with vLLM",
                                  self.open_dialog)
        flush_box(QHBoxLayout, self, self.label, self.button, grow=self.label)
        self.hide()
        table.selectionModel().currentRowChanged.connect(self._current_changed)
        table.doubleClicked.connect(self._double_clicked)

    def _entry_at(self, index: QModelIndex) -> CatalogEntry | None:
        entry_id = index.data(ENTRY_ID_ROLE) if index.isValid() else None
        if not entry_id:
            return None
        try:
            entry = self.catalog.get(str(entry_id))
        except KeyError:
            return None
        return entry if is_vllm_entry(entry) else None

    @Slot(QModelIndex, QModelIndex)
    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self.entry = self._entry_at(current)
        if self.entry is not None:
            self.label.setText(f"Gemma 4 {self.entry.size} {self.entry.format} is for vLLM on NVIDIA GPUs: GemmaDesk "
                               "shows what a GPU server needs and chats with it once it runs.")  # fmt: skip
        self.setVisible(self.entry is not None)

    @Slot(QModelIndex)
    def _double_clicked(self, index: QModelIndex) -> None:
        entry = self._entry_at(index)
        if entry is not None:
            self.entry = entry
            self.open_dialog()

    def open_dialog(self) -> None:
        if self.entry is None:
            return
        if self.dialog is not None:
            self.dialog.close()
        self.dialog = VllmDialog(self.entry, self.catalog, self.remote, self.window())
        self.dialog.setWindowModality(Qt.WindowModality.WindowModal)
        self.dialog.open()
