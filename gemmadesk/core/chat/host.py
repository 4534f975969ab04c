"""The model host: the one owner of what is loaded (and with which options), and the one worker that runs
every request on it.

::

    host = ModelHost()
    threading.Thread(target=host.run_forever, daemon=True).start()   # the app: a QThread whose run() calls it
    for event in host.load("gemma-e2b", settings):                    # LoadProgress(f)…, then Loaded(report)
        ...
    handle = host.submit(job, client="api:127.0.0.1:5123")             # job(backend, stop) -> events
    handle.stop(); handle.done.wait(); handle.error
    host.subscribe(lambda state: ...)                                  # HostState on every change
    host.shutdown()

- Only the worker (the thread in :meth:`ModelHost.run_forever`) touches the backend, so the ``Llama`` is
  never used from two threads.
- Requests wait in one queue per client, served round-robin: the window and each API client take turns.
  ``HostState.queue_depth`` and ``busy_client`` let the window say "busy for an API client".
- :class:`RequestHandle`: one per request. Iterate it (blocking; raises the request's error at the end), or
  :meth:`RequestHandle.listen` with callbacks (called on the worker thread). ``stop()`` works before the
  request starts too (a load then never begins; a reply ends at once as "stopped").
- Errors reach ``handle.error`` as exceptions whose ``str()`` is a sentence for the user
  (:class:`~gemmadesk.core.engine.errors.EngineError`, :class:`~gemmadesk.core.history.HistoryError`);
  anything else is logged with its traceback and reported as a :class:`GenerationError`.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING

from gemmadesk.core.engine.errors import EngineError, GenerationError, LoadCancelled, NotLoadedError
from gemmadesk.core.history import HistoryError
from gemmadesk.core.types import (
    BackendInfo,
    ChatMessage,
    Loaded,
    LoadProgress,
    LoadReport,
    LoadSettings,
    SamplingParams,
    StreamEvent,
)

if TYPE_CHECKING:
    from gemmadesk.core.chat.backend import ChatBackend
    from gemmadesk.core.engine import Engine

log = logging.getLogger(__name__)

WINDOW = "window"
USER_FACING = (EngineError, HistoryError)
PROGRESS_STEP = 0.01  # report load progress in steps of at least 1 %
MAX_IDLE_CLIENTS = 64  # clients with nothing queued are forgotten beyond this many (one per API connection)

Job = Callable[["ChatBackend", threading.Event], Iterable[object]]
"""A request's work: called on the worker with the current backend and the request's stop event; every
object it yields is an event for the request's listener."""


class HostStatus(StrEnum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True)
class HostState:
    """What is loaded, with which options, and how busy the worker is. Views observe this, never a copy."""

    status: HostStatus = HostStatus.UNLOADED
    model_id: str | None = None
    settings: LoadSettings | None = None  # the options of what is loaded (or loading)
    report: LoadReport | None = None  # None for a remote backend
    info: BackendInfo | None = None
    error: str | None = None  # the last load failure, in words
    queue_depth: int = 0  # requests waiting (not counting the running one)
    busy_client: str | None = None  # whose request runs now

    @property
    def ready(self) -> bool:
        return self.status is HostStatus.READY


_END = object()


class RequestHandle:
    """One request: its events, its stop switch, and how it ended."""

    def __init__(self, client: str = WINDOW, kind: str = "request") -> None:
        self.client = client
        self.kind = kind
        self.done = threading.Event()
        self.error: Exception | None = None
        self.last_event: object | None = None
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self._buffer: list[object] = []
        self._on_event: Callable[[object], None] | None = None
        self._on_done: Callable[[RequestHandle], None] | None = None
        self._listening = False

    # ------------------------------------------------------------------ for the requester
    def stop(self) -> None:
        """Ask the request to end: a reply stops after the current token, a load is cancelled."""
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def stop_event(self) -> threading.Event:
        return self._stop

    def listen(
        self,
        on_event: Callable[[object], None] | None = None,
        on_done: Callable[[RequestHandle], None] | None = None,
    ) -> None:
        """Receive every event (earlier ones first, none lost) and the end, on the worker thread. Once."""
        with self._lock:
            if self._listening:
                raise RuntimeError("a request handle has one listener")
            self._listening = True
            buffered, self._buffer = self._buffer, []
            for event in buffered:
                if on_event is not None:
                    on_event(event)
            self._on_event, self._on_done = on_event, on_done
            if self.done.is_set() and on_done is not None:
                on_done(self)

    def __iter__(self) -> Iterator[object]:
        """Block for each event; at the end raise the request's error, if any."""
        events: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.listen(events.put, lambda _h: events.put(_END))
        while True:
            try:
                event = events.get(timeout=0.2)  # a timeout keeps Ctrl+C responsive
            except queue.Empty:
                continue
            if event is _END:
                break
            yield event
        if self.error is not None:
            raise self.error

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    # ------------------------------------------------------------------ for the worker
    def _emit(self, event: object) -> None:
        with self._lock:
            self.last_event = event
            if not self._listening:
                self._buffer.append(event)
                return
            callback = self._on_event
            if callback is not None:
                callback(event)

    def _finish(self, error: Exception | None) -> None:
        with self._lock:
            self.error = error
            self.done.set()
            callback = self._on_done
            if callback is not None:
                callback(self)


@dataclass
class _Request:
    job: Job
    handle: RequestHandle


class _NoBackend:
    """Stands in while nothing is loaded: every use says so in words."""

    @property
    def info(self) -> BackendInfo:
        return BackendInfo(name="", n_ctx=0)

    def _fail(self) -> NotLoadedError:
        return NotLoadedError("No model is loaded. Load a model first.")

    def chat_stream(
        self, messages: Sequence[ChatMessage], params: SamplingParams, stop: threading.Event
    ) -> Iterator[StreamEvent]:
        raise self._fail()

    def complete_stream(self, prompt: str, params: SamplingParams, stop: threading.Event) -> Iterator[StreamEvent]:
        raise self._fail()

    def count_prompt_tokens(self, messages: Sequence[ChatMessage], params: SamplingParams) -> int:
        raise self._fail()

    def count_text_tokens(self, prompt: str) -> int:
        raise self._fail()


class ModelHost:
    """Owns the local engine (or a remote backend), runs every request on one worker, fairly."""

    def __init__(self, engine: Engine | None = None) -> None:
        if engine is None:
            from gemmadesk.core.engine import Engine

            engine = Engine()
        self._engine = engine
        self._backend: ChatBackend | None = None
        self._cv = threading.Condition()
        self._queues: dict[str, deque[_Request]] = {}
        self._clients: list[str] = []  # round-robin order
        self._last_served: str | None = None
        self._running: _Request | None = None
        self._closed = False
        self._worker_started = False
        self._exited = threading.Event()
        self._state = HostState()
        self._state_lock = threading.RLock()  # serialises state changes and their notifications
        self._subscribers: list[Callable[[HostState], None]] = []

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> HostState:
        return self._state

    @property
    def closed(self) -> bool:
        return self._closed

    def subscribe(self, callback: Callable[[HostState], None]) -> Callable[[], None]:
        """Call ``callback(state)`` on every change (on the thread that made it, mostly the worker);
        returns a function that unsubscribes."""
        with self._state_lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._state_lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def _publish(self, **changes: object) -> None:
        with self._state_lock:
            with self._cv:
                depth = sum(len(q) for q in self._queues.values())
                busy = self._running.handle.client if self._running is not None else None
            self._state = replace(self._state, queue_depth=depth, busy_client=busy, **changes)  # type: ignore[arg-type]
            state = self._state
            for callback in list(self._subscribers):
                try:
                    callback(state)
                except Exception:  # a broken observer must not take the worker down
                    log.exception("host state subscriber failed")

    # ------------------------------------------------------------------ requests
    def submit(self, job: Job, client: str = WINDOW, *, handle: RequestHandle | None = None) -> RequestHandle:
        """Queue ``job`` for ``client``; returns its handle (``handle`` to use one made by the caller)."""
        handle = handle or RequestHandle(client)
        handle.client = client
        with self._cv:
            if self._closed:
                handle.stop()
                handle._finish(EngineError("GemmaDesk is shutting down; the request was not run."))
                return handle
            if client not in self._queues:
                self._queues[client] = deque()
                self._clients.append(client)
            self._queues[client].append(_Request(job, handle))
            self._cv.notify_all()
        self._publish()
        return handle

    def load(self, model_id: str, settings: LoadSettings, client: str = WINDOW) -> RequestHandle:
        """Load a local GGUF: events LoadProgress(fraction)…, then Loaded(report). ``stop()`` cancels."""

        def job(_backend: ChatBackend, stop: threading.Event) -> Iterator[object]:
            if stop.is_set():
                raise LoadCancelled("Loading was cancelled.")
            previous = self._state
            self._publish(status=HostStatus.LOADING, model_id=model_id, settings=settings, error=None)
            reported = [-1.0]

            def on_progress(fraction: float) -> bool:
                if fraction - reported[0] >= PROGRESS_STEP or fraction >= 1.0:
                    reported[0] = fraction
                    handle._emit(LoadProgress(fraction))
                return not stop.is_set()

            try:
                report = self._engine.load(settings, on_progress=on_progress)
            except Exception as exc:
                self._after_failed_load(previous, exc)
                raise
            self._backend = self._engine
            self._publish(status=HostStatus.READY, report=report, info=self._engine.info, error=None)
            yield Loaded(report)

        handle = RequestHandle(client, "load")
        return self.submit(job, client, handle=handle)

    def _after_failed_load(self, previous: HostState, exc: Exception) -> None:
        message = str(exc) if isinstance(exc, USER_FACING) else f"Loading failed unexpectedly: {exc}"
        backend = self._backend
        still_usable = backend is not None and (backend is not self._engine or self._engine.is_loaded)
        if still_usable and previous.status is HostStatus.READY:
            self._publish(status=HostStatus.READY, model_id=previous.model_id, settings=previous.settings,
                          report=previous.report, info=previous.info, error=message)  # fmt: skip
        else:  # the engine unloaded the previous model before it failed
            self._backend = None
            self._publish(status=HostStatus.FAILED, report=None, info=None, error=message)

    def use_remote(self, backend: ChatBackend, model_id: str | None = None, client: str = WINDOW) -> RequestHandle:
        """Make ``backend`` (e.g. a remote OpenAI-compatible server) the loaded model; the local one is freed."""

        def job(_backend: ChatBackend, _stop: threading.Event) -> Iterator[object]:
            self._engine.unload()
            self._backend = backend
            info = backend.info
            self._publish(status=HostStatus.READY, model_id=model_id or info.name, settings=None, report=None,
                          info=info, error=None)  # fmt: skip
            yield info

        return self.submit(job, client, handle=RequestHandle(client, "remote"))

    def unload(self, client: str = WINDOW) -> RequestHandle:
        def job(_backend: ChatBackend, _stop: threading.Event) -> Iterator[object]:
            self._unload_now()
            return iter(())

        return self.submit(job, client, handle=RequestHandle(client, "unload"))

    def _unload_now(self) -> None:
        self._engine.unload()
        self._backend = None
        self._publish(status=HostStatus.UNLOADED, model_id=None, settings=None, report=None, info=None, error=None)

    # ------------------------------------------------------------------ the worker
    def run_forever(self) -> None:
        """Run requests until :meth:`shutdown`; then free the model. Call it on one thread only."""
        with self._cv:
            if self._worker_started:
                raise RuntimeError("ModelHost.run_forever is already running")
            self._worker_started = True
        try:
            while True:
                with self._cv:
                    request = self._pick()
                    while request is None and not self._closed:
                        self._cv.wait()
                        request = self._pick()
                    if request is None:
                        break
                    self._running = request
                self._publish()
                try:
                    self._run(request)
                finally:
                    with self._cv:
                        self._running = None
                    self._publish()
        finally:
            try:
                self._unload_now()
            finally:
                self._exited.set()

    def _pick(self) -> _Request | None:
        """The next request, round-robin over the clients with something queued (call with the lock)."""
        if len(self._clients) > MAX_IDLE_CLIENTS:  # a long-running server sees a new client per connection
            self._clients = [c for c in self._clients if self._queues[c] or c == self._last_served]
            self._queues = {c: self._queues[c] for c in self._clients}
        n = len(self._clients)
        start = (self._clients.index(self._last_served) + 1) % n if self._last_served in self._queues else 0
        for i in range(n):
            client = self._clients[(start + i) % n]
            if self._queues[client]:
                self._last_served = client
                return self._queues[client].popleft()
        return None

    def _run(self, request: _Request) -> None:
        handle = request.handle
        error: Exception | None = None
        backend: ChatBackend = self._backend if self._backend is not None else _NoBackend()
        try:
            for event in request.job(backend, handle.stop_event):
                handle._emit(event)
        except USER_FACING as exc:
            log.info("%s request of %s ended with: %s (%s)", handle.kind, handle.client, exc,
                     getattr(exc, "detail", ""))  # fmt: skip
            error = exc
        except Exception as exc:
            log.exception("%s request of %s failed", handle.kind, handle.client)
            error = GenerationError(
                f"The request failed unexpectedly ({type(exc).__name__}: {exc}). The log file has the details."
            )
        try:
            handle._finish(error)
        except Exception:
            log.exception("a request's done callback failed")

    def shutdown(self, timeout: float | None = 30.0) -> bool:
        """Stop every request, let the worker finish them (they end at once), free the model. True when the
        worker has ended (or never ran). Idempotent; safe to call from any thread but the worker."""
        with self._cv:
            self._closed = True
            pending = [r.handle for q in self._queues.values() for r in q]
            if self._running is not None:
                pending.append(self._running.handle)
            started = self._worker_started
            self._cv.notify_all()
        for handle in pending:
            handle.stop()
        if not started:
            with self._cv:
                leftovers = [r for q in self._queues.values() for r in q]
                for q in self._queues.values():
                    q.clear()
            for request in leftovers:
                request.handle._finish(EngineError("GemmaDesk is shutting down; the request was not run."))
            self._engine.unload()
            return True
        ended = self._exited.wait(timeout)
        if not ended:
            log.error("the model host's worker did not end within %s s", timeout)
        return ended
