"""The app's switch "Serve this model on localhost:PORT": GemmaDesk's OpenAI-compatible server on the
window's own model host.

The server (:mod:`gemmadesk.server`) runs on a thread of its own (uvicorn) and submits every API request
to the window's :class:`~gemmadesk.core.chat.host.ModelHost` as a client of its own (``api:<peer>``):
the window's chats and API clients take turns on the one loaded model, and whatever the window loads
(a local GGUF or a remote model) is what the server serves.

Binding, starting and stopping run on the thread pool (:class:`~gemmadesk.ui.tasks.TaskRunner`), never
on the GUI thread; their outcome comes back as :attr:`ServeController.changed`. Loopback only by
default; another address needs ``allow_network`` and an API key (:func:`gemmadesk.server.check_bind`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal, Slot

from gemmadesk.core.chat import HostState
from gemmadesk.ui.host_bridge import HostBridge
from gemmadesk.ui.notice import NoticeLevel
from gemmadesk.ui.tasks import TaskError, TaskRunner

if TYPE_CHECKING:
    from gemmadesk.server import HostChatService, ServerThread

log = logging.getLogger(__name__)

DEFAULT_PORT = 8089


@dataclass(frozen=True)
class ServeOptions:
    port: int = DEFAULT_PORT  # 0: a free port chosen by the system
    host: str = "127.0.0.1"
    api_key: str | None = None
    allow_network: bool = False

    def __repr__(self) -> str:  # never print a key into a log
        return (f"ServeOptions(port={self.port}, host={self.host!r}, key={'set' if self.api_key else 'none'}, "
                f"allow_network={self.allow_network})")  # fmt: skip


class ServeState(StrEnum):
    OFF = "off"
    STARTING = "starting"
    ON = "on"
    STOPPING = "stopping"


@dataclass(frozen=True)
class ServeStatus:
    state: ServeState = ServeState.OFF
    url: str = ""  # the base URL clients use (http://127.0.0.1:8089/v1) while on
    requests: int = 0  # API requests finished since the server started
    error: str = ""  # why the last start failed


@dataclass(frozen=True)
class _Running:
    service: HostChatService
    http: ServerThread


class ServeController(QObject):
    """Starts and stops the server for the window's model host; the views read :attr:`status` on ``changed``."""

    changed = Signal()
    notice = Signal(str, str, str)  # level, what happened, what to do next

    def __init__(self, bridge: HostBridge, tasks: TaskRunner, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.tasks = tasks
        self.options = ServeOptions()
        self.status = ServeStatus()
        self._running: _Running | None = None
        self._restart = False
        self._closed = False
        bridge.stateChanged.connect(self._host_state)

    @property
    def service(self) -> HostChatService | None:
        return self._running.service if self._running is not None else None

    @property
    def active(self) -> bool:
        return self.status.state is not ServeState.OFF

    def _set(self, **changes: object) -> None:
        self.status = replace(self.status, **changes)  # type: ignore[arg-type]
        self.changed.emit()

    # ------------------------------------------------------------------ switching
    def set_enabled(self, on: bool) -> None:
        if on:
            self.start()
        else:
            self.stop()

    def start(self, options: ServeOptions | None = None) -> bool:
        """Start serving (on the thread pool); False (and a notice) when the options are refused at once."""
        if options is not None:
            self.options = options
        if self.status.state is not ServeState.OFF or self._closed:
            return False
        opts = self.options
        refused = refusal(opts)
        if refused:
            self._set(error=refused)
            self.notice.emit(NoticeLevel.ERROR, refused, "Change the server options, then switch it on again.")
            return False
        self.bridge.start()  # the model host's worker runs API requests even before the window's first chat
        host = self.bridge.host
        self._set(state=ServeState.STARTING, error="", requests=0, url="")
        self.tasks.run(lambda: _start_server(host, opts), self._started, self._start_failed, name="start the server")
        return True

    def reconfigure(self, options: ServeOptions) -> None:
        """New options; a running server restarts with them."""
        self.options = options
        if self.status.state is ServeState.ON:
            self._restart = True
            self.stop()
        else:
            self.changed.emit()

    def stop(self) -> None:
        """Stop serving (on the thread pool): API requests in progress end, the port is freed."""
        running = self._running
        if running is None or self.status.state is not ServeState.ON:
            return
        self._running = None
        self._set(state=ServeState.STOPPING)
        self.tasks.run(lambda: _stop_server(running), self._stopped, self._stopped, name="stop the server")

    @Slot(object)
    def _started(self, running: _Running) -> None:
        if self._closed or self.status.state is not ServeState.STARTING:  # the window closed meanwhile
            _stop_server(running)
            return
        self._running = running
        self._set(state=ServeState.ON, url=running.http.base_url)

    @Slot(object)
    def _start_failed(self, error: TaskError) -> None:
        exc = error.exc
        if isinstance(exc, OSError):
            why = exc.strerror or str(exc)
            text = f"GemmaDesk cannot listen on {self.options.host}:{self.options.port} ({why})."
            step = "Choose another port in the server options, or stop the program that uses this one."
        else:
            text, step = f"The server did not start: {error}", "The log file has the details."
        log.warning("the server did not start: %s", error)
        self._set(state=ServeState.OFF, error=text)
        self.notice.emit(NoticeLevel.ERROR, text, step)

    @Slot(object)
    def _stopped(self, _result: object) -> None:
        self._set(state=ServeState.OFF, url="")
        if self._restart and not self._closed:
            self._restart = False
            self.start()

    @Slot(object)
    def _host_state(self, _state: HostState) -> None:
        service = self.service
        if service is not None and service.requests_served != self.status.requests:
            self._set(requests=service.requests_served)

    def shutdown(self) -> None:
        """On quit: stop the server now (requests in progress end after their current token)."""
        self._closed = True
        running, self._running = self._running, None
        if running is not None:
            _stop_server(running)
        self.status = ServeStatus()


def refusal(options: ServeOptions) -> str:
    """Why these options may not be used ("" when they may): loopback only unless the user allowed other
    computers on purpose and set an API key (the rule of :func:`gemmadesk.server.check_bind`)."""
    from gemmadesk.server.runner import is_loopback

    if not 0 <= options.port <= 65535:
        return f"The port must be between 1 and 65535, not {options.port}."
    if is_loopback(options.host):
        return ""
    if not options.allow_network:
        return (f"Listening on {options.host} would let other computers use the model; to do that on purpose, "
                "tick “Allow other computers” and set an API key.")  # fmt: skip
    if not options.api_key:
        return f"Listening on {options.host} needs an API key so that only your clients get in; set one."
    return ""


def _start_server(host: object, options: ServeOptions) -> _Running:
    """On the thread pool: bind the port, start uvicorn, serve ``host`` (a ModelHost)."""
    from gemmadesk.core.chat import ModelHost
    from gemmadesk.server import HostChatService, ServerOptions, ServerThread, check_bind, create_app
    from gemmadesk.server.runner import is_loopback

    assert isinstance(host, ModelHost)
    check_bind(options.host, options.api_key, options.allow_network)  # the server's own rule, enforced again
    service = HostChatService(host)
    app = create_app(service, ServerOptions(api_key=options.api_key, loopback_only=is_loopback(options.host)))
    http = ServerThread(app, options.host, options.port)
    try:
        http.start()
    except BaseException:
        http.stop(timeout=5)
        raise
    return _Running(service, http)


def _stop_server(running: _Running) -> None:
    running.service.shutdown()  # streams in progress end, so their connections close
    running.http.stop(timeout=10)
