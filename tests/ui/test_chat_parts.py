"""Chat pieces without a model: safe rendering, models, sidebar actions, keyboard, menus, geometry."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QGuiApplication, QTextDocument
from PySide6.QtWidgets import QApplication, QMenu, QMessageBox

from gemmadesk import __version__
from gemmadesk.core.hardware import Hardware
from gemmadesk.core.paths import app_paths
from gemmadesk.ui.main_window import MainWindow
from gemmadesk.ui.markdown import render_markdown
from gemmadesk.ui.message_view import MessageView
from gemmadesk.ui.transcript_model import Message, TranscriptModel


class _Counter(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def counting_server() -> Iterator[tuple[str, list[str]]]:
    handler: type[_Counter] = type("H", (_Counter,), {"hits": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler.hits
    server.shutdown()
    server.server_close()
    thread.join(10)


def test_model_output_never_loads_remote_resources_or_passes_html(qtbot, counting_server) -> None:  # type: ignore[no-untyped-def]
    url, hits = counting_server
    hostile = (
        f'<img src="{url}/tag.png"> <script>alert(1)</script> ![x]({url}/md.png) '
        f"<a href='javascript:alert(1)'>j</a> [ok](https://example.org) [bad](javascript:alert(2))\n\n"
        f"<style>@import url({url}/css);</style>"
    )
    model = TranscriptModel()
    view = MessageView(model)
    qtbot.addWidget(view)
    view.show()
    model.append(Message("assistant", hostile))
    qtbot.wait(300)
    assert hits == []
    html = render_markdown(hostile).html
    assert _anchors(view.bubbles[0].body.document()) == [f"{url}/md.png", "https://example.org"]
    assert "<img" not in html
    assert "<script" not in html
    assert "<style" not in html
    assert "<a href='javascript" not in html
    assert '<a href="javascript' not in html
    assert '<a href="https://example.org">ok</a>' in html
    assert view.bubbles[0].body.loadResource(2, QUrl(f"{url}/direct.png")) is None
    assert hits == []


def _anchors(doc: QTextDocument) -> list[str]:
    """Every link target in a shown document (what a click could open)."""
    found = []
    block = doc.begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fmt = it.fragment().charFormat()
            if fmt.isAnchor():
                found.append(fmt.anchorHref())
            it += 1
        block = block.next()
    return found


def test_code_block_copy_link_copies_the_code(qtbot) -> None:  # type: ignore[no-untyped-def]
    rendered = render_markdown("Intro\n\n```python\nprint('hi')\n```\n\n```\nsecond\n```")
    assert rendered.code_blocks == ["print('hi')", "second"]
    assert "href='copy:1'" in rendered.html
    model = TranscriptModel()
    view = MessageView(model)
    qtbot.addWidget(view)
    model.append(Message("assistant", "```python\nprint('hi')\n```"))
    view.bubbles[0].body.link_clicked.emit(QUrl("copy:0"))
    assert QGuiApplication.clipboard().text() == "print('hi')"


def test_transcript_model_and_streaming_rows(qtmodeltester) -> None:  # type: ignore[no-untyped-def]
    model = TranscriptModel()
    model.append(Message("user", "hi"))
    model.append(Message("assistant", "", streaming=True))
    changes: list[tuple[int, int]] = []
    model.dataChanged.connect(lambda a, b: changes.append((a.row(), b.row())))
    for piece in ("Hel", "lo", "!"):
        model.append_to_last(answer=piece)
    model.append_to_last(thought="hmm")
    assert changes == [(1, 1)] * 4
    assert model.message(1).content == "Hello!"
    assert model.message(1).thoughts == "hmm"
    qtmodeltester.check(model, force_py=True)
    assert [m.role for m in model.truncate(0)] == ["user", "assistant"]
    assert model.rowCount() == 0


def test_sidebar_new_rename_search_delete_with_confirmation(qtbot, window: MainWindow, qtmodeltester) -> None:  # type: ignore[no-untyped-def]
    ctl, side = window.chat, window.chat_view.sidebar
    first = ctl.new_conversation()
    assert first is not None
    ctl.history.add_message(first, "user", "tell me about lighthouses")
    second = ctl.new_conversation()
    assert second is not None
    ctl.history.add_message(second, "user", "a recipe for bread")
    ctl.refresh_conversations()
    assert ctl.conversations.rowCount() == 2
    qtmodeltester.check(ctl.conversations, force_py=True)

    index = ctl.conversations.index(ctl.conversations.row_of(second))
    assert ctl.conversations.setData(index, "Bread")  # what in-place editing does
    assert ctl.history.get_conversation(second).title == "Bread"

    side.search.setText("lighthouse")  # searches message text, not only titles
    assert ctl.conversations.rowCount() == 1
    assert ctl.conversations.conversation(0).id == first
    side.search.clear()
    assert ctl.conversations.rowCount() == 2

    side.list.setCurrentIndex(ctl.conversations.index(ctl.conversations.row_of(second)))
    side.delete_button.click()  # asks first: Cancel keeps it
    box = window.findChild(QMessageBox, "confirm-delete")
    assert box is not None
    assert box.isVisible()
    box.button(QMessageBox.StandardButton.Cancel).click()
    assert ctl.conversations.rowCount() == 2
    side.delete_button.click()
    boxes = [b for b in window.findChildren(QMessageBox, "confirm-delete") if b.isVisible()]
    boxes[-1].button(QMessageBox.StandardButton.Yes).click()
    assert [c.id for c in ctl.history.list_conversations()] == [first]


def test_keyboard_enter_shift_enter_ctrl_n_ctrl_f(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    composer = window.chat_view.composer
    sent: list[tuple[str, int | None]] = []
    composer.send.connect(lambda text, message_id: sent.append((text, message_id)))
    composer.edit.setFocus()
    qtbot.keyClicks(composer.edit, "line one")
    qtbot.keyClick(composer.edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    qtbot.keyClicks(composer.edit, "line two")
    assert composer.edit.toPlainText() == "line one\nline two"
    qtbot.keyClick(composer.edit, Qt.Key.Key_Return)
    assert sent == [("line one\nline two", None)]
    assert window.notice.isVisible()
    assert "No model is loaded" in window.notice.text()
    assert composer.edit.toPlainText() == "line one\nline two", "a message that was not sent is not lost"

    before = window.chat.history.list_conversations()
    qtbot.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert len(window.chat.history.list_conversations()) == len(before) + 1
    qtbot.keyClick(window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert QApplication.focusWidget() is window.chat_view.sidebar.search


def test_accessible_names_on_interactive_widgets(window: MainWindow) -> None:
    from PySide6.QtWidgets import QAbstractButton, QComboBox, QLineEdit, QPlainTextEdit

    unnamed = [
        w.text() if isinstance(w, QAbstractButton) else type(w).__name__
        for cls in (QAbstractButton, QComboBox, QLineEdit, QPlainTextEdit)
        for w in window.findChildren(cls)
        if not w.accessibleName()
        and not (isinstance(w, QAbstractButton) and w.text().strip("&"))
        and w.isVisibleTo(window)
    ]
    assert unnamed == []


def test_help_menu_about_and_log_file(window: MainWindow) -> None:
    text = window.about_text()
    assert __version__ in text
    assert "llama-cpp-python 0.3.36" in text
    assert str(app_paths().log_file) in text
    titles = [a.text() for a in window.menuBar().actions()]
    assert "&Help" in titles
    help_menu = window.menuBar().actions()[titles.index("&Help")].menu()
    assert isinstance(help_menu, QMenu)
    assert any("log" in a.text().lower() for a in help_menu.actions())


def test_window_geometry_is_remembered(qtbot, laptop_8gb: Hardware) -> None:  # type: ignore[no-untyped-def]
    w = MainWindow(hardware=laptop_8gb)
    qtbot.addWidget(w)
    w.show()
    w.resize(717, 513)
    w.close()
    again = MainWindow(hardware=laptop_8gb)
    qtbot.addWidget(again)
    assert (again.width(), again.height()) == (717, 513)
    assert (app_paths().config_dir / "window.ini").exists()


def test_thoughts_are_collapsible_and_stats_unobtrusive(qtbot) -> None:  # type: ignore[no-untyped-def]
    model = TranscriptModel()
    view = MessageView(model)
    qtbot.addWidget(view)
    view.show()
    stats = {"generated_tokens_per_s": 31.5, "time_to_first_token_s": 0.42, "completion_tokens": 12}
    model.append(Message("assistant", "The answer is 4.", thoughts="2 + 2 = 4", stats=stats))
    bubble = view.bubbles[0]
    qtbot.waitUntil(bubble.isVisible)  # a widget added to a shown layout appears on the next event pass
    assert bubble.thoughts_toggle.isVisibleTo(view)
    assert not bubble.thoughts.isVisibleTo(view)  # collapsed by default
    bubble.thoughts_toggle.click()
    assert bubble.thoughts.isVisibleTo(view)
    assert "2 + 2 = 4" in bubble.thoughts.toPlainText()
    assert bubble.stats.text() == "31.5 tok/s · first token 0.42 s · 12 tokens"
    model.append(Message("user", "no thoughts here"))
    qtbot.waitUntil(view.bubbles[1].isVisible)
    assert not view.bubbles[1].thoughts_toggle.isVisibleTo(view)


def test_logging_goes_to_the_log_file() -> None:
    import logging

    from gemmadesk.ui.app import setup_logging

    paths = app_paths()
    level = logging.getLogger().level
    setup_logging(paths)
    try:
        logging.getLogger("gemmadesk.test").warning("written for the log file test")
        for handler in logging.getLogger().handlers:
            handler.flush()
        assert "written for the log file test" in paths.log_file.read_text(encoding="utf-8")
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "_gemmadesk", False)]:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(level)


def test_app_main_starts_paints_and_logs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The real entry point (``gemmadesk.ui.app.main``, what ``gemmadesk`` with no arguments calls) in a
    child process: it opens the first-run window, saves a screenshot, quits cleanly and logs to the log
    file. A child process, because ``QApplication.exec()`` returning ends the test's own application."""
    import os
    import subprocess
    import sys

    shot = tmp_path / "shot.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    code = f"""
import sys
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication
from gemmadesk.ui.app import main
from gemmadesk.ui.main_window import MainWindow

app = QApplication(sys.argv[:1])

def shoot():
    window = next(w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible())
    if window.setup.model.rowCount() == 0:  # the fit list is not there yet
        QTimer.singleShot(100, shoot)
        return
    window.grab().save({str(shot)!r})
    window.close()

QTimer.singleShot(200, shoot)
sys.exit(main([]))
"""
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.stat().st_size > 10_000
    log = app_paths().log_file.read_text(encoding="utf-8")
    assert "GemmaDesk 0" in log and "exiting with 0" in log


def test_app_icon_has_every_packaged_size(qapp) -> None:  # type: ignore[no-untyped-def]
    from gemmadesk.ui.app import app_icon

    sizes = {s.width() for s in app_icon().availableSizes()}
    assert {16, 32, 48, 256} <= sizes


def test_settings_are_read_once_and_every_field_is_used(qtbot, monkeypatch, laptop_8gb: Hardware,
                                                         gemma3_gguf) -> None:  # type: ignore[no-untyped-def]
    """Issue 12 item 6: settings.json is read once at start and passed down, and the fields do something:
    a new chat's defaults, the planner's KV type and flash attention, the load's thread count."""
    import json
    import logging

    from gemmadesk.core.settings import SettingsStore
    from gemmadesk.ui import app as app_module

    paths = app_paths().ensure()
    paths.settings_file.write_text(json.dumps({
        "schema_version": 3, "temperature": 0.3, "top_p": 0.8, "top_k": 20, "max_tokens": 333,
        "system_prompt": "Answer in French.", "enable_thinking": True, "kv_cache_type": "q8_0",
        "flash_attn": "off", "n_threads": 3, "context_length": 4096,
    }))  # fmt: skip
    reads: list[object] = []
    real_load = SettingsStore.load

    def counting_load(self: SettingsStore):  # type: ignore[no-untyped-def]
        reads.append(self.path)  # a spy: the real load runs
        return real_load(self)

    monkeypatch.setattr(SettingsStore, "load", counting_load)
    root_handlers = list(logging.getLogger().handlers)
    try:
        _app, window = app_module.build(["--hardware", str(_hardware_file(laptop_8gb))])
        qtbot.addWidget(window)
        assert reads == [paths.settings_file], "settings.json is read once at start"
        panel, composer = window.chat_view.settings_panel, window.chat_view.composer
        assert (panel.temperature.value(), panel.top_p.value(), panel.top_k.value()) == (0.3, 0.8, 20)
        assert panel.max_tokens.value() == 333
        assert panel.system_prompt.toPlainText() == "Answer in French."
        assert composer.thinking.isChecked()
        options = window.setup.options
        assert (options.n_ctx, options.kv_type, options.flash_attn) == (4096, "q8_0", "off")
        model = window.store.import_file(gemma3_gguf)
        _plan, load = window.chat.load_settings_for(model, 2048)
        assert (load.n_threads, load.n_ctx, load.type_k, load.flash_attn) == (3, 2048, "q8_0", False)
        cid = window.chat.new_conversation()
        assert cid is not None and window.chat.history.get_conversation(cid).system_prompt == "Answer in French."
        window.close()
    finally:
        for handler in [h for h in logging.getLogger().handlers if h not in root_handlers]:
            logging.getLogger().removeHandler(handler)
            handler.close()


def _hardware_file(hw: Hardware) -> object:
    import json

    path = app_paths().config_dir / "hw.json"
    path.write_text(json.dumps(hw.to_dict()))
    return path
