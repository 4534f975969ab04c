"""The Qt adapter of the chat core (HostBridge, HandleRelay) with a real model: the worker QThread, one
relay per request, signals delivered to @Slot methods of a GUI-thread object."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QObject, QThread, Slot

from gemmadesk.core.chat import ChatSession, HostStatus, RequestHandle
from gemmadesk.core.engine.errors import ModelFileError
from gemmadesk.core.types import ChatMessage, LoadSettings, ReplyDone, SamplingParams, StopReason, TextChunk
from gemmadesk.ui.host_bridge import HostBridge

pytestmark = pytest.mark.slow
TIMEOUT_MS = 120_000


class Receiver(QObject):
    """A GUI-thread object whose slots record what the relay delivered, and on which thread."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[object] = []
        self.finished: list[RequestHandle] = []
        self.errors: list[RequestHandle] = []
        self.threads: set[object] = set()

    @Slot(object)
    def on_event(self, event: object) -> None:
        self.threads.add(QThread.currentThread())
        self.events.append(event)

    @Slot(object)
    def on_finished(self, handle: RequestHandle) -> None:
        self.threads.add(QThread.currentThread())
        self.finished.append(handle)

    @Slot(object)
    def on_errored(self, handle: RequestHandle) -> None:
        self.errors.append(handle)

    def relay(self, bridge: HostBridge, handle: RequestHandle) -> None:
        bridge.relay(handle, self.on_event, self.on_finished, self.on_errored)

    @property
    def ended(self) -> bool:
        return bool(self.finished or self.errors)


@pytest.fixture
def bridge(qtbot, gemma3_gguf: Path):  # type: ignore[no-untyped-def]
    b = HostBridge()
    r = Receiver()
    r.relay(b, b.host.load("gemma3", LoadSettings(model_path=str(gemma3_gguf), n_ctx=512, n_threads=2)))
    qtbot.waitUntil(lambda: r.ended, timeout=TIMEOUT_MS)
    assert r.finished and b.state.status is HostStatus.READY
    yield b
    assert b.shutdown()
    assert b.thread_ is not None and not b.thread_.isRunning()


def test_replies_stream_batched_to_slots_in_the_gui_thread(qtbot, bridge: HostBridge) -> None:  # type: ignore[no-untyped-def]
    assert bridge.thread_ is not None and bridge.thread_ is not QThread.currentThread()
    r = Receiver()
    handle = ChatSession(bridge.host, None).run([ChatMessage("user", "Describe a cat.")],
                                               SamplingParams(max_tokens=40, seed=2))  # fmt: skip
    r.relay(bridge, handle)
    qtbot.waitUntil(lambda: r.ended, timeout=TIMEOUT_MS)
    assert r.finished == [handle]
    assert r.threads == {QThread.currentThread()}, "slots run in the GUI thread"
    done = r.events[-1]
    assert isinstance(done, ReplyDone)
    chunks = [e for e in r.events if isinstance(e, TextChunk)]
    assert "".join(c.text for c in chunks).strip() == done.answer
    assert 1 <= len(chunks) <= done.stats.completion_tokens, "chunks are batched, never more than tokens"


def test_stop_and_a_failed_load_leave_the_thread_usable(qtbot, bridge: HostBridge, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    session = ChatSession(bridge.host, None)
    r = Receiver()
    handle = session.run([ChatMessage("user", "Tell me a long story.")], SamplingParams(max_tokens=2000))
    r.relay(bridge, handle)
    qtbot.waitUntil(lambda: any(isinstance(e, TextChunk) for e in r.events), timeout=TIMEOUT_MS)
    handle.stop()
    qtbot.waitUntil(lambda: r.ended, timeout=TIMEOUT_MS)
    done = r.events[-1]
    assert isinstance(done, ReplyDone) and done.stats.stop_reason is StopReason.STOPPED

    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model at all" * 10)
    failed = Receiver()
    failed.relay(bridge, bridge.host.load("bad", LoadSettings(model_path=str(bad))))
    qtbot.waitUntil(lambda: failed.ended, timeout=TIMEOUT_MS)
    assert isinstance(failed.errors[0].error, ModelFileError)
    assert "not a GGUF" in str(failed.errors[0].error)
    again = Receiver()
    again.relay(bridge, session.run([ChatMessage("user", "Hi")], SamplingParams(max_tokens=3)))
    qtbot.waitUntil(lambda: again.ended, timeout=TIMEOUT_MS)
    assert again.finished, "the previous model still answers"


def test_shutdown_mid_reply_emits_nothing_more(qtbot, gemma3_gguf: Path) -> None:  # type: ignore[no-untyped-def]
    bridge = HostBridge()
    r = Receiver()
    r.relay(bridge, bridge.host.load("gemma3", LoadSettings(model_path=str(gemma3_gguf), n_ctx=512)))
    qtbot.waitUntil(lambda: r.ended, timeout=TIMEOUT_MS)
    streaming = Receiver()
    streaming.relay(bridge, ChatSession(bridge.host, None).run([ChatMessage("user", "Tell me a long story.")],
                                                              SamplingParams(max_tokens=2000)))  # fmt: skip
    qtbot.waitUntil(lambda: bool(streaming.events), timeout=TIMEOUT_MS)
    assert bridge.shutdown(timeout_ms=TIMEOUT_MS)
    assert bridge.thread_ is not None and not bridge.thread_.isRunning()
    assert bridge.state.status is HostStatus.UNLOADED, "the model is freed on shutdown"
    count = len(streaming.events)
    qtbot.wait(200)  # let any queued signal arrive, if one had escaped
    assert len(streaming.events) == count and not streaming.ended
    assert bridge.shutdown(), "shutdown is idempotent"


def test_streaming_many_chunks_cannot_exhaust_true(qtbot) -> None:  # type: ignore[no-untyped-def]
    """PySide6 6.12.0's emit() drops a reference to True on every call; after a few thousand streamed
    chunks CPython aborts ("bool_dealloc"). Importing host_bridge guards against it where needed."""
    import sys

    from PySide6.QtCore import Signal

    from gemmadesk.ui.host_bridge import emit_drops_a_reference, guard_against_emit_refcount_bug

    class Source(QObject):
        chunk = Signal(str, str)

    source = Source()
    received: list[str] = []
    source.chunk.connect(lambda kind, text: received.append(text))
    guard_against_emit_refcount_bug()
    before = sys.getrefcount(True)
    for _ in range(5000):
        source.chunk.emit("answer", "x")
    assert len(received) == 5000
    if emit_drops_a_reference():
        assert sys.getrefcount(True) > 1 << 39, "True must be out of reach of the leak"
    else:
        assert abs(sys.getrefcount(True) - before) < 100


def test_quitting_the_app_mid_reply_ends_the_thread_cleanly(gemma3_gguf: Path) -> None:
    """The app quits while a reply streams and nobody called shutdown(): the process still exits 0."""
    import subprocess
    import sys

    code = f"""
import sys
from PySide6.QtCore import QCoreApplication, QObject, QTimer, Slot
from gemmadesk.core.chat import ChatSession
from gemmadesk.core.types import ChatMessage, LoadSettings, SamplingParams
from gemmadesk.ui.host_bridge import HostBridge

app = QCoreApplication([])
bridge = HostBridge()

class Driver(QObject):
    @Slot(object)
    def loaded(self, _h):
        messages = [ChatMessage("user", "Tell a long story")]
        h = ChatSession(bridge.host, None).run(messages, SamplingParams(max_tokens=5000))
        bridge.relay(h, self.chunk, self.ignore, self.ignore)
    @Slot(object)
    def chunk(self, _e):
        QTimer.singleShot(0, app.quit)
    @Slot(object)
    def ignore(self, _h):
        pass

d = Driver()
load = bridge.host.load("m", LoadSettings(model_path={str(gemma3_gguf)!r}, n_ctx=512))
bridge.relay(load, d.ignore, d.loaded, d.ignore)
QTimer.singleShot(120_000, lambda: sys.exit(3))
app.exec()
print("thread running after quit:", bridge.thread_.isRunning(), "status:", bridge.state.status)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "thread running after quit: False status: unloaded" in proc.stdout
