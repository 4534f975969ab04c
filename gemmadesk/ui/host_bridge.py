"""The Qt side of the chat core: the model host's worker on a QThread, and its events as Qt signals.

- :class:`HostBridge` owns the :class:`~gemmadesk.core.chat.host.ModelHost` for the window: a long-lived
  QThread whose ``run()`` calls ``host.run_forever()`` (started on first use), and ``stateChanged``
  (a :class:`HostState`) on every change of what is loaded.
- :class:`HandleRelay`: one per request. It listens to the request's handle on the worker thread and
  re-emits ``yielded`` (an event; text pieces batched every ~30 ms or 16 pieces), ``finished`` (the
  handle) or ``errored`` (the handle, with its ``error``) from this GUI-thread QObject, so they reach
  ``@Slot`` methods of GUI-thread QObjects queued. Never connect them to plain closures: PySide6 (6.8+,
  PYSIDE-3124) can corrupt memory when a cross-thread signal is delivered to a plain Python callable
  (see ``ui/tasks.py``).
- After :meth:`HostBridge.shutdown` no signal reaches the GUI any more, even from a reply that was mid-way.

Importing this module also applies :func:`guard_against_emit_refcount_bug` (PySide6 6.12.0 loses a
reference to ``True`` on every ``emit()``; streaming would otherwise abort CPython within minutes).
"""

from __future__ import annotations

import ctypes
import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal

from gemmadesk.core.chat.host import HostState, ModelHost, RequestHandle
from gemmadesk.core.types import TextChunk

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.03
FLUSH_TOKENS = 16


def emit_drops_a_reference() -> bool:
    """True where ``SignalInstance.emit()`` loses a reference to the ``True`` it returns (PySide6 6.12.0;
    6.11.3 is fine). Every emit then lowers ``True``'s reference count by one, and after a few thousand
    emits (a couple of minutes of streaming) CPython aborts with "bool_dealloc: deallocating True"."""

    class _Probe(QObject):
        ping = Signal()

    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(16):
        probe.ping.emit()
    return sys.getrefcount(True) <= before - 8


def guard_against_emit_refcount_bug() -> bool:
    """If :func:`emit_drops_a_reference`, give ``True`` and ``False`` a reference count no program can
    exhaust (what Python 3.12 does anyway: there they are immortal and the bug is harmless). Safe to call
    more than once; returns whether the guard was needed."""
    if sys.version_info >= (3, 12) or not emit_drops_a_reference():
        return False
    for singleton in (True, False):
        refcount = ctypes.c_ssize_t.from_address(id(singleton))  # ob_refcnt: a PyObject's first field
        if abs(refcount.value - sys.getrefcount(singleton)) > 4:
            log.warning("cannot guard against the PySide6 emit() reference bug on this Python build")
            return False
        if refcount.value < 1 << 40:
            refcount.value += 1 << 40
    return True


guard_against_emit_refcount_bug()


class _HostThread(QThread):
    def __init__(self, host: ModelHost) -> None:
        super().__init__()
        self.setObjectName("gemmadesk-llm")
        self._host = host

    def run(self) -> None:
        self._host.run_forever()


class HandleRelay(QObject):
    """One request's events as signals of a GUI-thread QObject (see the module docstring)."""

    yielded = Signal(object)
    finished = Signal(object)  # the RequestHandle
    errored = Signal(object)  # the RequestHandle; str(handle.error) is for the user

    def __init__(self, bridge: HostBridge, handle: RequestHandle, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.handle = handle
        self._bridge = bridge
        self._kind = ""
        self._parts: list[str] = []
        self._since = time.monotonic()

    def start(self) -> None:
        """Begin relaying (connect the signals first: a request that already ended reports at once)."""
        self.handle.listen(self._on_event, self._on_done)

    # Both run on the worker thread (or at once, in listen(), for a request that already ended).
    def _on_event(self, event: object) -> None:
        if isinstance(event, TextChunk):
            if self._parts and event.kind != self._kind:
                self._flush()
            self._kind = event.kind
            self._parts.append(event.text)
            if len(self._parts) >= FLUSH_TOKENS or time.monotonic() - self._since >= FLUSH_INTERVAL_S:
                self._flush()
            return
        self._flush()
        self._send(self.yielded, event)

    def _on_done(self, handle: RequestHandle) -> None:
        self._flush()
        if handle.error is not None:
            self._send(self.errored, handle)
        else:
            self._send(self.finished, handle)

    def _flush(self) -> None:
        if self._parts:
            self._send(self.yielded, TextChunk(self._kind, "".join(self._parts)))  # type: ignore[arg-type]
            self._parts = []
        self._since = time.monotonic()

    def _send(self, signal: object, value: object) -> None:
        if self._bridge.closed:
            return
        try:
            signal.emit(value)  # type: ignore[attr-defined]
        except RuntimeError:  # the QObject is gone: the window was torn down
            log.debug("a request event arrived after its window was destroyed")


class HostBridge(QObject):
    """The window's model host on its own thread, with its state as a signal."""

    stateChanged = Signal(object)  # HostState

    def __init__(self, host: ModelHost | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.host = host or ModelHost()
        self.closed = False
        self._thread: _HostThread | None = None
        self._lock = threading.Lock()
        self._unsubscribe = self.host.subscribe(self._state_changed)
        app = QCoreApplication.instance()
        if app is not None:  # a window closed without shutdown() must still not leave the thread running
            app.aboutToQuit.connect(self.shutdown)

    @property
    def state(self) -> HostState:
        return self.host.state

    @property
    def thread_(self) -> QThread | None:
        return self._thread

    def start(self) -> None:
        """Start the worker thread (idempotent); requests queued before wait for it."""
        with self._lock:
            if self._thread is None and not self.closed:
                self._thread = _HostThread(self.host)
                self._thread.start()

    def relay(
        self,
        handle: RequestHandle,
        yielded: Callable[[Any], None],
        finished: Callable[[Any], None],
        errored: Callable[[Any], None],
        parent: QObject | None = None,
    ) -> HandleRelay:
        """Relay ``handle``'s events to these ``@Slot`` methods of GUI-thread QObjects; starts the worker if
        needed. The relay is deleted once the request ended."""
        self.start()
        relay = HandleRelay(self, handle, parent or self)
        relay.yielded.connect(yielded)
        relay.finished.connect(finished)
        relay.errored.connect(errored)
        relay.finished.connect(relay.deleteLater)
        relay.errored.connect(relay.deleteLater)
        relay.start()
        return relay

    def _state_changed(self, state: HostState) -> None:  # any thread
        if not self.closed:
            try:
                self.stateChanged.emit(state)
            except RuntimeError:
                pass

    def shutdown(self, timeout_ms: int = 30_000) -> bool:
        """Stop everything, free the model and join the thread; True if it ended in time. Idempotent."""
        if self.closed:
            return self._thread is None or not self._thread.isRunning()
        self.closed = True
        self._unsubscribe()
        ended = self.host.shutdown(timeout=timeout_ms / 1000)
        if self._thread is not None:
            ended = bool(self._thread.wait(timeout_ms)) and ended
        if not ended:
            log.error("the LLM thread did not end within %d ms", timeout_ms)
        return ended
