"""What the HTTP server needs from the model: a thin adapter over the chat core's :class:`ModelHost`.

The server never touches a backend: it submits a :class:`ChatJob` or :class:`CompletionJob` and gets the
chat core's :class:`~gemmadesk.core.chat.host.RequestHandle`, whose events are the stream events
(``TextChunk``, ``ContextTrimmed``, ``ReplyDone``) and which ends with an ``EngineError`` or none.

:class:`HostChatService` turns each job into ``ChatSession.run`` / ``ChatSession.complete`` on the host
(docs/design/chat-core.md), so every rule is the chat core's: the prompt and thinking rules, stop strings
(:mod:`gemmadesk.core.chat.stops`), the context rule for API requests (:mod:`gemmadesk.core.chat.budget`:
refused with the numbers, never trimmed) and raw completion (``ChatBackend.complete_stream``). Each API
client is its own client of the host (``api:<peer>``), so its requests queue fairly, round-robin, with the
window's own chats and with other clients. What this module adds is the server's own bookkeeping: a bound
on waiting API requests (:class:`QueueFullError`), a record per finished request, a count of requests.

- The app: ``HostChatService(window_host)`` serves the model the window has loaded.
- ``gemmadesk-cli serve``, tests, benchmarks: :func:`serve_model` starts a host of its own on a thread and
  loads the model there (``state.status`` "loading" meanwhile, so the server answers 503).
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from gemmadesk.core.chat import ChatSession, HostState, HostStatus, ModelHost, RequestHandle
from gemmadesk.core.chat.budget import ContextTooLongError
from gemmadesk.core.engine import ChatMessage, Engine, EngineError, ReplyDone, SamplingParams
from gemmadesk.core.types import LoadSettings

__all__ = [
    "ChatJob",
    "ChatService",
    "CompletionJob",
    "ContextTooLongError",
    "HostChatService",
    "QueueFullError",
    "RequestHandle",
    "RequestRecord",
    "ServiceState",
    "serve_model",
]

log = logging.getLogger(__name__)

Status = Literal["loading", "ready", "failed", "unloaded"]
EventCallback = Callable[[object], None]
DoneCallback = Callable[[RequestHandle], None]


@dataclass(frozen=True)
class ServiceState:
    """What the server tells clients about the model (``/v1/models``, 503 while loading)."""

    status: Status
    model_id: str
    n_ctx: int = 0
    supports_thinking: bool = False
    error: str = ""
    queue_depth: int = 0  # requests waiting for the model (the window's included)
    requests_served: int = 0  # API requests finished (answered, failed or dropped)
    busy_client: str = ""  # whose request the model is answering now ("" when idle)


@dataclass(frozen=True)
class ChatJob:
    """One stateless chat turn: the whole conversation, the last message the user's. ``params.stop``: the
    stop strings; ``params.max_tokens`` 0: no limit given (up to the end of the context window)."""

    messages: tuple[ChatMessage, ...]
    params: SamplingParams


@dataclass(frozen=True)
class CompletionJob:
    """Raw text completion (no chat template); ``params`` as in :class:`ChatJob`."""

    prompt: str
    params: SamplingParams


Job = ChatJob | CompletionJob


class QueueFullError(EngineError):
    """Too many API requests are already waiting for the model."""


@dataclass(frozen=True)
class RequestRecord:
    """What happened to one finished API request (the newest are kept: tests, the app's request count)."""

    client: str
    outcome: Literal["done", "dropped", "error"]
    completion_tokens: int = 0
    stop_reason: str = ""


class ChatService(Protocol):
    """The model as the server sees it."""

    @property
    def state(self) -> ServiceState: ...

    def submit(
        self, job: Job, client: str = "api", on_event: EventCallback | None = None, on_done: DoneCallback | None = None
    ) -> RequestHandle: ...

    def shutdown(self) -> None: ...


_STATUS: dict[HostStatus, Status] = {
    HostStatus.LOADING: "loading",
    HostStatus.READY: "ready",
    HostStatus.FAILED: "failed",
    HostStatus.UNLOADED: "unloaded",
}


class HostChatService:
    """API requests as requests of a :class:`ModelHost`'s clients (see the module docstring).

    ``max_queue``: API requests beyond this many unanswered ones (plus the one being answered) are refused
    at once with :class:`QueueFullError` (503). ``on_record(record)`` is called on the host's worker when an
    API request ended. :meth:`shutdown` stops this service's requests; the host is shut down only when the
    service owns it (:func:`serve_model`)."""

    def __init__(
        self,
        host: ModelHost,
        *,
        max_queue: int = 16,
        on_record: Callable[[RequestRecord], None] | None = None,
        owns_host: bool = False,
        worker: threading.Thread | None = None,
        model_id: str = "",
    ) -> None:
        self.host = host
        self.max_queue = max_queue
        self.records: collections.deque[RequestRecord] = collections.deque(maxlen=100)
        self._on_record = on_record
        self._owns_host = owns_host
        self._worker = worker
        self._model_id = model_id  # the model this service's own host loads (shown while loading)
        self._lock = threading.Lock()
        self._live: set[RequestHandle] = set()
        self._served = 0
        self._closed = False
        self.load_handle: RequestHandle | None = None

    # ------------------------------------------------------------------ ChatService
    @property
    def state(self) -> ServiceState:
        host = self.host.state
        status = _STATUS[host.status]
        if status == "unloaded" and self.load_handle is not None and not self.load_handle.done.is_set():
            status = "loading"  # queued on our own host, not started yet
        with self._lock:
            served = self._served
        info = host.info
        return ServiceState(
            status=status,
            model_id=host.model_id or self._model_id,
            n_ctx=info.n_ctx if info is not None else 0,
            supports_thinking=info.supports_thinking if info is not None else False,
            error=host.error or ("" if status != "unloaded" else "No model is loaded in GemmaDesk."),
            queue_depth=host.queue_depth,
            requests_served=served,
            busy_client=host.busy_client or "",
        )

    @property
    def host_state(self) -> HostState:
        return self.host.state

    def submit(
        self, job: Job, client: str = "api", on_event: EventCallback | None = None, on_done: DoneCallback | None = None
    ) -> RequestHandle:
        """Queue ``job`` as a request of ``client``; ``on_event``/``on_done`` are called on the host's worker
        (events produced before are delivered first). The request runs only while the model it was accepted
        for (``state.model_id`` now) is still the loaded one."""
        with self._lock:
            if self._closed:
                raise QueueFullError("The server is shutting down; the request was not run.")
            if len(self._live) > self.max_queue:
                raise QueueFullError(
                    f"{len(self._live) - 1} requests are already waiting for the model. Try again in a moment."
                )
        session = ChatSession(self.host, None, client=client)
        model_id = self.host.state.model_id or None
        if isinstance(job, ChatJob):
            handle: RequestHandle = session.run(job.messages, job.params, model_id=model_id, strict_context=True)
        else:
            handle = session.complete(job.prompt, job.params, model_id=model_id, strict_context=True)
        with self._lock:
            self._live.add(handle)
        done_seen: list[ReplyDone] = []

        def event(item: object) -> None:
            if isinstance(item, ReplyDone):
                done_seen.append(item)
            if on_event is not None:
                on_event(item)

        def done(h: RequestHandle) -> None:
            self._finished(h, done_seen[-1] if done_seen else None)
            if on_done is not None:
                on_done(h)

        handle.listen(event, done)
        return handle

    def _finished(self, handle: RequestHandle, reply: ReplyDone | None) -> None:
        if handle.error is not None:
            record = RequestRecord(handle.client, "error")
        elif reply is None:
            record = RequestRecord(handle.client, "dropped")  # stopped (client gone) before it started
        else:
            record = RequestRecord(handle.client, "done", reply.stats.completion_tokens, str(reply.stats.stop_reason))
        with self._lock:
            self._live.discard(handle)
            self.records.append(record)
            self._served += 1
        if self._on_record is not None:
            try:
                self._on_record(record)
            except Exception:
                log.exception("a request-record listener failed")

    @property
    def requests_served(self) -> int:
        with self._lock:
            return self._served

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop this service's requests (running ones end after the current token, waiting ones are
        dropped); with a host of its own, also shut the host down and free the model."""
        with self._lock:
            self._closed = True
            live = list(self._live)
        for handle in live:
            handle.stop()
        if self._owns_host:
            self.host.shutdown(timeout)
            if self._worker is not None:
                self._worker.join(timeout)


def serve_model(
    model_id: str,
    settings: LoadSettings,
    *,
    engine: Engine | None = None,
    max_queue: int = 16,
    on_loaded: Callable[[ServiceState], None] | None = None,
) -> HostChatService:
    """A :class:`HostChatService` on a model host of its own (its worker on a daemon thread) that loads
    ``settings`` as ``model_id``; ``on_loaded(state)`` is called on the worker when the load ended."""
    host = ModelHost(engine)
    worker = threading.Thread(target=host.run_forever, name="gemmadesk-model-host", daemon=True)
    worker.start()
    service = HostChatService(host, max_queue=max_queue, owns_host=True, worker=worker, model_id=model_id)
    handle = host.load(model_id, settings, client="serve")
    service.load_handle = handle
    if on_loaded is not None:
        callback = on_loaded
        handle.listen(None, lambda _h: callback(service.state))
    return service
