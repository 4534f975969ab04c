"""The window's "Server" menu: serve the loaded model on localhost, and the user's remote servers.

    Serve this model on localhost:8089   (a switch; the status bar shows the URL to copy and the requests)
    Server options…                      (port; another address only on purpose, with an API key)
    ─────
    Add a server…                        (any OpenAI-compatible server: its models join the model box)
    Remove a server ▸
    Refresh remote models
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, Slot
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMainWindow, QMenu

from gemmadesk.ui.remote_controller import RemoteController
from gemmadesk.ui.remote_view import AddServerDialog
from gemmadesk.ui.serve_controller import ServeController, ServeOptions, ServeState
from gemmadesk.ui.serve_view import ServeOptionsDialog


class ServerMenu(QObject):
    def __init__(self, window: QMainWindow, serve: ServeController, remote: RemoteController,
                 on_port_chosen: Callable[[int], None] | None = None) -> None:  # fmt: skip
        super().__init__(window)
        self.window, self.serve, self.remote = window, serve, remote
        self._on_port_chosen = on_port_chosen
        self.menu = QMenu("&Server", window)
        self.serve_action = QAction(self.menu)
        self.serve_action.setCheckable(True)
        self.serve_action.toggled.connect(self._toggled)
        self.options_action = QAction("Server &options…", self.menu)
        self.options_action.triggered.connect(self.open_options)
        self.add_action = QAction("&Add a server…", self.menu)
        self.add_action.triggered.connect(self.open_add_server)
        self.remove_menu = QMenu("&Remove a server", self.menu)
        self.remove_menu.aboutToShow.connect(self._fill_remove_menu)
        self.refresh_action = QAction("Refresh &remote models", self.menu)
        self.refresh_action.triggered.connect(lambda: remote.refresh())
        for item in (self.serve_action, self.options_action):
            self.menu.addAction(item)
        self.menu.addSeparator()
        self.menu.addAction(self.add_action)
        self.menu.addMenu(self.remove_menu)
        self.menu.addAction(self.refresh_action)
        self.dialog: AddServerDialog | ServeOptionsDialog | None = None
        serve.changed.connect(self._serve_changed)
        self._serve_changed()

    @Slot()
    def _serve_changed(self) -> None:
        options, status = self.serve.options, self.serve.status
        where = "localhost" if options.host in ("127.0.0.1", "localhost", "::1") else options.host
        self.serve_action.setText(f"&Serve this model on {where}:{options.port}")
        self.serve_action.blockSignals(True)
        self.serve_action.setChecked(status.state in (ServeState.STARTING, ServeState.ON))
        self.serve_action.blockSignals(False)
        self.serve_action.setEnabled(status.state in (ServeState.OFF, ServeState.ON))

    def _toggled(self, on: bool) -> None:
        self.serve.set_enabled(on)
        self._serve_changed()

    def _replace_dialog(self) -> None:
        if self.dialog is not None:
            self.dialog.close()
            self.dialog.deleteLater()  # its connections to the controllers go with it
        self.dialog = None

    def open_options(self) -> None:
        self._replace_dialog()
        dialog = ServeOptionsDialog(self.serve.options, self.window)
        dialog.setWindowModality(Qt.WindowModality.WindowModal)

        def accepted() -> None:
            options: ServeOptions = dialog.options()
            self.serve.reconfigure(options)
            if self._on_port_chosen is not None:
                self._on_port_chosen(options.port)
            self._serve_changed()

        dialog.accepted.connect(accepted)
        self.dialog = dialog
        dialog.open()

    def open_add_server(self) -> None:
        self._replace_dialog()
        dialog = AddServerDialog(self.remote, self.window)
        dialog.setWindowModality(Qt.WindowModality.WindowModal)
        self.dialog = dialog
        dialog.open()

    def _fill_remove_menu(self) -> None:
        self.remove_menu.clear()
        servers = self.remote.servers()
        if not servers:
            empty = self.remove_menu.addAction("(no servers saved)")
            empty.setEnabled(False)
        for entry in servers:
            action = self.remove_menu.addAction(f"{entry.name} — {entry.base_url}".replace("&", "&&"))
            action.triggered.connect(lambda _checked=False, sid=entry.id: self.remote.remove_server(sid))
