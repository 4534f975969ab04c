"""ModelHost: the one owner of what is loaded, one worker, fair queues, one handle per request."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gemmadesk.core.chat import HostState, HostStatus, ModelHost, RequestHandle
from gemmadesk.core.chat.backend import ChatBackend
from gemmadesk.core.engine.errors import EngineError, GenerationError, LoadCancelled, ModelFileError, NotLoadedError
from gemmadesk.core.types import ChatMessage, Loaded, LoadProgress, LoadSettings, ReplyDone, SamplingParams, StopReason
from tests.chat.conftest import load


def _recording_job(order: list[str], name: str, gate: threading.Event | None = None,
                   started: threading.Event | None = None):  # type: ignore[no-untyped-def]  # fmt: skip
    def job(_backend: ChatBackend, _stop: threading.Event) -> Iterator[object]:
        if started is not None:
            started.set()
        if gate is not None:
            assert gate.wait(30)
        order.append(name)
        yield name

    return job


def test_clients_are_served_round_robin(host: ModelHost) -> None:
    """The window and two API clients queue several requests each while the worker is busy: they are
    served in turns, not first-come-first-served (one client cannot starve the others)."""
    order: list[str] = []
    gate, running = threading.Event(), threading.Event()
    states: list[HostState] = []
    unsubscribe = host.subscribe(states.append)
    first = host.submit(_recording_job(order, "w0", gate, running), "window")
    assert running.wait(30)
    handles = [first]
    for i in range(1, 4):
        handles.append(host.submit(_recording_job(order, f"w{i}"), "window"))
    for i in range(3):
        handles.append(host.submit(_recording_job(order, f"a{i}"), "api:a"))
    for i in range(2):
        handles.append(host.submit(_recording_job(order, f"b{i}"), "api:b"))
    assert host.state.queue_depth >= 8
    assert host.state.busy_client == "window"
    gate.set()
    for h in handles:
        assert h.wait(30)
    unsubscribe()
    assert order == ["w0", "a0", "b0", "w1", "a1", "b1", "w2", "a2", "w3"]
    assert any(s.busy_client == "api:b" for s in states), "the state says whose request runs"
    assert host.state.queue_depth == 0
    assert host.state.busy_client is None


def test_clients_that_come_and_go_are_not_kept_forever(host: ModelHost) -> None:
    """An API server names a client per connection: a long-running one must not keep every name (the
    round-robin scan would grow with them)."""
    from gemmadesk.core.chat.host import MAX_IDLE_CLIENTS

    order: list[str] = []
    for i in range(3 * MAX_IDLE_CLIENTS):
        assert host.submit(_recording_job(order, f"c{i}"), f"api:127.0.0.1:{40000 + i}").wait(30)
    assert len(order) == 3 * MAX_IDLE_CLIENTS
    assert host.submit(_recording_job(order, "last"), "window").wait(30)
    assert len(host._queues) <= MAX_IDLE_CLIENTS + 1


def test_every_event_reaches_a_late_listener_in_order(host: ModelHost) -> None:
    def job(_backend: ChatBackend, _stop: threading.Event) -> Iterator[object]:
        yield from range(5)

    handle = host.submit(job)
    assert handle.wait(30)
    seen: list[object] = []
    ended: list[RequestHandle] = []
    handle.listen(seen.append, ended.append)  # after the request ended: nothing is lost
    assert seen == [0, 1, 2, 3, 4]
    assert ended == [handle]
    with pytest.raises(RuntimeError, match="one listener"):
        handle.listen(seen.append)


def test_an_unexpected_error_becomes_a_sentence_and_is_logged(host: ModelHost, caplog) -> None:  # type: ignore[no-untyped-def]
    def job(_backend: ChatBackend, _stop: threading.Event) -> Iterator[object]:
        yield "started"
        raise KeyError("boom")

    with caplog.at_level(logging.ERROR, logger="gemmadesk.core.chat.host"):
        handle = host.submit(job, "api:x")
        with pytest.raises(GenerationError, match="failed unexpectedly") as info:
            list(handle)
    assert "KeyError" in str(info.value)
    assert handle.error is info.value
    assert any("Traceback" in r.exc_text for r in caplog.records if r.exc_text)
    # The worker is still alive and serves the next request.
    assert list(host.submit(_recording_job([], "next"))) == ["next"]


def test_chat_without_a_model_says_so(host: ModelHost) -> None:
    def job(backend: ChatBackend, stop: threading.Event) -> Iterator[object]:
        yield from backend.chat_stream([ChatMessage("user", "Hi")], SamplingParams(), stop)

    with pytest.raises(NotLoadedError, match="No model is loaded"):
        list(host.submit(job))
    assert host.state.status is HostStatus.UNLOADED


@pytest.mark.slow
def test_load_reports_progress_then_the_report_and_owns_the_options(host: ModelHost, gemma3_gguf: Path) -> None:
    seen: list[HostState] = []
    host.subscribe(seen.append)
    settings = LoadSettings(model_path=str(gemma3_gguf), n_ctx=768, n_threads=2)
    events = list(host.load("gemma3", settings))
    progress = [e.fraction for e in events if isinstance(e, LoadProgress)]
    assert progress and progress == sorted(progress) and progress[-1] == pytest.approx(1.0)
    assert isinstance(events[-1], Loaded)
    state = host.state
    assert state.status is HostStatus.READY
    assert (state.model_id, state.settings, state.report) == ("gemma3", settings, events[-1].report)
    assert state.info is not None and state.info.n_ctx == 768 and not state.info.is_remote
    assert HostStatus.LOADING in [s.status for s in seen]


@pytest.mark.slow
def test_a_bad_file_keeps_the_loaded_model(host3: ModelHost, tmp_path: Path) -> None:
    before = host3.state
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a model" * 100)
    with pytest.raises(ModelFileError, match="not a GGUF"):
        list(host3.load("bad", LoadSettings(model_path=str(bad))))
    after = host3.state
    assert after.status is HostStatus.READY
    assert (after.model_id, after.settings, after.report) == (before.model_id, before.settings, before.report)
    assert after.error is not None and "not a GGUF" in after.error


@pytest.mark.slow
def test_a_load_stopped_while_queued_never_starts(host3: ModelHost, gemma3_gguf: Path) -> None:
    """Cancelling a queued load must not unload the model that is in use."""
    gate, running = threading.Event(), threading.Event()
    blocker = host3.submit(_recording_job([], "busy", gate, running))
    assert running.wait(30)
    queued = host3.load("other", LoadSettings(model_path=str(gemma3_gguf), n_ctx=512))
    queued.stop()
    gate.set()
    with pytest.raises(LoadCancelled):
        list(queued)
    assert blocker.done.is_set()
    assert host3.state.status is HostStatus.READY
    assert host3.state.model_id == "gemma3-270m"


@pytest.mark.slow
def test_shutdown_stops_a_running_reply_frees_the_model_and_refuses_new_work(gemma3_gguf: Path) -> None:
    host = ModelHost()
    worker = threading.Thread(target=host.run_forever, daemon=True)
    worker.start()
    load(host, gemma3_gguf)
    started = threading.Event()

    def job(backend: ChatBackend, stop: threading.Event) -> Iterator[object]:
        for event in backend.chat_stream([ChatMessage("user", "Tell a long story.")], SamplingParams(max_tokens=4000),
                                         stop):  # fmt: skip
            started.set()
            yield event

    reply = host.submit(job)
    queued = host.submit(job, "api:late")
    assert started.wait(120)
    assert host.shutdown(timeout=120)
    worker.join(10)
    assert not worker.is_alive()
    # One of them was running (round-robin may pick either first), the other still queued.
    stats = sorted((e.stats for h in (reply, queued) for e in h if isinstance(e, ReplyDone)),
                   key=lambda st: st.completion_tokens)  # fmt: skip
    assert [st.stop_reason for st in stats] == [StopReason.STOPPED, StopReason.STOPPED]
    assert stats[0].completion_tokens == 0 < stats[1].completion_tokens
    assert host.state.status is HostStatus.UNLOADED and host.state.report is None
    late = host.submit(job)
    assert late.done.is_set() and isinstance(late.error, EngineError)
    assert host.shutdown(), "shutdown is idempotent"
