"""The main window: a stack of two pages (model setup, chat), menus, the notice strip. Composition only."""

from __future__ import annotations

import logging

from PySide6.QtCore import QByteArray, QSettings, Qt, QUrl, Slot
from PySide6.QtGui import QAction, QCloseEvent, QDesktopServices, QKeySequence
from PySide6.QtWidgets import QMainWindow, QMessageBox, QStackedWidget, QVBoxLayout, QWidget

from gemmadesk import APP_NAME, __version__
from gemmadesk.core.attention import attention_settings
from gemmadesk.core.catalog import Catalog
from gemmadesk.core.chat import HostState
from gemmadesk.core.fit import FitOptions
from gemmadesk.core.hardware import Hardware
from gemmadesk.core.history import HistoryError, HistoryStore
from gemmadesk.core.paths import AppPaths, app_paths
from gemmadesk.core.presets import PresetStore
from gemmadesk.core.remote import ServerStore
from gemmadesk.core.settings import Settings, SettingsStore
from gemmadesk.core.store import ModelStore
from gemmadesk.ui.chat_controller import ChatController
from gemmadesk.ui.chat_view import ChatView
from gemmadesk.ui.download_controller import DownloadController
from gemmadesk.ui.installed_tab import InstalledTab
from gemmadesk.ui.notice import NoticeBar
from gemmadesk.ui.remote_controller import RemoteController
from gemmadesk.ui.remote_view import VllmOffer
from gemmadesk.ui.richtext import esc
from gemmadesk.ui.serve_controller import ServeController, ServeOptions
from gemmadesk.ui.serve_view import ServeStatusWidget
from gemmadesk.ui.server_menu import ServerMenu
from gemmadesk.ui.setup_controller import SetupController
from gemmadesk.ui.setup_page import SetupPage
from gemmadesk.ui.tasks import TaskRunner
from gemmadesk.ui.window_actions import WindowActions

log = logging.getLogger(__name__)


class MainWindow(QMainWindow):
    def __init__(self, paths: AppPaths | None = None, hardware: Hardware | None = None,
                 catalog: Catalog | None = None, settings: Settings | None = None,
                 settings_store: SettingsStore | None = None) -> None:  # fmt: skip
        """``hardware``/``catalog`` replace the probe and the bundled catalog (``--hardware``, tests);
        ``settings``/``settings_store``: the user's settings as ``app.build`` read them (read here when
        None). They are read once and passed down; this window is the one that saves them."""
        super().__init__()
        self.paths = (paths or app_paths()).ensure()
        self.setWindowTitle(APP_NAME)
        self.settings_store = settings_store or SettingsStore(self.paths.settings_file)
        self.settings: Settings = settings if settings is not None else self.settings_store.load()
        self.tasks = TaskRunner(self)
        self.store = ModelStore(self.paths, settings=self.settings)
        kv_type, flash_attn, attention_problems = attention_settings(self.settings.kv_cache_type,
                                                                     self.settings.flash_attn)  # fmt: skip
        options = FitOptions(n_ctx=self.settings.context_length, kv_type=kv_type, flash_attn=flash_attn)
        self.setup = SetupController(self.tasks, self.store, catalog, options=options, parent=self)
        self.downloads = DownloadController(self.tasks, self.store, self)
        self.notice = NoticeBar()
        self.chat = ChatController(self.setup, self._open_history(), self.settings, self)
        # Serving the window's model to other programs, and models on other servers (issue 13).
        self.serve = ServeController(self.chat.bridge, self.tasks, self)
        self.serve.options = ServeOptions(port=self.settings.serve_port)
        self.remote = RemoteController(self.chat, self.tasks, ServerStore(self.paths.config_dir / "servers.json"), self)

        self.stack = QStackedWidget()
        self.setup_page = SetupPage(self.setup, self.downloads)
        self.chat_view = ChatView(self.chat, self.notice)
        self.stack.addWidget(self.setup_page)
        self.stack.addWidget(self.chat_view)
        self.chat_view.settings_panel.set_preset_store(PresetStore(self.paths.presets_file))
        self.window_actions = WindowActions(self)  # Import…, Export…, drops, theme, keyboard help
        self.installed = InstalledTab(self)  # the Models page's Installed tab
        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addWidget(self.notice)
        layout.addWidget(self.stack, 1)
        self.setCentralWidget(central)
        self._build_menus()
        self.vllm_offer = VllmOffer(self.setup_page.view.table, self.setup.catalog, self.remote)
        setup_layout = self.setup_page.layout()
        if setup_layout is not None:
            setup_layout.addWidget(self.vllm_offer)
        self.serve_status = ServeStatusWidget(self.serve, self._window_reply_waiting)
        self.statusBar().addPermanentWidget(self.serve_status)
        self.chat.busy_changed.connect(self.serve_status.refresh_busy)
        for source in (self.serve.notice, self.remote.notice):
            source.connect(self._notice)

        self.setup_page.context_chosen.connect(self._remember_context)
        self.setup_page.chat_requested.connect(self.open_chat)
        self.setup_page.back_requested.connect(self.show_chat)
        self.chat_view.sidebar.export_requested.connect(self.window_actions.choose_export)
        self.chat.model_ready.connect(self._remember_model)
        self.chat.bridge.stateChanged.connect(self._host_state)
        self.setup.hardware_failed.connect(
            lambda msg: self.notice.show_message(msg, "warning", "The list assumes CPU only; see the log for details.")
        )
        self._show_data_notices(attention_problems + self.remote.store.problems)
        self.remote.refresh()
        self._restore_geometry()
        self.chat.refresh_conversations()
        self.setup.hardware_ready.connect(self._first_screen)
        if hardware is None:
            self.setup.probe()
        else:
            self.setup.set_hardware(hardware)

    def _open_history(self) -> HistoryStore:
        try:
            return HistoryStore(self.paths.history_db)
        except HistoryError as exc:
            self.notice.show_message(str(exc), "error", "Chats will not be saved this time; see the log file.")
            return HistoryStore(":memory:")

    def _show_data_notices(self, settings_problems: list[str]) -> None:
        """What the settings, the model list and the chat history recovered from at start-up, in one notice (a
        damaged file kept aside, a read-only history whose new messages wait in a journal, a newer file; a
        setting that was unusable and replaced)."""
        self.store.list()
        notices = [*self.settings_store.problems, *settings_problems, *self.store.problems,
                   *self.chat.history.take_notices()]
        self.store.problems.clear()
        if notices:
            self.notice.show_message(" ".join(notices), "warning", "Nothing was deleted; details are in the log file.")

    def _first_screen(self) -> None:
        """With a model installed start in the chat (loading the last one used), else on the fit list."""
        self.setup.hardware_ready.disconnect(self._first_screen)
        installed = [m.id for m in self.chat.installed_models() if m.status == "ok"]
        if installed:
            last = self.settings.last_model
            self.open_chat(last if last in installed else installed[0])

    def open_chat(self, model_id: str) -> None:
        self.stack.setCurrentWidget(self.chat_view)
        if model_id != self.chat.model_id:
            self.chat.load_model(model_id)
        self.chat.refresh_models()
        if self.chat.conversation_id is None:
            convs = self.chat.history.list_conversations()
            if convs:
                self.chat.open_conversation(convs[0].id)
        self.chat_view.composer.edit.setFocus()

    def new_chat(self) -> None:
        """Ctrl+N, from any page: to the chat, with a new conversation."""
        if self.stack.currentWidget() is not self.chat_view:
            self.show_chat()
        self.chat.new_conversation()

    def show_chat(self) -> None:
        """Back to the chat; with no model loaded, the last one used (or the first installed) is loaded."""
        installed = [m.id for m in self.chat.installed_models() if m.status == "ok"]
        if self.chat.model_id is None and installed:
            last = self.settings.last_model
            self.open_chat(last if last in installed else installed[0])
            return
        self.stack.setCurrentWidget(self.chat_view)
        self.chat_view.composer.edit.setFocus()

    def _remember_model(self) -> None:
        if self.chat.model_id and self.chat.model_id != self.settings.last_model:
            self.settings.last_model = self.chat.model_id
            self._save_settings()

    # ------------------------------------------------------------------ menus
    def _build_menus(self) -> None:
        file_menu = self.menuBar().addMenu("&File")
        new_action = QAction("&New chat", self)
        new_action.setShortcut(QKeySequence.StandardKey.New)
        new_action.triggered.connect(self.new_chat)
        file_menu.addAction(new_action)
        self.models_action = QAction("&Models…", self)
        self.models_action.setShortcut(QKeySequence("Ctrl+Shift+M"))
        self.models_action.triggered.connect(self.show_setup)
        file_menu.addAction(self.models_action)
        self.window_actions.fill_file_menu(file_menu)
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)
        self.window_actions.add_view_menu(self.menuBar())
        self.server_menu = ServerMenu(self, self.serve, self.remote, self._remember_serve_port)
        self.menuBar().addMenu(self.server_menu.menu)
        help_menu = self.menuBar().addMenu("&Help")
        self.window_actions.fill_help_menu(help_menu)
        log_action = QAction("Open &log folder", self)
        log_action.triggered.connect(self.open_log_folder)
        help_menu.addAction(log_action)
        about = QAction(f"&About {APP_NAME}", self)
        about.triggered.connect(self.show_about)
        help_menu.addAction(about)

    @Slot(str, str, str)
    def _notice(self, level: str, text: str, next_step: str) -> None:
        self.notice.show_message(text, level, next_step)

    def _window_reply_waiting(self) -> bool:
        """A reply of the window waits while the model answers someone else (an API client)."""
        return self.chat.busy and self.chat.host_state.busy_client != "window"

    def _remember_serve_port(self, port: int) -> None:
        if port != self.settings.serve_port:
            self.settings.serve_port = port
            self._save_settings()

    @Slot(str)
    def show_internal_error(self, line: str) -> None:
        """An error nobody caught (the last-chance handler): say so; the traceback is in the log file."""
        self.notice.show_message(line, "error", "GemmaDesk keeps running; your chats are saved as they happen.")

    def show_setup(self) -> None:
        self.stack.setCurrentWidget(self.setup_page)

    def about_text(self) -> str:
        hw = self.setup.hardware
        backend = hw.backend.label if hw else "llama.cpp backend not inspected yet"
        return (
            f"<h3>{APP_NAME} {__version__}</h3><p>Run Google's Gemma 4 QAT models on this computer.</p>"
            f"<p>Engine: {esc(backend)}</p><p>Log file: {esc(self.paths.log_file)}</p>"
        )

    def show_about(self) -> None:
        QMessageBox.about(self, f"About {APP_NAME}", self.about_text())

    def open_log_folder(self) -> None:
        self.paths.log_dir.mkdir(parents=True, exist_ok=True)
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.paths.log_dir))):
            self.notice.show_message("Could not open the log folder.", "info", f"The log file is {self.paths.log_file}")

    def _remember_context(self, n_ctx: int) -> None:
        if n_ctx != self.settings.context_length:
            self.settings.context_length = n_ctx
            self._save_settings()

    @Slot(object)
    def _host_state(self, state: HostState) -> None:
        """The fit list plans for the context that is loaded, and it becomes the default for next time."""
        if state.ready and state.settings is not None:
            n_ctx = state.settings.n_ctx
            self.setup.set_context(n_ctx)
            self.setup_page.view.set_context(n_ctx)
            self._remember_context(n_ctx)

    def save_settings(self) -> None:
        self._save_settings()

    def _save_settings(self) -> None:
        try:
            self.settings_store.save(self.settings)
        except OSError as exc:
            self.notice.show_message(f"Could not save settings: {exc}", "warning", "Check free disk space.")

    # ------------------------------------------------------------------ geometry
    def _qsettings(self) -> QSettings:
        """QSettings holds only the window geometry, in an ini file beside settings.json."""
        return QSettings(str(self.paths.config_dir / "window.ini"), QSettings.Format.IniFormat)

    def _restore_geometry(self) -> None:
        geometry = self._qsettings().value("geometry")
        if isinstance(geometry, QByteArray) and not geometry.isEmpty():
            self.restoreGeometry(geometry)
        else:
            self.resize(1100, 720)

    def closeEvent(self, event: QCloseEvent) -> None:
        self._qsettings().setValue("geometry", self.saveGeometry())
        self.downloads.shutdown()
        self.serve.shutdown()  # API requests end before the model host stops
        self.chat.shutdown()
        self.tasks.close()
        self.chat.history.close()
        super().closeEvent(event)
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, False)
