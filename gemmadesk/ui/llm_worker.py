"""The LLM thread: one long-lived QThread owns the Engine (and so the llama.cpp model).

The GUI talks only to :class:`LlmController` (lives in the GUI thread)::

    ctl = LlmController()                       # starts the thread
    ctl.loadProgress.connect(...)               # float 0..1
    ctl.loaded.connect(...)                     # LoadReport
    ctl.loadFailed.connect(...)                 # str, user-facing
    ctl.replyChunk.connect(...)                 # (kind "answer"|"thought", text), batched ~30 ms
    ctl.replyFinished.connect(...)              # (ReplyStats, answer, thoughts); also after stop()
    ctl.replyFailed.connect(...)                # str, user-facing
    ctl.contextTrimmed.connect(...)             # str notice: older turns were left out
    ctl.unloaded.connect(...)
    ctl.load(settings)                          # fit.LoadSettings or DirectLoadSettings
    ctl.generate(messages, SamplingParams(), history=store, message_id=store.begin_reply(conv_id))
    ctl.stop(); ctl.cancel_load(); ctl.unload()
    ctl.shutdown()                              # on window close: stops, unloads, joins the thread

Requests travel as queued signals; ``stop`` and ``cancel_load`` set thread-safe flags instead, because
the worker is busy inside the generation loop and would only see a queued request afterwards. Tokens
are batched (every ``FLUSH_INTERVAL_S`` or ``FLUSH_TOKENS`` pieces) so the GUI thread is never flooded.
When ``history``/``message_id`` are given, the worker saves the reply as it streams (once a second, one
row) and finishes it as "complete", or "partial" if stopped or failed. After ``shutdown()`` no signal
reaches the GUI any more, even from a reply that was mid-way.

Importing this module also applies :func:`guard_against_emit_refcount_bug` (PySide6 6.12.0 loses a
reference to ``True`` on every ``emit()``; streaming would otherwise abort CPython within minutes).
"""

from __future__ import annotations

import ctypes
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal, SignalInstance, Slot

from gemmadesk.core.engine import (
    ChatMessage,
    ContextTrimmed,
    Engine,
    EngineError,
    LoadSettingsLike,
    ReplyDone,
    SamplingParams,
    TextChunk,
)
from gemmadesk.core.history import HistoryStore, PartialSaver
from gemmadesk.core.speed_log import record_reply

log = logging.getLogger(__name__)


def emit_drops_a_reference() -> bool:
    """True where ``SignalInstance.emit()`` loses a reference to the ``True`` it returns (PySide6 6.12.0;
    6.11.3 is fine). Every emit then lowers ``True``'s reference count by one, and after a few thousand
    emits (a couple of minutes of streaming: one chunk signal plus one ``dataChanged`` per 30 ms) CPython
    aborts with "bool_dealloc: deallocating True or False"."""

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
    more than once; returns whether the guard was needed. Called when this module is imported; the app
    should also call it at start-up."""
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

FLUSH_INTERVAL_S = 0.03
FLUSH_TOKENS = 16
SAVE_INTERVAL_S = 1.0


@dataclass(frozen=True)
class LoadRequest:
    settings: LoadSettingsLike
    cancel: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True)
class GenerateRequest:
    """One reply to make. ``stop`` belongs to this request, so a stop pressed before the worker gets to
    it still counts, and cannot leak into the next reply."""

    messages: tuple[ChatMessage, ...]
    params: SamplingParams
    history: HistoryStore | None = None
    message_id: int | None = None
    stop: threading.Event = field(default_factory=threading.Event)


class LlmWorker(QObject):
    """Lives in the LLM thread. Use it through :class:`LlmController`; tests may drive it directly."""

    loadProgress = Signal(float)
    loaded = Signal(object)
    loadFailed = Signal(str)
    replyChunk = Signal(str, str)
    replyFinished = Signal(object, str, str)
    replyFailed = Signal(str)
    contextTrimmed = Signal(str)
    unloaded = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.engine = Engine()

    @Slot(object)
    def do_load(self, request: LoadRequest) -> None:
        last = [-1.0]

        def progress(fraction: float) -> bool:
            if fraction - last[0] >= 0.01 or fraction >= 1.0:
                last[0] = fraction
                self.loadProgress.emit(fraction)
            return not request.cancel.is_set()

        try:
            report = self.engine.load(request.settings, on_progress=progress)
        except EngineError as exc:
            log.warning("load failed: %s (%s)", exc, exc.detail)
            self.loadFailed.emit(str(exc))
        except Exception as exc:  # never let an unexpected error kill the thread
            log.exception("load crashed")
            self.loadFailed.emit(f"Loading failed unexpectedly: {exc}")
        else:
            self.loaded.emit(report)

    @Slot(object)
    def do_generate(self, request: GenerateRequest) -> None:
        saver = (
            PartialSaver(request.history, request.message_id, SAVE_INTERVAL_S)
            if request.history is not None and request.message_id is not None
            else None
        )
        batch = _Batcher(self.replyChunk)
        try:
            for event in self.engine.chat_stream(request.messages, request.params, request.stop):
                if isinstance(event, TextChunk):
                    batch.add(event.kind, event.text)
                    if saver is not None:
                        saver.add(event.kind, event.text)
                elif isinstance(event, ContextTrimmed):
                    self.contextTrimmed.emit(event.notice)
                elif isinstance(event, ReplyDone):
                    batch.flush()
                    if saver is not None and request.history is not None and request.message_id is not None:
                        stopped = event.stats.stop_reason == "stopped"
                        request.history.finish_reply(
                            request.message_id, event.answer, event.thoughts, event.stats.to_dict(),
                            "partial" if stopped else "complete",
                        )  # fmt: skip
                    record_reply(self.engine.report, event.stats)  # the decode-speed record (fit list speeds)
                    self.replyFinished.emit(event.stats, event.answer, event.thoughts)
        except Exception as exc:
            batch.flush()
            if saver is not None:
                saver.flush()  # keep what was generated; the row stays "partial"
            message = str(exc) if isinstance(exc, EngineError) else f"The reply failed unexpectedly: {exc}"
            if not isinstance(exc, EngineError):
                log.exception("generation crashed")
            self.replyFailed.emit(message)

    @Slot()
    def do_unload(self) -> None:
        self.engine.unload()
        self.unloaded.emit()

    @Slot()
    def do_shutdown(self) -> None:
        self.engine.unload()
        thread = self.thread()
        if thread is not None:
            thread.quit()


class _Batcher:
    """Joins consecutive pieces of the same kind; emits when the kind changes, enough time passed or
    enough pieces collected."""

    def __init__(self, signal: SignalInstance) -> None:
        self.signal = signal
        self.kind = ""
        self.parts: list[str] = []
        self.since = time.monotonic()

    def add(self, kind: str, text: str) -> None:
        if self.parts and kind != self.kind:
            self.flush()
        self.kind = kind
        self.parts.append(text)
        if len(self.parts) >= FLUSH_TOKENS or time.monotonic() - self.since >= FLUSH_INTERVAL_S:
            self.flush()

    def flush(self) -> None:
        if self.parts:
            self.signal.emit(self.kind, "".join(self.parts))
            self.parts = []
        self.since = time.monotonic()


class LlmController(QObject):
    """GUI-thread front of the LLM thread: starts it, forwards requests, relays results."""

    loadProgress = Signal(float)
    loaded = Signal(object)
    loadFailed = Signal(str)
    replyChunk = Signal(str, str)
    replyFinished = Signal(object, str, str)
    replyFailed = Signal(str)
    contextTrimmed = Signal(str)
    unloaded = Signal()

    _requestLoad = Signal(object)
    _requestGenerate = Signal(object)
    _requestUnload = Signal()
    _requestShutdown = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._closed = False
        self.busy = False
        # Stop/cancel events of requests not finished yet (oldest first); see GenerateRequest.
        self._stops: deque[threading.Event] = deque()
        self._cancels: deque[threading.Event] = deque()
        self.thread_ = QThread()
        self.thread_.setObjectName("gemmadesk-llm")
        self.worker = LlmWorker()
        self.worker.moveToThread(self.thread_)
        self.thread_.finished.connect(self.worker.deleteLater)
        self._requestLoad.connect(self.worker.do_load)
        self._requestGenerate.connect(self.worker.do_generate)
        self._requestUnload.connect(self.worker.do_unload)
        self._requestShutdown.connect(self.worker.do_shutdown)
        self.worker.loadProgress.connect(self._relay(self.loadProgress))
        self.worker.loaded.connect(self._relay(self.loaded, ends=self._cancels))
        self.worker.loadFailed.connect(self._relay(self.loadFailed, ends=self._cancels))
        self.worker.replyChunk.connect(self._relay(self.replyChunk))
        self.worker.replyFinished.connect(self._relay(self.replyFinished, ends=self._stops))
        self.worker.replyFailed.connect(self._relay(self.replyFailed, ends=self._stops))
        self.worker.contextTrimmed.connect(self._relay(self.contextTrimmed))
        self.worker.unloaded.connect(self._relay(self.unloaded))
        self.thread_.start()
        app = QCoreApplication.instance()
        if app is not None:  # a window closed without shutdown() must still not leave the thread running
            app.aboutToQuit.connect(self.shutdown)

    def _relay(self, signal: SignalInstance, ends: deque[threading.Event] | None = None) -> Callable[..., None]:
        """Re-emit a worker signal in the GUI thread (unless shut down); ``ends``: the request queue whose
        oldest request this signal completes."""

        def forward(*args: object) -> None:
            if ends:
                ends.popleft()
            if ends is self._stops:
                self.busy = bool(self._stops)
            if self._closed:
                return
            signal.emit(*args)

        return forward

    @property
    def engine(self) -> Engine:
        """For reading ``engine.report`` etc.; call its methods only through this controller."""
        return self.worker.engine

    def load(self, settings: LoadSettingsLike) -> None:
        request = LoadRequest(settings)
        self._cancels.append(request.cancel)
        self._requestLoad.emit(request)

    def cancel_load(self) -> None:
        """Cancel the loads asked for so far; ``loadFailed`` follows ("Loading was cancelled.")."""
        for event in self._cancels:
            event.set()

    def generate(
        self,
        messages: Sequence[ChatMessage],
        params: SamplingParams | None = None,
        *,
        history: HistoryStore | None = None,
        message_id: int | None = None,
    ) -> None:
        self.busy = True
        request = GenerateRequest(tuple(messages), params or SamplingParams(), history, message_id)
        self._stops.append(request.stop)
        self._requestGenerate.emit(request)

    def stop(self) -> None:
        """Stop the current reply after the current token (and any still queued); ``replyFinished``
        follows with stop reason "stopped"."""
        for event in self._stops:
            event.set()

    def unload(self) -> None:
        self._requestUnload.emit()

    def shutdown(self, timeout_ms: int = 30_000) -> bool:
        """Stop everything and join the thread; True if it ended in time. Idempotent."""
        if self._closed:
            return not self.thread_.isRunning()
        self._closed = True
        self.stop()
        self.cancel_load()
        self._requestShutdown.emit()
        ended = self.thread_.wait(timeout_ms)
        if not ended:
            log.error("the LLM thread did not end within %d ms", timeout_ms)
        return bool(ended)
