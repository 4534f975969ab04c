"""The chat page: conversation sidebar, model switcher with load progress and placement banner, the
transcript, the composer and the per-conversation settings. Pure composition and wiring: every action
goes to :class:`ChatController`."""

from __future__ import annotations

from PySide6.QtCore import QItemSelectionModel, QPoint, Qt, Signal, Slot
from PySide6.QtGui import QDragEnterEvent, QDragMoveEvent, QDropEvent, QImage, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from gemmadesk.core.chat import HostState
from gemmadesk.core.types import Attachment
from gemmadesk.ui.attachments import FILE_FILTER, ImageViewer
from gemmadesk.ui.chat_controller import ChatController
from gemmadesk.ui.chat_settings import ChatSettingsPanel
from gemmadesk.ui.composer import Composer, carries_attachment, local_files
from gemmadesk.ui.conversation_delegate import ConversationDelegate
from gemmadesk.ui.conversation_model import CONVERSATION_ID_ROLE
from gemmadesk.ui.message_view import MessageView
from gemmadesk.ui.notice import NoticeBar
from gemmadesk.ui.widgets import ElidedLabel, flush_box, plain_label, push_button


class Sidebar(QWidget):
    export_requested = Signal(int, str)  # conversation id, "md" | "json"

    def __init__(self, ctl: ChatController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctl = ctl
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search chats (Ctrl+F)")
        self.search.setAccessibleName("Search conversations")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(ctl.refresh_conversations)
        self.list = QListView()
        self.list.setAccessibleName("Conversations")
        self.list.setModel(ctl.conversations)
        self.list.setEditTriggers(
            QAbstractItemView.EditTrigger.EditKeyPressed | QAbstractItemView.EditTrigger.DoubleClicked
        )
        self.list.selectionModel().currentRowChanged.connect(self._picked)
        # Long titles end in "…" at the list's width (no horizontal scrollbar); search hits show their text.
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.list.setItemDelegate(ConversationDelegate(lambda: ctl.conversations.terms, self.list))
        self.list.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._menu)
        delete_key = QShortcut(QKeySequence(QKeySequence.StandardKey.Delete), self.list, self.confirm_delete)
        delete_key.setContext(Qt.ShortcutContext.WidgetShortcut)
        self.new_button = QPushButton("+ New chat")
        self.new_button.setAccessibleName("New chat")
        self.new_button.setToolTip("New chat (Ctrl+N)")
        self.new_button.clicked.connect(lambda: ctl.new_conversation())
        self.rename_button = QPushButton("Rename")
        self.rename_button.setAccessibleName("Rename conversation")
        self.rename_button.clicked.connect(lambda: self.list.edit(self.list.currentIndex()))
        self.delete_button = push_button("Delete", "Delete conversation", self.confirm_delete)
        row = QHBoxLayout()
        row.addWidget(self.rename_button)
        row.addWidget(self.delete_button)
        flush_box(QVBoxLayout, self, self.new_button, self.search, self.list, row, grow=self.list)
        ctl.conversations.modelReset.connect(self._reselect)

    def _menu(self, pos: QPoint) -> None:
        index = self.list.indexAt(pos)
        if not index.isValid():
            return
        self.list.setCurrentIndex(index)
        cid = int(index.data(CONVERSATION_ID_ROLE))
        menu = QMenu(self)
        menu.addAction("&Rename", lambda: self.list.edit(index))
        menu.addAction("Export as &Markdown…", lambda: self.export_requested.emit(cid, "md"))
        menu.addAction("Export as &JSON…", lambda: self.export_requested.emit(cid, "json"))
        menu.addSeparator()
        menu.addAction("&Delete…", self.confirm_delete)
        menu.popup(self.list.viewport().mapToGlobal(pos))

    def _picked(self, index: object) -> None:
        cid = self.list.currentIndex().data(CONVERSATION_ID_ROLE)
        if cid is not None and cid != self.ctl.conversation_id:
            self.ctl.open_conversation(int(cid))

    def _reselect(self) -> None:
        row = self.ctl.conversations.row_of(self.ctl.conversation_id or -1)
        if row >= 0:
            self.list.selectionModel().setCurrentIndex(
                self.ctl.conversations.index(row), QItemSelectionModel.SelectionFlag.ClearAndSelect
            )

    def confirm_delete(self) -> None:
        """Ask first (window-modal, not blocking the event loop), then delete."""
        index = self.list.currentIndex()
        if not index.isValid():
            return
        cid, title = int(index.data(CONVERSATION_ID_ROLE)), str(index.data())
        buttons = QMessageBox.StandardButton
        box = QMessageBox(QMessageBox.Icon.Question, "Delete conversation", f"Delete “{title}” for good?")
        box.setTextFormat(Qt.TextFormat.PlainText)  # the title is the user's (or the model's) text
        box.setStandardButtons(buttons.Yes | buttons.Cancel)
        box.setDefaultButton(buttons.Cancel)
        box.setParent(self, box.windowFlags())
        box.setWindowModality(Qt.WindowModality.WindowModal)
        box.setObjectName("confirm-delete")

        def decided() -> None:
            if box.clickedButton() is box.button(buttons.Yes):
                self.ctl.delete(cid)

        box.finished.connect(decided)
        box.open()


class ChatView(QWidget):
    def __init__(self, ctl: ChatController, notice: NoticeBar, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctl = ctl
        self.notice = notice
        self.sidebar = Sidebar(ctl)
        self.model_box = QComboBox()
        self.model_box.setAccessibleName("Model")
        # Sized by a short name, not the longest one: the page fits an 800 px window with Settings open.
        self.model_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model_box.setMinimumContentsLength(14)
        self.model_box.setMaximumWidth(420)
        self.model_box.activated.connect(lambda i: ctl.load_model(str(self.model_box.itemData(i))))
        self.load_bar = QProgressBar()
        self.load_bar.setAccessibleName("Model loading progress")
        self.load_bar.setRange(0, 100)
        self.load_bar.setMaximumWidth(200)
        self.load_bar.hide()
        self.model_status = ElidedLabel("No model loaded")  # plain text: the model's name comes from its file
        self.model_status.setAccessibleName("Model status")
        self._ready_text = ""  # the status when no reply is being written
        self.settings_toggle = QToolButton()
        self.settings_toggle.setText("Settings")
        self.settings_toggle.setCheckable(True)
        self.settings_toggle.setAccessibleName("Show conversation settings")
        self.settings_toggle.setToolTip("System prompt, presets and sampling (Ctrl+,)")
        self.banner = plain_label(name="Where the model runs",
                                  style="background: #fff3e0; color: #8a4b00; padding: 6px; border-radius: 4px")
        self.banner.hide()
        self.messages = MessageView(ctl.transcript, jobs=ctl.attachment_jobs)
        self.composer = Composer()
        self.settings_panel = ChatSettingsPanel()
        self.settings_panel.set_values(ctl.system_prompt, ctl.params)
        self.settings_panel.set_context(ctl.settings.context_length)
        self._sync_thinking()
        self._hint()
        self.settings_panel.hide()
        self.settings_toggle.toggled.connect(self._show_settings)

        bar = QHBoxLayout()
        model_label = QLabel("&Model:")
        model_label.setTextFormat(Qt.TextFormat.PlainText)
        model_label.setBuddy(self.model_box)
        bar.addWidget(model_label)
        bar.addWidget(self.model_box, 1)  # the two share what is left: the name shows in full where it can
        bar.addWidget(self.load_bar)
        bar.addWidget(self.model_status, 1)
        bar.addWidget(self.settings_toggle)
        center = QWidget()
        flush_box(QVBoxLayout, center, bar, self.banner, self.messages, self.composer, grow=self.messages)
        self.split = split = QSplitter()
        split.addWidget(self.sidebar)
        split.addWidget(center)
        split.addWidget(self.settings_panel)
        split.setStretchFactor(1, 1)
        split.setSizes([220, 700, 260])
        flush_box(QVBoxLayout, self, split)
        self._wire()
        self._shortcuts()
        self.setAcceptDrops(True)  # files dropped anywhere on the chat are attached
        self.file_dialog: QFileDialog | None = None
        self.setTabOrder(self.composer.edit, self.composer.send_button)
        self.setTabOrder(self.composer.send_button, self.composer.thinking)
        self.setTabOrder(self.composer.thinking, self.sidebar.search)

    def _wire(self) -> None:
        ctl, composer, panel = self.ctl, self.composer, self.settings_panel
        wiring = (
            (composer.send, self._send), (composer.stop, ctl.stop), (composer.thinking.toggled, self._settings_changed),
            (self.messages.regenerate_requested, ctl.regenerate), (self.messages.edit_requested, self._edit_requested),
            (panel.changed, self._settings_changed), (panel.context_chosen, ctl.set_context),
            (ctl.bridge.stateChanged, self._host_state), (ctl.busy_changed, self._busy),
            (ctl.model_loading, self._loading), (ctl.model_ready, self._ready), (ctl.models_changed, self._models),
            (ctl.conversation_opened, self._opened), (ctl.notice, self._notice),
            (ctl.search_matches, self.messages.highlight), (panel.error, self._panel_error),
            (composer.attach_clicked, self.pick_files), (composer.files_dropped, ctl.attachment_jobs.attach_files),
            (composer.image_pasted, ctl.attachment_jobs.attach_image),
            (ctl.attachment_jobs.prepared, composer.add_attachment),
            (self.messages.image_requested, self.view_image), (composer.attachments.view_requested, self.view_image),
        )
        for signal, slot in wiring:
            signal.connect(slot)

    def _notice(self, level: str, text: str, next_step: str) -> None:
        self.notice.show_message(text, level, next_step)

    def _show_settings(self, shown: bool) -> None:
        """Open the settings beside the chat without widening the window: in a narrow window the chat list
        gives up some of its width, so the chat keeps at least half of it."""
        self.settings_panel.setVisible(shown)
        if shown:
            sizes = self.split.sizes()
            total = sum(sizes)
            panel = max(self.settings_panel.minimumSizeHint().width(), min(280, total // 4))
            side = min(sizes[0], max(self.sidebar.minimumSizeHint().width(), total // 5))
            self.split.setSizes([side, max(total - side - panel, 0), panel])

    def _panel_error(self, text: str) -> None:
        self.notice.show_message(text, "warning", "")

    def _shortcuts(self) -> None:
        QShortcut(QKeySequence.StandardKey.Find, self, self.sidebar.search.setFocus)
        QShortcut(QKeySequence(Qt.Key.Key_Escape), self, self.composer.escape)
        QShortcut(QKeySequence("Ctrl+,"), self, self.settings_toggle.toggle)

    # ------------------------------------------------------------------ attachments
    def pick_files(self) -> None:
        """The paper clip: a file dialog (not blocking the event loop) for images and audio."""
        why = self.ctl.attachment_jobs.refusal()
        if why:
            self.notice.show_message(why, "warning")
            return
        dialog = QFileDialog(self, "Attach images or audio", "", FILE_FILTER)
        dialog.setFileMode(QFileDialog.FileMode.ExistingFiles)
        dialog.filesSelected.connect(self.ctl.attachment_jobs.attach_files)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.file_dialog = dialog
        dialog.open()

    def view_image(self, att: Attachment) -> ImageViewer:
        viewer = ImageViewer(att, self.ctl.attachment_jobs.tasks, self)
        viewer.show()
        return viewer

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if carries_attachment(event.mimeData()):
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if carries_attachment(event.mimeData()):
            event.acceptProposedAction()
        else:
            super().dragMoveEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        mime = event.mimeData()
        files = local_files(mime)
        if files:
            self.ctl.attachment_jobs.attach_files(files)
        elif mime.hasImage() and isinstance(image := mime.imageData(), QImage):
            self.ctl.attachment_jobs.attach_image(image)
        else:
            super().dropEvent(event)
            return
        event.acceptProposedAction()

    # ------------------------------------------------------------------ reactions
    def _send(self, text: str, message_id: int | None) -> None:
        if message_id is None:
            accepted = self.ctl.send(text, self.composer.pending_attachments())
        else:
            accepted = self.ctl.edit_and_resend(message_id, text)
        if accepted:
            self.composer.sent()

    def _edit_requested(self, row: int) -> None:
        message = self.ctl.transcript.message(row)
        if message.id is not None:
            self.composer.start_edit(message.id, message.content)

    def _settings_changed(self) -> None:
        self.ctl.update_settings(*self.settings_panel.values(self.composer.thinking.isChecked()))

    @Slot(object)
    def _host_state(self, state: HostState) -> None:
        """The context box shows what is loaded: the host's state, never a copy of its own."""
        if state.settings is not None:
            self.settings_panel.set_context(state.settings.n_ctx)

    def _busy(self, busy: bool) -> None:
        self.composer.set_busy(busy)
        self.messages.set_busy(busy)
        self.model_box.setEnabled(not busy)
        if busy:
            self.model_status.setText("Writing a reply… (Esc stops)")
        elif self._ready_text:
            self.model_status.setText(self._ready_text)

    def _sync_thinking(self) -> None:
        """The Thinking switch: on only for models that can think; it shows the conversation's setting."""
        state, report = self.ctl.host_state, self.ctl.report
        info = state.info if state.ready else None
        supported = info.supports_thinking if info is not None else report.supports_thinking if report else True
        box = self.composer.thinking
        box.blockSignals(True)
        box.setEnabled(supported)
        box.setChecked(supported and self.ctl.params.thinking)
        box.setToolTip("Let the model think before it answers" if supported
                       else "This model cannot think before answering")  # fmt: skip
        box.blockSignals(False)

    def _hint(self) -> None:
        if self.ctl.report is None and self.ctl.model_id is None:
            self.messages.set_hint("No model is loaded", "Pick an installed model above, or download one: File → "
                                   "Models… (Ctrl+Shift+M).")
        else:
            self.messages.set_hint("Start a conversation", "Type your message below and press Enter (Shift+Enter "
                                   "adds a line; Esc stops a reply). Settings, top right, has the system prompt, "
                                   "presets and sampling.")

    def _loading(self, name: str, fraction: float) -> None:
        if fraction < 0:
            self.load_bar.hide()
            self._ready_text = ""
            self.model_status.setText("No model loaded")
            self._hint()
            return
        self.load_bar.show()
        self.load_bar.setValue(int(fraction * 100))
        self.model_status.setText(f"Loading {name}…")
        self.composer.send_button.setEnabled(False)

    def _ready(self, name: str, banner: str) -> None:
        self.load_bar.hide()
        report = self.ctl.report
        if report is None or report.n_gpu_layers == 0:
            where = "CPU"
        else:
            where = "GPU" if report.n_gpu_layers > report.n_layers else "GPU + CPU"
        ctx = f" · {report.n_ctx // 1024}K context" if report else ""
        remote = self.ctl.remote_info
        if remote is not None:  # a model on another server (gemmadesk.ui.remote_controller)
            where, ctx = "remote server", f" · {remote.n_ctx // 1024}K context" if remote.n_ctx >= 1024 else ""
        senses = ""
        if report is not None and (report.supports_images or report.supports_audio):
            senses = " · sees images" + (" and hears audio" if report.supports_audio else "")
        elif report is not None and report.architecture == "gemma4" and remote is None:
            senses = " · text only (no projector)"
        self._ready_text = f"Ready · {where}{ctx}{senses}"
        self.model_status.setText(self._ready_text)
        why = self.ctl.attachment_jobs.refusal()
        self.composer.set_attach_refusal(why)
        self.model_status.setToolTip(why or "")
        self._sync_thinking()
        self._hint()
        self.composer.send_button.setEnabled(True)
        self.banner.setText(banner)
        self.banner.setVisible(bool(banner))
        self.composer.edit.setFocus()

    def _models(self, models: list[tuple[str, str]]) -> None:
        self.model_box.clear()
        for model_id, name in models:
            self.model_box.addItem(name, model_id)
        i = self.model_box.findData(self.ctl.model_id)
        self.model_box.setCurrentIndex(i)

    def _opened(self, _cid: int) -> None:
        self.composer.cancel_edit()  # an edit belongs to the conversation it was started in
        self.settings_panel.set_values(self.ctl.system_prompt, self.ctl.params)
        self._sync_thinking()
        self.sidebar._reselect()
