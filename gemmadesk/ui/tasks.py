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

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal, SignalInstance

log = logging.getLogger(__name__)


class TaskError(Exception):
    """What a failed job reports: the original exception plus its formatted traceback."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(str(exc) or type(exc).__name__)
        self.exc = exc
        self.trace = "".join(traceback.format_exception(exc))


class _Carrier(QObject):
    """Lives in the GUI thread; signals emitted from the worker are therefore queued to it."""

    succeeded = Signal(object)
    failed = Signal(object)


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

    def run(
        self,
        fn: Callable[[], Any],
        on_done: Callable[[Any], None] | None = None,
        on_error: Callable[[TaskError], None] | None = None,
        name: str = "task",
    ) -> None:
        carrier = _Carrier()
        self._pending.add(carrier)

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

        carrier.succeeded.connect(done)
        carrier.failed.connect(failed)
        self._pool.start(_Job(fn, carrier))

    @property
    def pending(self) -> int:
        """Jobs started whose result has not been delivered yet."""
        return len(self._pending)

    def wait(self, msecs: int = 30000) -> bool:
        """Block until the pool's jobs finished (used on shutdown); True if they did."""
        return bool(self._pool.waitForDone(msecs))
