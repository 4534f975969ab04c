"""One-off background jobs on a QThreadPool whose result or error always comes back to the GUI thread.

Why a registry: a QRunnable's signal carrier must outlive the job, or a result emitted after the caller
went away is silently dropped. :class:`TaskRunner` keeps every carrier until its job reported, logs any
error nobody asked about, and lets the window wait for running jobs on close.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, SignalInstance, Slot

log = logging.getLogger(__name__)


class TaskError(Exception):
    """What a failed job reports: the original exception plus its formatted traceback."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(str(exc) or type(exc).__name__)
        self.exc = exc
        self.trace = "".join(traceback.format_exception(exc))


class _Carrier(QObject):
    """Lives in the GUI thread; signals emitted from the worker are therefore queued to it.

    The receivers are ``@Slot`` methods of this QObject, never lambdas: PySide6 (6.8+, PYSIDE-3124)
    can corrupt memory when a cross-thread signal is delivered to a plain Python callable.
    """

    succeeded = Signal(object)
    failed = Signal(object)

    def __init__(self, on_done: Callable[[Any], None], on_error: Callable[[TaskError], None]) -> None:
        super().__init__()
        self._on_done, self._on_error = on_done, on_error
        self.succeeded.connect(self._deliver_result)
        self.failed.connect(self._deliver_error)

    @Slot(object)
    def _deliver_result(self, result: Any) -> None:
        self._on_done(result)

    @Slot(object)
    def _deliver_error(self, error: TaskError) -> None:
        self._on_error(error)


class _Job(QRunnable):
    def __init__(self, fn: Callable[[], Any], carrier: _Carrier) -> None:
        super().__init__()
        self.setAutoDelete(True)
        self._fn = fn
        self._carrier = carrier

    def run(self) -> None:
        try:
            result = self._fn()
        except BaseException as exc:  # reported to the GUI thread, never lost in the pool
            self._report(self._carrier.failed, TaskError(exc))
        else:
            self._report(self._carrier.succeeded, result)

    @staticmethod
    def _report(signal: SignalInstance, value: object) -> None:
        try:
            signal.emit(value)
        except RuntimeError:  # the application is being torn down: nobody is left to tell
            log.warning("a background job finished after its window was destroyed: %r", value)


class TaskRunner(QObject):
    """Runs callables on a thread pool; ``on_done``/``on_error`` are called in the GUI thread."""

    def __init__(self, parent: QObject | None = None, pool: QThreadPool | None = None) -> None:
        super().__init__(parent)
        self._pool = pool or QThreadPool.globalInstance()
        self._pending: set[_Carrier] = set()
        self._closed = False

    def run(
        self,
        fn: Callable[[], Any],
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[TaskError], None] | None = None,
        name: str = "task",
    ) -> None:
        if self._closed:  # the window is closing: a result delivered late must not start new work
            log.debug("%s not started: the window is closing", name)
            return
        carrier: _Carrier

        def done(result: Any) -> None:
            self._pending.discard(carrier)
            if on_done is not None:
                on_done(result)

        def failed(error: TaskError) -> None:
            self._pending.discard(carrier)
            if on_error is None:  # nobody handles it: at least the log file has it
                log.error("%s failed: %s\n%s", name, error, error.trace)
            else:
                log.debug("%s ended with %s\n%s", name, error, error.trace)
                on_error(error)

        carrier = _Carrier(done, failed)
        self._pending.add(carrier)
        self._pool.start(_Job(fn, carrier))

    @property
    def pending(self) -> int:
        """Jobs started whose result has not been delivered yet."""
        return len(self._pending)

    def wait(self, msecs: int = 30000) -> bool:
        """Block until the pool's jobs finished; True if they did."""
        return bool(self._pool.waitForDone(msecs))

    def close(self, msecs: int = 30000) -> bool:
        """On shutdown: start no more jobs (a result that arrives later may ask for one), then wait for the
        pool's jobs to finish; True if they did."""
        self._closed = True
        return self.wait(msecs)
