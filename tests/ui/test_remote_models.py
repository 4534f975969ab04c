"""Remote engines in the real window (offscreen): a server added in the dialog, its models chosen in the model
box beside local ones, and chats that work as with a local model (history, thinking, stop, stats). Servers
written by others (llama-cpp-python's ``llama_cpp.server``) and GemmaDesk's own, all on 127.0.0.1; the
faults a real server cannot be made to produce on demand come from tests/support/faultserver.py."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from gemmadesk.core.hardware import Hardware
from gemmadesk.core.paths import app_paths
from gemmadesk.core.remote import RemoteTimeouts, ServerStore
from gemmadesk.server import ServerThread
from gemmadesk.ui.main_window import MainWindow
from gemmadesk.ui.remote_view import AddServerDialog
from tests.remote.test_remote_backend import https_server  # noqa: F401  (a fixture)
from tests.support.faultserver import fault_app
from tests.support.serving import Served, free_port, gemmadesk_serve_process, llama_cpp_server, serve_gguf, wait_loaded

pytestmark = pytest.mark.slow

LONG = 180_000
THOUGHT_PATTERN = "<|channel>thought\nThe sky is blue.<channel|>Blue.\n"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="module")
def llama_server(gemma3_gguf: Path) -> Iterator[str]:
    with llama_cpp_server(gemma3_gguf, api_key="lcp-key") as url:
        yield url


@pytest.fixture(scope="module")
def ours(gemma3_gguf: Path) -> Iterator[Served]:
    with serve_gguf(gemma3_gguf, "gemma3-270m", api_key="our-key") as served:
        yield served


@pytest.fixture(scope="module")
def faults() -> Iterator[str]:
    with ServerThread(fault_app()) as http:
        yield http.base_url.removesuffix("/v1")


@pytest.fixture
def window(qtbot, laptop_8gb: Hardware) -> Iterator[MainWindow]:  # type: ignore[no-untyped-def]
    w = MainWindow(hardware=laptop_8gb)
    qtbot.addWidget(w)
    w.show()
    w.stack.setCurrentWidget(w.chat_view)
    yield w
    w.close()


def add_server(qtbot, window: MainWindow, name: str, url: str, key: str = "") -> AddServerDialog:  # type: ignore[no-untyped-def]
    """Fill in File → Server → Add a server… and press Add; returns the dialog once the check ended."""
    window.server_menu.add_action.trigger()
    dialog = window.server_menu.dialog
    assert isinstance(dialog, AddServerDialog) and dialog.isVisible()
    dialog.name.setText(name)
    dialog.fields.url.setText(url)
    dialog.fields.api_key.setText(key)
    qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
    assert dialog.fields.problem.text() == "Checking the server…"
    qtbot.waitUntil(lambda: not dialog.fields.checking, timeout=60_000)
    return dialog


def choose(qtbot, window: MainWindow, needle: str) -> str:  # type: ignore[no-untyped-def]
    """Pick the model whose label contains ``needle`` in the chat window's model box, as a user does;
    returns its item id."""
    box = window.chat_view.model_box
    qtbot.waitUntil(lambda: box.findText(needle, Qt.MatchFlag.MatchContains) >= 0, timeout=30_000)
    i = box.findText(needle, Qt.MatchFlag.MatchContains)
    box.setCurrentIndex(i)
    box.activated.emit(i)
    return str(box.itemData(i))


def wait_ready(qtbot, window: MainWindow, item: str) -> None:  # type: ignore[no-untyped-def]
    qtbot.waitUntil(lambda: window.chat.model_id == item and window.chat.remote_info is not None
                    and window.chat._load is None, timeout=60_000)  # fmt: skip
    qtbot.waitUntil(lambda: window.chat_view.model_status.text().startswith("Ready · remote server"), timeout=10_000)


def send(qtbot, window: MainWindow, text: str, max_tokens: int = 12, wait: bool = True) -> None:  # type: ignore[no-untyped-def]
    window.chat_view.settings_panel.max_tokens.setValue(max_tokens)
    window.chat_view.settings_panel.temperature.setValue(0.0)
    window.chat_view.composer.edit.setPlainText(text)
    qtbot.keyClick(window.chat_view.composer.edit, Qt.Key.Key_Return)
    assert window.chat.transcript.messages()[-2].content == text.strip(), "the message was accepted"
    if wait:
        qtbot.waitUntil(lambda: not window.chat.busy, timeout=LONG)


def last_row(window: MainWindow):  # type: ignore[no-untyped-def]
    cid = window.chat.conversation_id
    assert cid is not None
    return window.chat.history.messages(cid)[-1]


def test_llama_cpp_server_model_chosen_in_the_window(qtbot, window: MainWindow, llama_server: str,
                                                     gemma3_gguf: Path) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    dialog = add_server(qtbot, window, "llama box", llama_server, "lcp-key")
    assert dialog.result() == 1, dialog.fields.problem.text()
    saved = ServerStore(app_paths().config_dir / "servers.json")
    assert [(e.name, e.base_url, e.api_key) for e in saved.list()] == [("llama box", llama_server, "lcp-key")]
    assert stat.S_IMODE(saved.path.stat().st_mode) == 0o600, "the key is readable only by the user"
    item = choose(qtbot, window, "llama box (remote)")
    wait_ready(qtbot, window, item)
    send(qtbot, window, "What is the capital of France?")
    reply = window.chat.transcript.messages()[-1]
    assert reply.role == "assistant" and reply.content and not reply.error
    assert reply.stats["completion_tokens"] >= 1 and reply.stats["time_to_first_token_s"] > 0
    row = last_row(window)
    assert row.status == "complete" and row.content == reply.content
    assert row.model == str(gemma3_gguf), "the history names the remote model (llama_cpp.server: its path)"


def test_gemmadesk_server_thinking_and_stop_work_as_locally(qtbot, window: MainWindow, ours: Served) -> None:  # type: ignore[no-untyped-def]
    assert add_server(qtbot, window, "other desk", ours.base_url, "our-key").result() == 1
    item = choose(qtbot, window, "gemma3-270m — other desk")
    wait_ready(qtbot, window, item)
    assert window.chat_view.composer.send_button.isEnabled()
    send(qtbot, window, "Repeat exactly:\n" + THOUGHT_PATTERN * 4, max_tokens=40)
    reply = window.chat.transcript.messages()[-1]
    assert "sky is blue" in reply.thoughts and "<|channel>" not in reply.content, "thoughts shown apart"
    assert "sky is blue" in last_row(window).thoughts

    send(qtbot, window, "Write a very long story about the sea.", max_tokens=600, wait=False)
    qtbot.waitUntil(lambda: len(window.chat.transcript.messages()[-1].content) > 10, timeout=LONG)
    window.chat_view.composer.stop.emit()
    qtbot.waitUntil(lambda: not window.chat.busy, timeout=30_000)
    row = last_row(window)
    assert row.status == "partial" and row.content and row.stats["stop_reason"] == "stopped"
    assert row.stats["completion_tokens"] < 200


def test_unreachable_wrong_key_and_untrusted_certificate_are_one_sentence_each(
    qtbot, window: MainWindow, ours: Served, https_server: tuple[str, Path]  # noqa: F811
) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    dialog = add_server(qtbot, window, "nobody", f"http://127.0.0.1:{port}/v1")
    assert dialog.result() == 0 and dialog.isVisible()
    assert dialog.fields.problem.text().startswith(f"Cannot connect to 127.0.0.1:{port}")
    dialog.close()
    for key, words in (("", "needs an API key"), ("wrong", "refused the API key")):
        dialog = add_server(qtbot, window, "desk", ours.base_url, key)
        assert dialog.result() == 0 and words in dialog.fields.problem.text()
        assert dialog.add_button.isEnabled(), "the user can correct the key and try again"
        dialog.close()
    url, _cert = https_server
    dialog = add_server(qtbot, window, "self-signed", url)
    assert dialog.result() == 0 and "certificate could not be verified" in dialog.fields.problem.text()
    dialog.close()
    assert ServerStore(app_paths().config_dir / "servers.json").list() == [], "nothing failing is saved"


def test_server_faults_mid_chat_become_notices_and_keep_the_partial_reply(qtbot, window: MainWindow,
                                                                          faults: str) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    window.remote.timeouts = RemoteTimeouts(connect=2, read=1.0, write=2)
    for fault, words in (("stall", "sent nothing for 1 s in the middle of the reply"),
                         ("garbage", "cannot read"), ("error-event", "CUDA out of memory")):  # fmt: skip
        assert add_server(qtbot, window, fault, f"{faults}/{fault}/v1").result() == 1
        item = choose(qtbot, window, f"m — {fault} (remote)")
        wait_ready(qtbot, window, item)
        send(qtbot, window, "Hello?")
        reply = window.chat.transcript.messages()[-1]
        assert words in reply.error and "\x1b" not in reply.error
        assert window.notice.isVisible() and words in window.notice.text()
        assert last_row(window).status == "partial" and last_row(window).content == "Hello"


def test_server_killed_mid_stream_and_gone_at_start(qtbot, window: MainWindow, gemma3_gguf: Path,
                                                     laptop_8gb: Hardware) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    with gemmadesk_serve_process(str(gemma3_gguf), "--ctx", "1024", "--name", "g3") as (proc, url):
        wait_loaded(url)
        assert add_server(qtbot, window, "child", url).result() == 1
        item = choose(qtbot, window, "g3 — child (remote)")
        wait_ready(qtbot, window, item)
        send(qtbot, window, "Write a very long story about the sea.", max_tokens=500, wait=False)
        qtbot.waitUntil(lambda: len(window.chat.transcript.messages()[-1].content) > 5, timeout=LONG)
        proc.kill()
        qtbot.waitUntil(lambda: not window.chat.busy, timeout=60_000)
    reply = window.chat.transcript.messages()[-1]
    assert "broke off" in reply.error or "ended in the middle" in reply.error
    assert last_row(window).status == "partial" and last_row(window).content, "what arrived is kept"

    # The next start: the saved server is gone; its entry says so, and choosing it tries again.
    later = MainWindow(hardware=laptop_8gb)
    qtbot.addWidget(later)
    later.stack.setCurrentWidget(later.chat_view)
    box = later.chat_view.model_box
    qtbot.waitUntil(lambda: box.findText("child (remote): not reachable", Qt.MatchFlag.MatchContains) >= 0,
                    timeout=30_000)  # fmt: skip
    assert "Cannot connect" in next(iter(later.remote.failures.values()))
    choose(qtbot, later, "child (remote): not reachable")
    qtbot.waitUntil(lambda: not later.tasks.pending, timeout=30_000)
    assert later.chat.remote_info is None
    later.close()
