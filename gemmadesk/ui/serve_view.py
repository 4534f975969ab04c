"""The serve switch's widgets: a small status widget (URL to copy, request count, "busy for an API client")
and the server options dialog. Views only: every action goes to :class:`ServeController`."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QToolButton,
    QWidget,
)

from gemmadesk.core.chat import HostState
from gemmadesk.ui.serve_controller import ServeController, ServeOptions, ServeState, refusal
from gemmadesk.ui.widgets import flush_box, plain_label


def busy_text(state: HostState, window_waiting: bool) -> str:
    """What the window says while the model answers an API client ("" when it does not)."""
    client = state.busy_client or ""
    if not client.startswith("api:"):
        return ""
    text = "The model is answering an API client"
    if window_waiting:
        text += "; your reply comes next"
    elif state.queue_depth:
        text += f" ({state.queue_depth} waiting)"
    return text + "."


class ServeStatusWidget(QWidget):
    """"Serving at http://127.0.0.1:8089/v1 · 3 requests [Copy URL]" and the busy line; hidden when off."""

    def __init__(self, ctl: ServeController, window_waiting: Callable[[], bool] | None = None,
                 parent: QWidget | None = None) -> None:  # fmt: skip
        super().__init__(parent)
        self.ctl = ctl
        self._window_waiting = window_waiting  # a callable: is a window reply queued?
        self.label = QLabel()
        self.label.setTextFormat(Qt.TextFormat.PlainText)
        self.label.setAccessibleName("Server status")
        self.label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.copy_button = QToolButton()
        self.copy_button.setText("Copy URL")
        self.copy_button.setAccessibleName("Copy the server's URL")
        self.copy_button.clicked.connect(self.copy_url)
        self.busy = QLabel()
        self.busy.setTextFormat(Qt.TextFormat.PlainText)
        self.busy.setAccessibleName("Model busy for an API client")
        self.busy.hide()
        flush_box(QHBoxLayout, self, self.busy, self.label, self.copy_button)
        ctl.changed.connect(self.refresh)
        ctl.bridge.stateChanged.connect(self._host_state)
        self.refresh()

    @Slot()
    def refresh(self) -> None:
        status = self.ctl.status
        on = status.state is ServeState.ON
        if on:
            n = status.requests
            self.label.setText(f"Serving at {status.url} · {n} request{'s' if n != 1 else ''}")
        elif status.state is ServeState.STARTING:
            self.label.setText("Starting the server…")
        elif status.state is ServeState.STOPPING:
            self.label.setText("Stopping the server…")
        else:
            self.label.setText("")
        self.copy_button.setVisible(on)
        self.label.setVisible(status.state is not ServeState.OFF)
        self._update_visibility()

    @Slot()
    def refresh_busy(self) -> None:
        """Re-read whether a window reply waits (connect the window's busy signal here)."""
        self._host_state(self.ctl.bridge.state)

    @Slot(object)
    def _host_state(self, state: HostState) -> None:
        waiting = self._window_waiting is not None and self._window_waiting()
        text = busy_text(state, waiting)
        self.busy.setText(text)
        self.busy.setVisible(bool(text))
        self._update_visibility()

    def _update_visibility(self) -> None:
        self.setVisible(self.label.isVisibleTo(self) or self.busy.isVisibleTo(self))

    def copy_url(self) -> None:
        if self.ctl.status.url:
            QGuiApplication.clipboard().setText(self.ctl.status.url)


class ServeOptionsDialog(QDialog):
    """Port, and (on purpose only) another address with an API key."""

    def __init__(self, options: ServeOptions, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Server options")
        self.port = QSpinBox()
        self.port.setRange(1, 65535)
        self.port.setValue(options.port or 8089)
        self.port.setAccessibleName("Port")
        self.network = QCheckBox("Allow other computers (needs an API key)")
        self.network.setChecked(options.allow_network)
        self.address = QLineEdit(options.host)
        self.address.setAccessibleName("Address to listen on")
        self.address.setToolTip("127.0.0.1: this computer only. 0.0.0.0: every network this computer is on.")
        self.api_key = QLineEdit(options.api_key or "")
        self.api_key.setEchoMode(QLineEdit.EchoMode.Password)
        self.api_key.setAccessibleName("API key")
        self.api_key.setPlaceholderText("Clients send it as “Authorization: Bearer KEY”")
        self.problem = plain_label(style="color: #c62828")
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.accepted.connect(self._accept)
        self.buttons.rejected.connect(self.reject)
        form = QFormLayout(self)
        form.addRow("&Port", self.port)
        form.addRow(self.network)
        form.addRow("&Address", self.address)
        form.addRow("API &key", self.api_key)
        form.addRow(self.problem)
        form.addRow(self.buttons)
        for row in range(form.rowCount()):
            item = form.itemAt(row, QFormLayout.ItemRole.LabelRole)
            caption = item.widget() if item is not None else None
            if isinstance(caption, QLabel):
                caption.setTextFormat(Qt.TextFormat.PlainText)
        self.network.toggled.connect(self._network_toggled)
        self._network_toggled(options.allow_network)

    def _network_toggled(self, on: bool) -> None:
        self.address.setEnabled(on)
        if not on:
            self.address.setText("127.0.0.1")
        elif self.address.text().strip() in ("", "127.0.0.1", "localhost"):
            self.address.setText("0.0.0.0")

    def options(self) -> ServeOptions:
        key = self.api_key.text().strip() or None
        host = self.address.text().strip() or "127.0.0.1"
        return ServeOptions(port=self.port.value(), host=host, api_key=key, allow_network=self.network.isChecked())

    def _accept(self) -> None:
        problem = refusal(self.options())
        self.problem.setText(problem)
        if not problem:
            self.accept()
