"""Outside text never becomes HTML in the window: error lines, model names, titles, server messages, tooltips.

Qt guesses rich text for a QLabel, QMessageBox or tooltip whose text looks like HTML, so a chat template's
``raise_exception("<a href=…>")`` became a clickable link in the bubble (issue 10, item 9). Real widgets,
offscreen; a local server counts any fetch an <img> would make.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QMessageBox

from gemmadesk.core.hardware import Hardware
from gemmadesk.ui.download_view import DownloadPanel
from gemmadesk.ui.main_window import MainWindow
from gemmadesk.ui.message_view import MessageView
from gemmadesk.ui.transcript_model import Message, TranscriptModel


class _Counter(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:
        self.hits.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, list[str]]]:
    hits: list[str] = []
    handler = type("H", (_Counter,), {"hits": hits})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()
    httpd.server_close()
    thread.join(10)


def hostile(url: str) -> str:
    return f"<a href='{url}/click'>Click here</a><img src='{url}/pixel.png'><b>bold?</b>"


def test_error_line_is_plain_text(qtbot, server) -> None:  # type: ignore[no-untyped-def]
    url, hits = server
    model = TranscriptModel()
    view = MessageView(model)
    qtbot.addWidget(view)
    view.show()
    model.append(Message("assistant", "Partial answer", error=hostile(url)))
    qtbot.wait(200)
    bubble = view.bubbles[0]
    assert bubble.error.textFormat() == Qt.TextFormat.PlainText
    assert bubble.error.text() == hostile(url)
    assert bubble.error.isVisible()
    # The error is not in the rich-text body at all, so no link or image exists for it.
    html = bubble.body.document().toHtml()
    assert "/click" not in html
    assert "pixel.png" not in html
    assert bubble.body.document().toPlainText() == "Partial answer"
    assert hits == []


def test_every_label_in_the_window_declares_its_text_format(qtbot, laptop_8gb: Hardware) -> None:  # type: ignore[no-untyped-def]
    window = MainWindow(hardware=laptop_8gb)
    qtbot.addWidget(window)
    window.show()
    window.stack.setCurrentWidget(window.chat_view)
    window.chat.transcript.append(Message("user", "hi"))
    window.chat.transcript.append(Message("assistant", "hello", error="x"))
    labels = window.findChildren(QLabel)
    assert len(labels) > 10
    guessing = [(lb.objectName() or lb.accessibleName() or lb.text()[:30]) for lb in labels
                if lb.textFormat() == Qt.TextFormat.AutoText and lb.text()]  # fmt: skip
    assert not guessing, f"labels that let Qt guess rich text: {guessing}"


def test_model_names_titles_and_server_messages_stay_literal(qtbot, laptop_8gb: Hardware, server) -> None:  # type: ignore[no-untyped-def]
    url, hits = server
    window = MainWindow(hardware=laptop_8gb)
    qtbot.addWidget(window)
    window.show()
    view = window.chat_view
    view._loading(hostile(url), 0.5)  # the model's name comes from its GGUF file
    assert view.model_status.text() == f"Loading {hostile(url)}…"
    assert view.model_status.textFormat() == Qt.TextFormat.PlainText

    panel = DownloadPanel()
    qtbot.addWidget(panel)
    panel.set_failed(hostile(url), hostile(url))  # the message can come from a server
    assert panel.status.textFormat() == Qt.TextFormat.PlainText
    assert panel.status.text() == f"Download of {hostile(url)} failed: {hostile(url)}"

    ctl = window.chat
    cid = ctl.new_conversation()
    assert cid is not None
    ctl.history.rename(cid, hostile(url))
    ctl.refresh_conversations()
    row = ctl.conversations.row_of(cid)
    tip = str(ctl.conversations.index(row).data(Qt.ItemDataRole.ToolTipRole))
    assert "<a href" not in tip and "<img" not in tip
    assert "&lt;img src=" in tip  # shown literally

    view.sidebar.list.setCurrentIndex(ctl.conversations.index(row))
    view.sidebar.delete_button.click()
    box = window.findChild(QMessageBox, "confirm-delete")
    assert box is not None
    assert box.textFormat() == Qt.TextFormat.PlainText
    assert hostile(url) in box.text()
    box.button(QMessageBox.StandardButton.Cancel).click()
    qtbot.wait(200)
    assert hits == []
