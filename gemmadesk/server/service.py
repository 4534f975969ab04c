"""What the HTTP server needs from the model: a :class:`ChatService`, and its phase-1 implementation.

The server never touches the ``Llama``: it submits a :class:`ChatJob` or :class:`CompletionJob` and
gets a :class:`RequestHandle` that yields the chat core's stream events (``TextChunk``,
``ContextTrimmed``, ``ReplyDone``; docs/design/chat-core.md) or ends with an ``EngineError``.

:class:`EngineChatService` is the phase-1 implementation: one :class:`~gemmadesk.core.engine.Engine`
owned by one worker thread, requests served first come, first served. Phase 2 replaces this module's
implementation with ``ModelHost`` + ``ChatSession.run`` (fair queues shared with the window); the
server (``gemmadesk.server.app``) only uses the names in ``__all__``.

Two things the engine does not do yet are done here, so that phase 2 can drop them:

- stop sequences (the design's ``SamplingParams.stop``): :class:`StopScanner` cuts the answer at the
  first stop string and stops generation;
- raw completion (the design's ``ChatBackend.complete_stream``): :func:`_complete_stream` is the one
  place in GemmaDesk's server that reaches past the Engine's public API (``Engine._generate``).
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from gemmadesk.core.engine import (
    ChatMessage,
    ContextOverflowError,
    Engine,
    EngineError,
    GenerationError,
    ReplyDone,
    ReplyStats,
    SamplingParams,
    TextChunk,
)
from gemmadesk.core.engine.engine import MIN_REPLY_TOKENS
from gemmadesk.core.types import ChunkKind, LoadSettings, StopReason, StreamEvent

__all__ = [
    "ChatJob",
    "ChatService",
    "CompletionJob",
    "ContextTooLongError",
    "EngineChatService",
    "QueueFullError",
    "RequestHandle",
    "RequestRecord",
    "ServiceState",
    "StopScanner",
    "TemplateRefusedError",
]

log = logging.getLogger(__name__)

Status = Literal["loading", "ready", "failed", "unloaded"]


@dataclass(frozen=True)
class ServiceState:
    """What the server tells clients about the model (``/v1/models``, 503 while loading)."""

    status: Status
    model_id: str
    n_ctx: int = 0
    supports_thinking: bool = False
    error: str = ""
    queue_depth: int = 0
    requests_served: int = 0
    busy_client: str = ""  # whose request the model is answering now ("" when idle)


@dataclass(frozen=True)
class ChatJob:
    """One stateless chat turn: the whole conversation, the last message the user's."""

    messages: tuple[ChatMessage, ...]
    params: SamplingParams
    stop: tuple[str, ...] = ()
    max_tokens_given: bool = False  # False: reply up to the end of the context window


@dataclass(frozen=True)
class CompletionJob:
    """Raw text completion (no chat template)."""

    prompt: str
    params: SamplingParams
    stop: tuple[str, ...] = ()
    max_tokens_given: bool = False


Job = ChatJob | CompletionJob


class ContextTooLongError(ContextOverflowError):
    """The prompt plus the reply asked for do not fit in the model's context window."""

    def __init__(self, prompt_tokens: int, max_tokens: int, n_ctx: int) -> None:
        self.prompt_tokens, self.max_tokens, self.n_ctx = prompt_tokens, max_tokens, n_ctx
        super().__init__(
            f"This model's context window holds {n_ctx:,} tokens, but the request needs {prompt_tokens + max_tokens:,} "
            f"({prompt_tokens:,} in the prompt and up to {max_tokens:,} for the reply). Shorten the messages or "
            "lower max_tokens."
        )


class QueueFullError(EngineError):
    """Too many requests are already waiting for the model."""


class TemplateRefusedError(EngineError):
    """The model's own chat template refused the messages (e.g. roles that do not alternate)."""


class ChatService(Protocol):
    """The model as the server sees it (phase 2: ModelHost + ChatSession.run)."""

    @property
    def state(self) -> ServiceState: ...

    def submit(self, job: Job, client: str = "api") -> RequestHandle: ...

    def count_prompt_tokens(self, messages: Sequence[ChatMessage], params: SamplingParams) -> int: ...

    def shutdown(self) -> None: ...


EventCallback = Callable[[StreamEvent], None]
FinishedCallback = Callable[[EngineError | None], None]


class RequestHandle:
    """One request: iterate it (blocking) for its events, or :meth:`subscribe` callbacks (called on
    the worker thread). :meth:`stop` ends it early (generation stops before the next token; a request
    still waiting is dropped). ``done`` is set when it has finished; ``error`` is then its EngineError."""

    def __init__(self, client: str = "api") -> None:
        self.client = client
        self.done = threading.Event()
        self.error: EngineError | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._buffer: list[StreamEvent] = []
        self._on_event: EventCallback | None = None
        self._on_finished: FinishedCallback | None = None
        self._queue: queue.SimpleQueue[StreamEvent | None] | None = None

    # ---------------------------------------------------------------- for the caller
    def stop(self) -> None:
        self._stop.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def subscribe(self, on_event: EventCallback, on_finished: FinishedCallback) -> None:
        """Receive every event (those already produced first) and then exactly one ``on_finished``."""
        with self._lock:
            if self._on_event is not None or self._queue is not None:
                raise RuntimeError("a RequestHandle has one consumer")
            self._on_event, self._on_finished = on_event, on_finished
            buffered, self._buffer = self._buffer, []
            finished = self.done.is_set()
        for event in buffered:
            on_event(event)
        if finished:
            on_finished(self.error)

    def __iter__(self) -> Iterator[StreamEvent]:
        q: queue.SimpleQueue[StreamEvent | None] = queue.SimpleQueue()
        with self._lock:
            if self._on_event is not None or self._queue is not None:
                raise RuntimeError("a RequestHandle has one consumer")
            self._queue = q
            for event in self._buffer:
                q.put(event)
            self._buffer = []
            if self.done.is_set():
                q.put(None)
        while (item := q.get()) is not None:
            yield item
        if self.error is not None:
            raise self.error

    # ---------------------------------------------------------------- for the worker
    def _emit(self, event: StreamEvent) -> None:
        with self._lock:
            callback, q = self._on_event, self._queue
            if callback is None and q is None:
                self._buffer.append(event)
                return
        if callback is not None:
            callback(event)
        elif q is not None:
            q.put(event)

    def _finish(self, error: EngineError | None) -> None:
        with self._lock:
            self.error = error
            self.done.set()
            callback, q = self._on_finished, self._queue
        if callback is not None:
            callback(error)
        elif q is not None:
            q.put(None)


class StopScanner:
    """Cuts streamed answer text at the first of ``stops``. Text that could be the start of a stop
    string is held back until the next piece decides it (the same rule as the thought parser)."""

    def __init__(self, stops: Sequence[str]) -> None:
        self._stops = tuple(s for s in stops if s)
        self._pending = ""
        self.matched = False
        self.text = ""  # everything let through so far

    def feed(self, piece: str) -> str:
        """The part of ``piece`` (with what was held back) that is certainly before any stop string."""
        if self.matched:
            return ""
        if not self._stops:
            self.text += piece
            return piece
        buf = self._pending + piece
        hits = [i for i in (buf.find(s) for s in self._stops) if i >= 0]
        if hits:
            self.matched = True
            out, self._pending = buf[: min(hits)], ""
        else:
            keep = max(_partial_suffix(buf, s) for s in self._stops)
            out, self._pending = buf[: len(buf) - keep], buf[len(buf) - keep :]
        self.text += out
        return out

    def finish(self) -> str:
        out, self._pending = ("" if self.matched else self._pending), ""
        self.text += out
        return out


def _partial_suffix(text: str, marker: str) -> int:
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0


def _with_stops(events: Iterator[StreamEvent], stops: Sequence[str], stop: threading.Event) -> Iterator[StreamEvent]:
    """``events`` with the answer cut at the first stop string; generation is then stopped."""
    if not stops:
        yield from events
        return
    scanner = StopScanner(stops)
    for event in events:
        if isinstance(event, TextChunk) and event.kind == "answer":
            out = scanner.feed(event.text)
            if out:
                yield TextChunk(ChunkKind.ANSWER, out)
            if scanner.matched:
                stop.set()
        elif isinstance(event, ReplyDone):
            tail = scanner.finish()
            if tail:
                yield TextChunk(ChunkKind.ANSWER, tail)
            stats = event.stats
            if scanner.matched:
                stats = replace(stats, stop_reason=StopReason.EOS)
            yield ReplyDone(scanner.text.strip(), event.thoughts, stats)
        else:
            yield event


def reply_budget(prompt_tokens: int, n_ctx: int, job: Job) -> int:
    """``max_tokens`` for the engine, or :class:`ContextTooLongError` (the numbers in the message).

    The rule matches the engine's trimming limit, so that a request that passes is never silently
    trimmed: the prompt plus ``max(max_tokens, MIN_REPLY_TOKENS)`` must fit in the window."""
    if job.max_tokens_given:
        wanted = job.params.max_tokens
        if prompt_tokens + max(wanted, MIN_REPLY_TOKENS) > n_ctx:
            raise ContextTooLongError(prompt_tokens, wanted, n_ctx)
        return wanted
    if prompt_tokens + MIN_REPLY_TOKENS > n_ctx:
        raise ContextTooLongError(prompt_tokens, MIN_REPLY_TOKENS, n_ctx)
    return n_ctx - prompt_tokens


@dataclass(frozen=True)
class RequestRecord:
    """What happened to one finished request (the newest are kept: tests, the app's request count)."""

    client: str
    outcome: Literal["done", "dropped", "error"]
    completion_tokens: int = 0
    stop_reason: str = ""


@dataclass
class _Request:
    handle: RequestHandle
    job: Job | Callable[[Engine], None]
    queued_at: float = field(default_factory=time.perf_counter)


class EngineChatService:
    """Phase 1: the Engine on one worker thread, requests in one FIFO.

    ``load`` is called on the worker (state "loading" until it returns), so the server can answer 503
    meanwhile. ``max_queue`` bounds the waiting requests (a :class:`QueueFullError` beyond it)."""

    def __init__(
        self,
        model_id: str,
        settings: LoadSettings | None,
        *,
        engine: Engine | None = None,
        max_queue: int = 16,
        on_loaded: Callable[[ServiceState], None] | None = None,
    ) -> None:
        self._engine = engine or Engine()
        self._model_id = model_id
        self._max_queue = max_queue
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._lock = threading.Lock()
        self._state = ServiceState("loading" if settings is not None else "ready", model_id)
        self._settings = settings
        self._on_loaded = on_loaded
        if settings is None:  # an engine loaded by the caller
            self._state = self._ready_state()
        self.records: collections.deque[RequestRecord] = collections.deque(maxlen=100)
        self._served = 0
        self._busy = ""
        self._thread = threading.Thread(target=self._run, name="gemmadesk-chat-service", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ ChatService
    @property
    def state(self) -> ServiceState:
        with self._lock:
            return replace(self._state, queue_depth=self._queue.qsize(), requests_served=self._served,
                           busy_client=self._busy)

    def submit(self, job: Job, client: str = "api") -> RequestHandle:
        handle = RequestHandle(client)
        if self._queue.qsize() >= self._max_queue:
            raise QueueFullError(
                f"{self._queue.qsize()} requests are already waiting for the model. Try again in a moment."
            )
        self._queue.put(_Request(handle, job))
        return handle

    def count_prompt_tokens(self, messages: Sequence[ChatMessage], params: SamplingParams) -> int:
        """The prompt's token count as the model will see it (runs on the worker, after queued requests)."""
        result: list[int] = []

        def count(engine: Engine) -> None:
            result.append(_count_chat_tokens(engine, messages, params.thinking))

        handle = RequestHandle("count")
        self._queue.put(_Request(handle, count))
        for _ in handle:
            pass
        return result[0]

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop accepting work, finish the current request's token, unload the model."""
        self._queue.put(None)
        self._thread.join(timeout)

    # ------------------------------------------------------------------ the worker
    def _ready_state(self) -> ServiceState:
        report = self._engine.report
        if report is None:
            return ServiceState("failed", self._model_id, error="No model is loaded.")
        return ServiceState("ready", self._model_id, n_ctx=report.n_ctx, supports_thinking=report.supports_thinking)

    def _set_state(self, state: ServiceState) -> None:
        with self._lock:
            self._state = state

    def _run(self) -> None:
        if self._settings is not None:
            try:
                self._engine.load(self._settings)
                self._set_state(self._ready_state())
            except EngineError as exc:
                log.warning("loading %s failed: %s", self._model_id, exc)
                self._set_state(ServiceState("failed", self._model_id, error=str(exc)))
            if self._on_loaded is not None:
                self._on_loaded(self.state)
        while True:
            request = self._queue.get()
            if request is None:
                break
            with self._lock:
                self._busy = request.handle.client
            try:
                self._serve(request)
            finally:
                with self._lock:
                    self._busy = ""
        self._drain()
        self._engine.unload()
        self._set_state(ServiceState("unloaded", self._model_id))

    def _drain(self) -> None:
        while True:
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                return
            if request is not None:
                request.handle._finish(GenerationError("The server is shutting down."))

    def _serve(self, request: _Request) -> None:
        handle = request.handle
        if handle.stop_requested:  # the client went away while waiting
            self._record(handle, RequestRecord(handle.client, "dropped"))
            handle._finish(None)
            return
        state = self.state
        if state.status != "ready":
            handle._finish(GenerationError(state.error or "The model is not loaded."))
            return
        record = RequestRecord(handle.client, "done")
        try:
            if isinstance(request.job, ChatJob | CompletionJob):
                for event in self._execute(request.job, handle._stop):
                    if isinstance(event, ReplyDone):
                        stats = event.stats
                        record = replace(record, completion_tokens=stats.completion_tokens,
                                         stop_reason=stats.stop_reason)  # fmt: skip
                    handle._emit(event)
            else:
                request.job(self._engine)
        except EngineError as exc:
            self._record(handle, replace(record, outcome="error"))
            handle._finish(exc)
            return
        except Exception as exc:  # a bug or llama.cpp failure must not kill the worker
            log.exception("request failed")
            self._record(handle, replace(record, outcome="error"))
            handle._finish(GenerationError("The model failed while answering this request.", detail=repr(exc)))
            return
        self._record(handle, record)
        handle._finish(None)

    def _record(self, handle: RequestHandle, record: RequestRecord) -> None:
        if handle.client == "count":
            return
        with self._lock:
            self.records.append(record)
            self._served += 1

    def _execute(self, job: Job, stop: threading.Event) -> Iterator[StreamEvent]:
        engine = self._engine
        n_ctx = self.state.n_ctx
        if isinstance(job, ChatJob):
            prompt_tokens = _count_chat_tokens(engine, job.messages, job.params.thinking)
            params = replace(job.params, max_tokens=reply_budget(prompt_tokens, n_ctx, job))
            events = engine.chat_stream(job.messages, params, stop)
        else:
            tokens = _completion_tokens(engine, job.prompt)
            params = replace(job.params, max_tokens=reply_budget(len(tokens), n_ctx, job))
            events = _complete_stream(engine, tokens, params, stop)
        yield from _with_stops(events, job.stop, stop)


def _count_chat_tokens(engine: Engine, messages: Sequence[ChatMessage], thinking: bool) -> int:
    import jinja2

    try:
        return len(engine.tokenize_prompt(messages, thinking))
    except jinja2.TemplateError as exc:
        raise TemplateRefusedError(f"The model's chat template refused these messages: {exc}") from None


# ---------------------------------------------------------------------- raw completion (private reach)
# Engine has no raw-completion call yet (the design's ChatBackend.complete_stream). Until the chat core
# has one, these two functions use Engine internals; they are the only such use in gemmadesk.server.


def _completion_tokens(engine: Engine, prompt: str) -> list[int]:
    _ = engine.prompt_format  # raises NotLoadedError when nothing is loaded
    llm = engine._llm
    tokens: list[int] = list(llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))
    return tokens


def _complete_stream(
    engine: Engine, tokens: list[int], params: SamplingParams, stop: threading.Event
) -> Iterator[StreamEvent]:
    started = time.perf_counter()
    stats = ReplyStats(prompt_tokens=len(tokens))
    stats.prompt_tokens_evaluated = len(tokens) - engine._prepare_prefix_reuse(tokens)
    yield from engine._generate(tokens, params, stop, stats, params.max_tokens, started)

