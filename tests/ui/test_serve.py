"""The app's serve switch (issue 13): the real window (offscreen) serves the model it has loaded to OpenAI's
own client over real HTTP on 127.0.0.1, and the window's chats take turns with API requests."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import openai
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from gemmadesk.core.chat import HostState
from gemmadesk.core.paths import app_paths
from gemmadesk.core.settings import SettingsStore
from gemmadesk.core.store import ModelStore
from gemmadesk.ui.main_window import MainWindow
from gemmadesk.ui.serve_controller import ServeOptions, ServeState
from gemmadesk.ui.serve_view import ServeOptionsDialog, busy_text
from tests.support.serving import free_port
from tests.ui.windows import open_loaded_window

LONG = 180_000
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"  # greedy: the model keeps counting (no early end)


@pytest.fixture
def installed(gemma3_gguf: Path) -> str:
    store = SettingsStore(app_paths().settings_file)
    settings = store.load()
    settings.context_length, settings.max_tokens, settings.temperature = 2048, 12, 0.0
    store.save(settings)
    return ModelStore(app_paths()).import_file(gemma3_gguf).id


def open_window(qtbot) -> MainWindow:  # type: ignore[no-untyped-def]
    return open_loaded_window(qtbot, LONG)


def switch(qtbot, window: MainWindow, on: bool) -> None:  # type: ignore[no-untyped-def]
    """Flip the menu's switch: it returns at once (the work runs on the thread pool), then the state arrives."""
    started = time.perf_counter()
    window.server_menu.serve_action.trigger()
    assert time.perf_counter() - started < 0.5, "the GUI thread did not wait for the server"
    assert window.serve.status.state is (ServeState.STARTING if on else ServeState.STOPPING)
    final = ServeState.ON if on else ServeState.OFF
    qtbot.waitUntil(lambda: window.serve.status.state is final, timeout=30_000)
    assert window.server_menu.serve_action.isChecked() is on


def send(qtbot, window: MainWindow, text: str) -> None:  # type: ignore[no-untyped-def]
    window.chat_view.composer.edit.setPlainText(text)
    qtbot.keyClick(window.chat_view.composer.edit, Qt.Key.Key_Return)


@pytest.mark.slow
def test_openai_client_uses_the_windows_model_through_the_switch(qtbot, installed: str) -> None:  # type: ignore[no-untyped-def]
    window = open_window(qtbot)
    port = free_port()
    window.serve.options = ServeOptions(port=port)
    window.server_menu._serve_changed()
    assert window.server_menu.serve_action.text() == f"&Serve this model on localhost:{port}"
    switch(qtbot, window, True)
    url = f"http://127.0.0.1:{port}/v1"
    assert window.serve.status.url == url
    status = window.serve_status
    assert status.isVisible() and url in status.label.text() and "0 requests" in status.label.text()
    status.copy_button.click()
    assert QGuiApplication.clipboard().text() == url

    client = openai.OpenAI(base_url=url, api_key="none", max_retries=0, timeout=120)
    assert [m.id for m in client.models.list().data] == [installed], "the window's model, by its id"
    reply = client.chat.completions.create(model=installed, messages=[{"role": "user", "content": "Hi"}],
                                           max_tokens=4, temperature=0.0)  # fmt: skip
    assert reply.usage is not None and 1 <= reply.usage.completion_tokens <= 4
    qtbot.waitUntil(lambda: "1 request" in status.label.text(), timeout=10_000)
    assert window.chat.host_state.model_id == installed, "no second model was loaded"

    switch(qtbot, window, False)
    assert not status.isVisible()
    with pytest.raises(openai.APIConnectionError):
        client.models.list()
    window.close()


@pytest.mark.slow
def test_window_and_api_client_take_turns_and_the_window_says_so(qtbot, installed: str) -> None:  # type: ignore[no-untyped-def]
    """An API client queues three requests; the window's message, sent while the first runs, is answered
    second (not after all three), the status bar says the model is busy for an API client meanwhile, and
    every request is answered."""
    window = open_window(qtbot)
    port = free_port()
    window.serve.options = ServeOptions(port=port)
    switch(qtbot, window, True)
    host = window.chat.bridge.host
    turns: list[str] = []

    def observe(state: HostState) -> None:  # on the worker thread
        if state.busy_client and (not turns or turns[-1] != state.busy_client):
            turns.append(state.busy_client)

    unsubscribe = host.subscribe(observe)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none", max_retries=0, timeout=180)
    answers: list[int] = []

    def api_request() -> None:
        r = client.completions.create(model=installed, prompt=COUNTING, max_tokens=40, temperature=0.0, user="tool")
        assert r.usage is not None
        answers.append(r.usage.completion_tokens)

    threads = [threading.Thread(target=api_request) for _ in range(3)]
    for t in threads:
        t.start()
    qtbot.waitUntil(lambda: host.state.busy_client == "api:user:tool" and host.state.queue_depth == 2,
                    timeout=60_000)  # fmt: skip
    send(qtbot, window, "Hello")
    assert window.chat.busy
    busy = window.serve_status.busy
    qtbot.waitUntil(lambda: busy.isVisible() and "your reply comes next" in busy.text(), timeout=30_000)
    assert busy.text() == "The model is answering an API client; your reply comes next."
    qtbot.waitUntil(lambda: not window.chat.busy, timeout=LONG)
    for t in threads:
        t.join(180)
    unsubscribe()
    assert answers == [40, 40, 40]
    assert turns == ["api:user:tool", "window", "api:user:tool"], turns
    transcript = window.chat.transcript.messages()
    assert [m.role for m in transcript] == ["user", "assistant"] and transcript[-1].content
    qtbot.waitUntil(lambda: "3 requests" in window.serve_status.label.text(), timeout=10_000)
    qtbot.waitUntil(lambda: not busy.isVisible(), timeout=10_000)
    switch(qtbot, window, False)
    window.close()


def test_busy_text() -> None:
    assert busy_text(HostState(busy_client="window"), False) == ""
    assert busy_text(HostState(busy_client="api:127.0.0.1:5000", queue_depth=2), False) == (
        "The model is answering an API client (2 waiting).")  # fmt: skip
    assert busy_text(HostState(busy_client="api:user:x"), True).endswith("your reply comes next.")


def test_other_addresses_need_the_choice_and_a_key(qtbot, laptop_8gb) -> None:  # type: ignore[no-untyped-def]
    window = MainWindow(hardware=laptop_8gb)
    qtbot.addWidget(window)
    assert not window.serve.start(ServeOptions(port=free_port(), host="0.0.0.0"))
    assert window.serve.status.state is ServeState.OFF
    assert "Allow other computers" in window.notice.text()
    assert not window.serve.start(ServeOptions(port=free_port(), host="0.0.0.0", allow_network=True))
    assert "needs an API key" in window.notice.text()

    dialog = ServeOptionsDialog(ServeOptions(port=8123))
    qtbot.addWidget(dialog)
    assert dialog.address.text() == "127.0.0.1" and not dialog.address.isEnabled()
    dialog.network.setChecked(True)
    assert dialog.address.text() == "0.0.0.0"
    dialog._accept()
    assert "needs an API key" in dialog.problem.text() and dialog.result() == 0
    dialog.api_key.setText("secret")
    dialog._accept()
    assert dialog.result() == 1
    assert dialog.options() == ServeOptions(port=8123, host="0.0.0.0", api_key="secret", allow_network=True)
    assert "secret" not in repr(dialog.options())
    window.close()


def test_a_port_in_use_is_one_sentence_and_the_switch_stays_off(qtbot, laptop_8gb) -> None:  # type: ignore[no-untyped-def]
    import socket

    window = MainWindow(hardware=laptop_8gb)
    qtbot.addWidget(window)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert window.serve.start(ServeOptions(port=port))
        qtbot.waitUntil(lambda: window.serve.status.state is ServeState.OFF, timeout=30_000)
    assert f"cannot listen on 127.0.0.1:{port}" in window.notice.text()
    assert "another port" in window.notice.text()
    assert not window.server_menu.serve_action.isChecked()
    window.close()
