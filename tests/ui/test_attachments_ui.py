"""Images and audio in the real window (issue 14 phase 2): real widgets (offscreen), real drops (QMimeData),
the real clipboard, the real ModelHost worker with llama.cpp + mtmd on the synthetic Gemma 4 model and
projector, real SQLite and the real attachment store. Before this work the window had no attachments at
all: every test here fails on the old code."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QGuiApplication, QImage
from PySide6.QtWidgets import QApplication, QLabel, QToolButton, QWidget

from gemmadesk.core.history import HistoryStore
from gemmadesk.core.paths import app_paths
from gemmadesk.core.store import ModelStore
from gemmadesk.ui.attachments import ImageViewer
from gemmadesk.ui.main_window import MainWindow
from tests.support.media_files import png, wav, write
from tests.support.mm_fixtures import projectors, tiny_model

__all__ = ["projectors", "tiny_model"]  # fixtures
pytestmark = pytest.mark.slow
LONG = 180_000


def _install(model: Path, projector: Path | None) -> str:
    store = ModelStore(app_paths())
    installed = store.import_file(model)
    if projector is not None:
        store.attach_mmproj(installed.id, projector, None, owned=False)
    return installed.id


def _window(qtbot) -> MainWindow:  # type: ignore[no-untyped-def]
    window = MainWindow()
    qtbot.addWidget(window)
    window.resize(1100, 760)
    window.show()
    qtbot.waitUntil(lambda: window.chat.report is not None, timeout=LONG)
    window.chat_view.settings_panel.max_tokens.setValue(4)
    return window


def _drop(widget: object, mime: QMimeData) -> None:
    """A real drag-enter and drop of ``mime`` on ``widget``, delivered through Qt's event dispatch."""
    actions = Qt.DropAction.CopyAction
    enter = QDragEnterEvent(QPoint(20, 20), actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)  # type: ignore[arg-type]
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(20, 20), actions, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, drop)  # type: ignore[arg-type]


def _button(item: QWidget) -> QToolButton:
    button = item.findChild(QToolButton, "AttachmentButton")
    assert button is not None
    return button


def _files(*paths: Path) -> QMimeData:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    return mime


@pytest.fixture
def vision_window(qtbot, tiny_model: Path, projectors: Callable[..., Path]) -> MainWindow:  # type: ignore[no-untyped-def]
    _install(tiny_model, projectors("tiny"))
    return _window(qtbot)


def test_drop_paste_remove_send_thumbnail_view_large_and_reload(  # type: ignore[no-untyped-def]
    qtbot, tmp_path: Path, vision_window: MainWindow
) -> None:
    window = vision_window
    view, ctl, composer = window.chat_view, window.chat, window.chat_view.composer
    assert "sees images and hears audio" in view.model_status.text()
    photo = write(tmp_path / "users", "Beach at noon.png", png(320, 200, seed=4))
    clip = write(tmp_path / "users", "voice note.wav", wav(0.4))

    _drop(view.messages.viewport(), _files(photo, clip))  # dropped on the transcript: the chat view takes it
    qtbot.waitUntil(lambda: len(composer.pending_attachments()) == 2, timeout=LONG)
    assert composer.attachments.isVisible()
    [(img, img_item), (audio, audio_item)] = sorted(composer.attachments.items, key=lambda x: x[0].kind != "image")
    assert img.name == "Beach at noon.png" and img.path.parent.parent == ctl.history.attachments.root
    button = _button(img_item)
    assert button is not None and not button.icon().isNull(), "a real thumbnail"
    assert "voice note.wav" in _button(audio_item).accessibleName()
    assert "voice note.wav" in [label.text() for label in audio_item.findChildren(QLabel)]

    picture = QImage(120, 80, QImage.Format.Format_RGB32)
    picture.fill(Qt.GlobalColor.darkCyan)
    QGuiApplication.clipboard().setImage(picture)
    composer.edit.setFocus()
    composer.edit.paste()  # Ctrl+V: the clipboard's picture becomes an attachment
    qtbot.waitUntil(lambda: len(composer.pending_attachments()) == 3, timeout=LONG)
    pasted = [a for a in composer.pending_attachments() if a.name == "pasted picture.png"]
    assert pasted and pasted[0].mime == "image/png"

    remove = audio_item.findChild(QToolButton, "RemoveAttachment")
    qtbot.mouseClick(remove, Qt.MouseButton.LeftButton)
    assert [a.kind for a in composer.pending_attachments()] == ["image", "image"]

    composer.edit.setPlainText("What is in these pictures?")
    qtbot.keyClick(composer.edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not ctl.busy, timeout=LONG)
    assert composer.pending_attachments() == () and not composer.attachments.isVisible()
    user, reply = ctl.transcript.messages()
    assert len(user.attachments) == 2 and reply.stats["prompt_tokens"] > 2 * 70
    bubble = view.messages.bubbles[0]
    thumbs = [_button(item) for _, item in bubble.attachments.items]
    qtbot.waitUntil(lambda: all(not t.icon().isNull() for t in thumbs), timeout=LONG)

    qtbot.mouseClick(thumbs[0], Qt.MouseButton.LeftButton)  # click: view it large
    viewers = [w for w in window.findChildren(ImageViewer)]
    assert len(viewers) == 1
    qtbot.waitUntil(lambda: viewers[0].image is not None, timeout=LONG)
    shown = viewers[0].image
    assert shown is not None and shown.width() == 320  # full size (below the view limit)
    viewers[0].close()

    history = HistoryStore()
    try:
        [conv] = history.list_conversations()
        assert [len(m.attachments) for m in history.messages(conv.id)] == [2, 0]
    finally:
        history.close()
    window.close()

    again = _window(qtbot)  # restart: the transcript shows the pictures again
    first = again.chat_view.messages.bubbles[0]
    assert len(first.attachments.items) == 2
    buttons = [_button(item) for _, item in first.attachments.items]
    qtbot.waitUntil(lambda: all(not b.icon().isNull() for b in buttons), timeout=LONG)
    again.close()


def test_refusals_are_one_sentence_notices_and_nothing_is_attached(  # type: ignore[no-untyped-def]
    qtbot, tmp_path: Path, vision_window: MainWindow
) -> None:
    window = vision_window
    view, composer = window.chat_view, window.chat_view.composer
    text = write(tmp_path, "holiday.png", b"Dear diary, this is text and not a picture.")
    _drop(composer.edit.viewport(), _files(text))  # onto the message box itself
    qtbot.waitUntil(lambda: window.notice.isVisible() and "is not an image or audio file" in window.notice.text(),
                    timeout=LONG)
    assert composer.pending_attachments() == ()
    huge = QImage(17000, 10, QImage.Format.Format_RGB32)
    huge.fill(Qt.GlobalColor.white)
    mime = QMimeData()
    mime.setImageData(huge)
    _drop(view, mime)  # image data dropped from another program
    qtbot.waitUntil(lambda: "pixels a side" in window.notice.text(), timeout=LONG)
    assert composer.pending_attachments() == ()
    mime = QMimeData()
    mime.setText("just text")
    assert not composer.edit.canInsertFromMimeData(mime) or not mime.hasUrls()  # text stays text
    composer.edit.insertFromMimeData(mime)
    assert composer.edit.toPlainText() == "just text"


def test_vision_only_projector_refuses_audio(  # type: ignore[no-untyped-def]
    qtbot, tmp_path: Path, tiny_model: Path, projectors: Callable[..., Path]
) -> None:
    _install(tiny_model, projectors("tiny", audio=False))
    window = _window(qtbot)
    clip = write(tmp_path, "song.wav", wav(0.3))
    _drop(window.chat_view, _files(clip))
    qtbot.waitUntil(lambda: "takes images but not audio" in window.notice.text(), timeout=LONG)
    assert window.chat_view.composer.pending_attachments() == ()
    assert list(window.chat.history.attachments.hashes()) == [], "refused before anything was stored"
    window.close()


def test_a_model_without_its_projector_chats_as_text_and_says_how_to_add_vision(  # type: ignore[no-untyped-def]
    qtbot, tmp_path: Path, tiny_model: Path
) -> None:
    _install(tiny_model, None)
    window = _window(qtbot)
    view = window.chat_view
    assert "text only (no projector)" in view.model_status.text()
    assert "download its projector" in view.composer.attach_button.toolTip()
    qtbot.mouseClick(view.composer.attach_button, Qt.MouseButton.LeftButton)
    assert window.notice.isVisible() and "loaded without its projector" in window.notice.text()
    assert view.file_dialog is None, "no file dialog for a model that cannot take files"
    view.composer.edit.setPlainText("Hello")
    qtbot.keyClick(view.composer.edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not window.chat.busy and len(window.chat.transcript.messages()) == 2, timeout=LONG)
    assert window.chat.transcript.messages()[1].error == ""
    window.close()


def test_a_missing_attachment_is_shown_as_missing(  # type: ignore[no-untyped-def]
    qtbot, tmp_path: Path, vision_window: MainWindow
) -> None:
    window = vision_window
    photo = write(tmp_path, "gone.png", png(64, 64))
    window.chat.attachment_jobs.attach_files([str(photo)])
    qtbot.waitUntil(lambda: len(window.chat_view.composer.pending_attachments()) == 1, timeout=LONG)
    window.chat_view.composer.edit.setPlainText("Look")
    qtbot.keyClick(window.chat_view.composer.edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not window.chat.busy, timeout=LONG)
    [att] = window.chat.transcript.messages()[0].attachments
    att.path.unlink()
    cid = window.chat.conversation_id
    assert cid is not None
    window.chat.open_conversation(cid)
    [(_, item)] = window.chat_view.messages.bubbles[0].attachments.items
    button = _button(item)
    assert "attachment missing" in button.text() and not button.isEnabled()
    window.close()
