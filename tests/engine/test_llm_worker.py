"""The LLM thread (LlmController/LlmWorker) with a real model, driven through queued signals."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QThread

from gemmadesk.core.engine import ChatMessage, DirectLoadSettings, ReplyStats, SamplingParams
from gemmadesk.core.history import HistoryStore
from gemmadesk.ui.llm_worker import LlmController

pytestmark = pytest.mark.slow
TIMEOUT_MS = 120_000


@pytest.fixture
def controller(qtbot, gemma3_gguf: Path):  # type: ignore[no-untyped-def]
    ctl = LlmController()
    with qtbot.waitSignal(ctl.loaded, timeout=TIMEOUT_MS) as loaded:
        ctl.load(DirectLoadSettings(model_path=str(gemma3_gguf), n_ctx=512))
    assert loaded.args[0].architecture == "gemma3"
    yield ctl
    assert ctl.shutdown()
    assert not ctl.thread_.isRunning()


def test_runs_in_its_own_thread_and_streams_batched_chunks(qtbot, controller) -> None:  # type: ignore[no-untyped-def]
    assert controller.worker.thread() is controller.thread_
    assert controller.thread_ is not QThread.currentThread()
    chunks: list[tuple[str, str]] = []
    controller.replyChunk.connect(lambda kind, text: chunks.append((kind, text)))
    with qtbot.waitSignal(controller.replyFinished, timeout=TIMEOUT_MS) as finished:
        controller.generate([ChatMessage("user", "Describe a cat.")], SamplingParams(max_tokens=40, seed=2))
    stats, answer, thoughts = finished.args
    assert isinstance(stats, ReplyStats)
    assert stats.completion_tokens >= 1
    assert "".join(t for _, t in chunks).strip() == answer
    assert thoughts == ""
    assert 1 <= len(chunks) <= stats.completion_tokens, "chunks are batched, never more than tokens"
    assert not controller.busy


def test_reply_is_saved_to_history(qtbot, controller) -> None:  # type: ignore[no-untyped-def]
    store = HistoryStore()
    conv = store.create_conversation()
    store.add_message(conv.id, "user", "Hello")
    msg_id = store.begin_reply(conv.id, model="gemma3")
    with qtbot.waitSignal(controller.replyFinished, timeout=TIMEOUT_MS) as finished:
        controller.generate(
            store.chat_messages(conv.id)[:-1] or [ChatMessage("user", "Hello")],
            SamplingParams(max_tokens=10),
            history=store,
            message_id=msg_id,
        )
    saved = store.get_message(msg_id)
    assert saved.status == "complete"
    assert saved.content == finished.args[1]
    assert saved.stats["completion_tokens"] == finished.args[0].completion_tokens
    store.close()


def test_stop_ends_the_reply_and_keeps_it_as_partial(qtbot, controller) -> None:  # type: ignore[no-untyped-def]
    store = HistoryStore()
    conv = store.create_conversation()
    store.add_message(conv.id, "user", "Tell me a long story.")
    messages = store.chat_messages(conv.id)
    msg_id = store.begin_reply(conv.id)
    controller.replyChunk.connect(lambda *_: controller.stop())
    with qtbot.waitSignal(controller.replyFinished, timeout=TIMEOUT_MS) as finished:
        controller.generate(messages, SamplingParams(max_tokens=2000), history=store, message_id=msg_id)
    stats = finished.args[0]
    assert stats.stop_reason == "stopped"
    assert stats.completion_tokens < 2000
    assert store.get_message(msg_id).status == "partial"
    store.close()


def test_load_failure_is_reported_and_the_thread_stays_usable(qtbot, controller, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model at all" * 10)
    with qtbot.waitSignal(controller.loadFailed, timeout=TIMEOUT_MS) as failed:
        controller.load(DirectLoadSettings(model_path=str(bad)))
    assert "not a GGUF" in failed.args[0]
    with qtbot.waitSignal(controller.replyFinished, timeout=TIMEOUT_MS):
        controller.generate([ChatMessage("user", "Hi")], SamplingParams(max_tokens=3))


def test_reply_failure_is_a_signal_not_a_crash(qtbot, controller) -> None:  # type: ignore[no-untyped-def]
    with qtbot.waitSignal(controller.replyFailed, timeout=TIMEOUT_MS) as failed:
        controller.generate([ChatMessage("user", "word " * 2000)], SamplingParams(max_tokens=8))
    assert "too long" in failed.args[0]


def test_context_trimmed_notice(qtbot, controller) -> None:  # type: ignore[no-untyped-def]
    msgs = []
    for i in range(20):
        msgs += [ChatMessage("user", f"Question {i} " + "x " * 20), ChatMessage("assistant", f"Answer {i}")]
    msgs.append(ChatMessage("user", "Last"))
    notices: list[str] = []
    controller.contextTrimmed.connect(notices.append)
    with qtbot.waitSignal(controller.replyFinished, timeout=TIMEOUT_MS):
        controller.generate(msgs, SamplingParams(max_tokens=4))
    assert len(notices) == 1
    assert "oldest" in notices[0]


def test_unload_then_generate_fails_cleanly(qtbot, controller) -> None:  # type: ignore[no-untyped-def]
    with qtbot.waitSignal(controller.unloaded, timeout=TIMEOUT_MS):
        controller.unload()
    with qtbot.waitSignal(controller.replyFailed, timeout=TIMEOUT_MS) as failed:
        controller.generate([ChatMessage("user", "Hi")])
    assert "No model is loaded" in failed.args[0]


def test_shutdown_mid_generation_emits_nothing_more(qtbot, gemma3_gguf: Path) -> None:  # type: ignore[no-untyped-def]
    ctl = LlmController()
    with qtbot.waitSignal(ctl.loaded, timeout=TIMEOUT_MS):
        ctl.load(DirectLoadSettings(model_path=str(gemma3_gguf), n_ctx=512))
    results: list[object] = []
    ctl.replyFinished.connect(lambda *a: results.append(a))
    ctl.replyFailed.connect(lambda *a: results.append(a))
    with qtbot.waitSignal(ctl.replyChunk, timeout=TIMEOUT_MS):
        ctl.generate([ChatMessage("user", "Tell me a long story.")], SamplingParams(max_tokens=2000))
    assert ctl.shutdown(timeout_ms=TIMEOUT_MS)
    assert not ctl.thread_.isRunning()
    assert not ctl.engine.is_loaded, "the model is freed on shutdown"
    qtbot.wait(200)  # let any queued signal arrive, if one had escaped
    assert results == []
    assert ctl.shutdown(), "shutdown is idempotent"


def test_streaming_many_chunks_cannot_exhaust_true(qtbot) -> None:  # type: ignore[no-untyped-def]
    """PySide6 6.12.0's emit() drops a reference to True on every call; after a few thousand streamed
    chunks CPython aborts ("bool_dealloc"). Importing llm_worker guards against it where needed."""
    import sys

    from PySide6.QtCore import QObject, Signal

    from gemmadesk.ui.llm_worker import emit_drops_a_reference, guard_against_emit_refcount_bug

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


def test_stop_and_cancel_reach_requests_still_queued(qtbot, controller, gemma3_gguf: Path) -> None:  # type: ignore[no-untyped-def]
    """Requests queued behind a running reply keep their own stop/cancel events: pressing stop or
    cancel before the worker gets to them still counts (and does not leak into later requests)."""
    finished: list[ReplyStats] = []
    failures: list[str] = []
    controller.replyFinished.connect(lambda stats, *_: finished.append(stats))
    controller.loadFailed.connect(failures.append)
    with qtbot.waitSignal(controller.replyChunk, timeout=TIMEOUT_MS):
        controller.generate([ChatMessage("user", "Tell me a long story.")], SamplingParams(max_tokens=2000))
    controller.generate([ChatMessage("user", "Queued reply")], SamplingParams(max_tokens=50))
    controller.load(DirectLoadSettings(model_path=str(gemma3_gguf), n_ctx=512))
    controller.cancel_load()
    with qtbot.waitSignal(controller.loadFailed, timeout=TIMEOUT_MS):
        controller.stop()
    assert [s.stop_reason for s in finished] == ["stopped", "stopped"]
    assert finished[1].completion_tokens == 0
    assert failures == ["Loading was cancelled."]
    assert not controller.busy
    # A new load and reply are not affected by the earlier stop/cancel.
    with qtbot.waitSignal(controller.loaded, timeout=TIMEOUT_MS):
        controller.load(DirectLoadSettings(model_path=str(gemma3_gguf), n_ctx=512))
    with qtbot.waitSignal(controller.replyFinished, timeout=TIMEOUT_MS) as done:
        controller.generate([ChatMessage("user", "Hi")], SamplingParams(max_tokens=3))
    assert done.args[0].stop_reason != "stopped"


def test_quitting_the_app_mid_reply_ends_the_thread_cleanly(gemma3_gguf: Path) -> None:
    """The app quits while a reply streams and nobody called shutdown(): the process still exits 0."""
    import subprocess
    import sys

    code = f"""
import sys
from PySide6.QtCore import QCoreApplication, QTimer
from gemmadesk.core.engine import ChatMessage, DirectLoadSettings, SamplingParams
from gemmadesk.ui.llm_worker import LlmController

app = QCoreApplication([])
ctl = LlmController()
ctl.loaded.connect(lambda r: ctl.generate([ChatMessage("user", "Tell a long story")], SamplingParams(max_tokens=5000)))
ctl.replyChunk.connect(lambda *a: QTimer.singleShot(0, app.quit))
ctl.load(DirectLoadSettings(model_path={str(gemma3_gguf)!r}, n_ctx=512))
QTimer.singleShot(120_000, lambda: sys.exit(3))
app.exec()
print("thread running after quit:", ctl.thread_.isRunning(), "model loaded:", ctl.engine.is_loaded)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "thread running after quit: False model loaded: False" in proc.stdout
