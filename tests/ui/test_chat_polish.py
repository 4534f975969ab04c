"""Issue 11 items 9, 10 and 11 in the real window (offscreen, real SQLite): export and import of chats, copy a
whole message, system-prompt presets, full-text search with the match highlighted, the keyboard-shortcut
help, the light/dark switch, the layout fixes, the empty-chat hint, interrupted replies; and the history's
notices shown when they happen (not only at start-up)."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFileDialog, QInputDialog, QLabel

from gemmadesk.core.hardware import Hardware
from gemmadesk.core.history import HistoryStore
from gemmadesk.core.paths import app_paths
from gemmadesk.core.presets import BUILTIN, PresetStore
from gemmadesk.core.settings import SettingsStore
from gemmadesk.ui.conversation_delegate import highlight_ranges
from gemmadesk.ui.conversation_model import SNIPPET_ROLE
from gemmadesk.ui.main_window import MainWindow
from gemmadesk.ui.message_view import INTERRUPTED
from gemmadesk.ui.shortcuts import ShortcutsDialog, menu_shortcuts

LONG = 60_000
REPLY = "Use slicing:\n\n```python\nprint('GemmaDesk'[::-1])\n```\n\nSlicing makes a **copy**."


def seed() -> dict[str, int]:
    """Two chats, as the history of an earlier session holds them."""
    history = HistoryStore(app_paths().ensure().history_db)
    try:
        a = history.create_conversation(title="Strings")
        history.add_message(a.id, "user", "How do I reverse a string?")
        history.add_message(a.id, "assistant", REPLY, stats={"completion_tokens": 12})
        b = history.create_conversation(title="Hiking")
        history.add_message(b.id, "user", "What do I pack for a hike?")
        history.add_message(b.id, "assistant", "Water, a map and a rain layer.")
        return {"strings": a.id, "hiking": b.id}
    finally:
        history.close()


def choose(window: MainWindow, path: Path) -> None:
    """Pick ``path`` in the file dialog the window opened (window-modal, Qt's own dialog offscreen)."""
    dialog = window.window_actions.dialog
    assert isinstance(dialog, QFileDialog) and dialog.isVisible()
    dialog.selectFile(str(path))
    dialog.accept()


# ---------------------------------------------------------------------------------------------- item 9
def test_export_the_open_chat_as_markdown_and_json(qtbot, tmp_path: Path, laptop_8gb: Hardware) -> None:  # type: ignore[no-untyped-def]
    ids = seed()
    window = MainWindow(hardware=laptop_8gb)
    qtbot.addWidget(window)
    window.show()
    window.chat.open_conversation(ids["strings"])
    window.window_actions.export_action.trigger()
    assert window.window_actions.dialog is not None
    assert window.window_actions.dialog.selectedFiles()[0].endswith("Strings.md"), "named after the chat"
    choose(window, tmp_path / "strings.md")
    qtbot.waitUntil(lambda: "Exported" in window.notice.text(), timeout=LONG)
    text = (tmp_path / "strings.md").read_text(encoding="utf-8")
    assert text.startswith("# Strings") and "print('GemmaDesk'[::-1])" in text

    window.chat_view.sidebar.export_requested.emit(ids["hiking"], "json")  # the list's context menu
    choose(window, tmp_path / "hiking.json")
    qtbot.waitUntil(lambda: (tmp_path / "hiking.json").exists(), timeout=LONG)
    data = json.loads((tmp_path / "hiking.json").read_text(encoding="utf-8"))
    assert data["conversation"]["title"] == "Hiking" and len(data["messages"]) == 2


def test_export_all_then_import_them_as_new_chats(qtbot, tmp_path: Path, laptop_8gb: Hardware) -> None:  # type: ignore[no-untyped-def]
    seed()
    window = MainWindow(hardware=laptop_8gb)
    qtbot.addWidget(window)
    window.show()
    window.window_actions.export_all_action.trigger()
    choose(window, tmp_path / "all.json")
    qtbot.waitUntil(lambda: "Exported every chat" in window.notice.text(), timeout=LONG)
    for conv in window.chat.history.list_conversations():
        window.chat.delete(conv.id)
    assert window.chat.conversations.rowCount() == 0

    window.window_actions.import_action.trigger()
    choose(window, tmp_path / "all.json")
    qtbot.waitUntil(lambda: "Imported 2 conversations" in window.notice.text(), timeout=LONG)
    assert sorted(c.title for c in window.chat.history.list_conversations()) == ["Hiking", "Strings"]
    assert window.stack.currentWidget() is window.chat_view and window.chat.conversation_id is not None
    assert window.chat.transcript.rowCount() == 2

    window.window_actions.import_path(tmp_path / "all.json")  # the same file again: nothing doubled
    qtbot.waitUntil(lambda: "already in your chats" in window.notice.text(), timeout=LONG)
    assert len(window.chat.history.list_conversations()) == 2


def test_a_hostile_chat_import_is_one_notice_and_changes_nothing(qtbot, window: MainWindow, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    seed()
    window.chat.refresh_conversations()
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "gemmadesk-conversations", "version": 1, "conversations": [{"conversation": {}, '
                   '"messages": [{"role": "<img src=x>", "content": "hi"}]}]}')
    window.window_actions.import_path(bad)
    qtbot.waitUntil(lambda: window.notice.isVisible() and window.notice.level == "error", timeout=LONG)
    assert "only \"user\" and \"assistant\"" in window.notice.label.text().replace("&quot;", '"')
    assert "<img" not in window.notice.label.text(), "escaped in the notice"
    assert window.chat.conversations.rowCount() == 2


def test_copy_a_whole_message(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    ids = seed()
    window.chat.open_conversation(ids["strings"])
    bubbles = window.chat_view.messages.bubbles
    qtbot.waitUntil(lambda: all(b.copy_button.isVisible() and b.copy_button.accessibleName() for b in bubbles))
    bubbles[1].copy_button.click()
    assert QGuiApplication.clipboard().text() == REPLY, "the whole reply, as Markdown (code fences included)"


def test_system_prompt_presets(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    panel = window.chat_view.settings_panel
    cid = window.chat.new_conversation()
    assert cid is not None
    assert [panel.preset_box.itemData(i) for i in range(len(BUILTIN))] == [p.name for p in BUILTIN]
    concise = panel.preset_box.findData("Concise")
    panel.preset_box.setCurrentIndex(concise)
    panel.preset_box.activated.emit(concise)  # what choosing it with the mouse does
    assert panel.system_prompt.toPlainText() == BUILTIN[0].text
    assert window.chat.history.get_conversation(cid).system_prompt == BUILTIN[0].text, "the chat keeps it"
    assert not panel.delete_preset_button.isEnabled(), "built-ins cannot be deleted"

    panel.system_prompt.setPlainText("Answer like a pirate.")
    assert panel.preset_box.currentIndex() == -1, "an edited prompt is no longer the preset"
    panel.save_preset_button.click()
    dialog = panel.name_dialog
    assert isinstance(dialog, QInputDialog)
    dialog.setTextValue("Pirate")
    dialog.accept()
    assert [(p.name, p.text) for p in PresetStore(app_paths().presets_file).user_presets()] == \
        [("Pirate", "Answer like a pirate.")]
    assert panel.current_preset() is not None and panel.current_preset().name == "Pirate"  # type: ignore[union-attr]
    assert panel.delete_preset_button.isEnabled()
    panel.delete_preset_button.click()
    assert PresetStore(app_paths().presets_file).user_presets() == []
    panel.save_preset("Concise")  # a built-in's name: said, not saved
    assert "built-in" in window.notice.text()


def test_search_lists_the_hits_and_highlights_the_matching_message(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    ids = seed()
    window.chat.refresh_conversations()
    side = window.chat_view.sidebar
    side.search.setText("SLIC")  # a word's start, any case
    model = window.chat.conversations
    assert model.rowCount() == 1 and model.index(0).data(Qt.ItemDataRole.DisplayRole) == "Strings"
    assert "slicing" in str(model.index(0).data(SNIPPET_ROLE)).lower()
    side.list.setCurrentIndex(model.index(0))
    view = window.chat_view.messages
    assert window.chat.conversation_id == ids["strings"]
    qtbot.waitUntil(lambda: any(b.body.extraSelections() for b in view.bubbles), timeout=LONG)
    assert [b.matched for b in view.bubbles] == [False, True], "the matching reply is framed"
    marked = [s.cursor.selectedText() for s in view.bubbles[1].body.extraSelections()]
    assert marked == ["slicing", "Slicing"], "whole words, in the rendered text (not inside the code)"
    side.search.setText("")
    assert model.rowCount() == 2
    assert not any(b.matched or b.body.extraSelections() for b in view.bubbles), "cleared with the search"


def test_search_text_is_never_markup() -> None:
    """Snippets and titles are drawn with QTextLayout ranges, never HTML; ranges count UTF-16 units as Qt does."""
    text = "😀 <b>slicing</b> and Slicing"
    ranges = highlight_ranges(text, ["slic"])
    assert [text.encode("utf-16-le")[2 * s: 2 * (s + n)].decode("utf-16-le") for s, n in ranges] == \
        ["slicing", "Slicing"]
    assert highlight_ranges("anything", []) == []


# ---------------------------------------------------------------------------------------------- item 10
def test_help_lists_the_keyboard_shortcuts(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    """Regression: nothing said that Esc stops a reply."""
    window.window_actions.show_shortcuts()
    dialog = window.window_actions.shortcuts_dialog
    assert isinstance(dialog, ShortcutsDialog) and dialog.isVisible()
    rows = dialog.rows()
    assert any(key == "Esc" and "Stop the reply" in what for key, what in rows)
    assert ("Ctrl+N", "File → New chat") in rows
    for key, what in menu_shortcuts(window.menuBar()):  # every menu shortcut is listed, read from the menus
        assert (key, what) in rows
    dialog.close()


def test_light_and_dark_switch_applies_at_once_and_is_saved(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    ids = seed()
    window.chat.open_conversation(ids["strings"])
    actions = window.window_actions.theme_actions
    assert actions["system"].isChecked()
    try:
        actions["dark"].trigger()
        qtbot.waitUntil(lambda: window.palette().window().color().lightness() < 128, timeout=LONG)
        assert SettingsStore(app_paths().settings_file).load().theme == "dark"
        qtbot.waitUntil(lambda: window.chat_view.messages.bubbles[1].body._renderer.dark, timeout=LONG)
        actions["light"].trigger()
        qtbot.waitUntil(lambda: window.palette().window().color().lightness() >= 128, timeout=LONG)
        qtbot.waitUntil(lambda: not window.chat_view.messages.bubbles[1].body._renderer.dark, timeout=LONG)
    finally:
        actions["system"].trigger()
    assert SettingsStore(app_paths().settings_file).load().theme == "system"


# ---------------------------------------------------------------------------------------------- item 11
def test_settings_fit_an_800_px_window_with_no_caption_cut(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    """Regression: opening Settings forced the window to 1000 px; its rows spread over the whole height with
    a 90 px system prompt; the "Temperature" caption lost its last letter."""
    window.resize(800, 600)
    qtbot.wait(50)
    window.chat_view.settings_toggle.setChecked(True)
    qtbot.wait(50)
    assert window.width() == 800 and window.minimumSizeHint().width() <= 800
    panel = window.chat_view.settings_panel
    assert panel.isVisible() and panel.system_prompt.height() >= 150, "the prompt gets the height there is"
    gap = panel.top_p.geometry().top() - panel.temperature.geometry().bottom()
    assert gap < panel.temperature.height(), "the numbers sit together, not spread over the height"
    for label in panel.findChildren(QLabel):
        text = label.text()
        if "&" in text:  # drawn in two parts around the underlined letter: both must fit
            head, tail = text.split("&", 1)
            metrics = label.fontMetrics()
            assert label.width() >= metrics.horizontalAdvance(head) + metrics.horizontalAdvance(tail), text
    status = window.chat_view.model_status
    status.setText("Ready · GPU + CPU · 128K context")
    assert window.width() == 800, "a long status is cut with an ellipsis instead"


@pytest.mark.parametrize("machine", ["LAPTOP_8GB", "DESKTOP_24GB_NVIDIA", "MAC_64GB"])
def test_the_fit_list_keeps_every_column_readable_at_800x600(qtbot, machine: str) -> None:  # type: ignore[no-untyped-def]
    """The "Runs on" column collapsed to "…" under a header cut to "ns" at 800x600. (Already fixed on main
    when the format column was folded into the model column; this keeps it so.)"""
    from tests.ui import hardware_fixtures as hwf

    window = MainWindow(hardware=Hardware.from_dict(getattr(hwf, machine)))
    qtbot.addWidget(window)
    window.show()
    window.resize(800, 600)
    window.show_setup()
    qtbot.wait(100)
    table = window.setup_page.view.table
    header = table.horizontalHeader()
    for column in range(header.count()):
        assert header.sectionSize(column) >= header.sectionSizeHint(column), column
    runs_on = window.setup.model.RUNS_ON
    assert header.sectionSize(runs_on) >= table.fontMetrics().horizontalAdvance("GPU + CPU")
    assert window.width() == 800


def test_long_titles_end_in_an_ellipsis_without_a_horizontal_scrollbar(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    history = window.chat.history
    history.create_conversation(title="A very long conversation title " * 8)
    window.chat.refresh_conversations()
    qtbot.wait(50)
    lst = window.chat_view.sidebar.list
    assert not lst.horizontalScrollBar().isVisible()
    assert lst.visualRect(window.chat.conversations.index(0)).right() <= lst.viewport().width()


def test_an_empty_chat_says_what_to_do(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    view = window.chat_view.messages
    assert view.hint.isVisible() and "No model is loaded" in view.hint.title.text()
    assert "Models" in view.hint.text.text()
    assert view.hint.title.textFormat() == Qt.TextFormat.PlainText
    ids = seed()
    window.chat.open_conversation(ids["strings"])
    assert not view.hint.isVisible()
    window.new_chat()
    assert view.hint.isVisible()


def test_a_reply_cut_off_by_a_crash_is_marked_interrupted(qtbot, laptop_8gb: Hardware) -> None:  # type: ignore[no-untyped-def]
    """What an earlier run left when it was killed while writing (a "partial" row saved by the streaming saver,
    never finished), and a reply the user stopped (finished as partial, with its statistics)."""
    history = HistoryStore(app_paths().ensure().history_db)
    conv = history.create_conversation(title="cut")
    history.add_message(conv.id, "user", "Tell me a story")
    stopped = history.begin_reply(conv.id, model="m")
    history.finish_reply(stopped, "Once", "", {"stop_reason": "stopped", "completion_tokens": 1}, "partial")
    history.add_message(conv.id, "user", "Another one")
    cut = history.begin_reply(conv.id, model="m")
    history.update_partial(cut, "There was a lighthouse", "")
    history.close()
    window = MainWindow(hardware=laptop_8gb)
    qtbot.addWidget(window)
    window.show()
    window.chat.open_conversation(conv.id)
    bubbles = window.chat_view.messages.bubbles
    assert bubbles[3].stats.text() == INTERRUPTED
    assert "stopped" in bubbles[1].stats.text() and bubbles[1].stats.text() != INTERRUPTED
    assert bubbles[3].body.document().toPlainText() == "There was a lighthouse", "the text is kept"


# ---------------------------------------------------------------------------------------------- notices
def _damage_everything(path: Path) -> None:
    """Random bytes over every page but the first, as a failing disk would; another connection then touches
    the file so the open one reads it again (as tests/engine/test_history_safety.py does)."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = int(db.execute("PRAGMA page_count").fetchone()[0])
    db.close()
    rng = random.Random(7)
    with path.open("r+b") as fh:
        for page in range(2, pages + 1):
            fh.seek((page - 1) * 4096)
            fh.write(rng.randbytes(4096))
    writer = sqlite3.connect(path)
    writer.execute("PRAGMA user_version = 3")
    writer.close()


def test_history_notices_mid_session_are_shown_when_they_happen_once(qtbot, window: MainWindow) -> None:  # type: ignore[no-untyped-def]
    """Regression: a history damaged while the app runs was moved aside and a fresh one started, but the window
    said so only at the next start."""
    conv = window.chat.new_conversation()
    assert conv is not None
    window.notice.hide()
    _damage_everything(app_paths().history_db)
    model = window.chat.conversations
    model.setData(model.index(model.row_of(conv)), "Renamed")
    qtbot.waitUntil(window.notice.isVisible, timeout=LONG)
    assert "damaged" in window.notice.text() and "chats.sqlite3.damaged-" in window.notice.text()
    assert list(app_paths().history_db.parent.glob("chats.sqlite3.damaged-*")), "kept aside, not deleted"
    window.notice.hide()
    window.chat.new_conversation()
    window.chat.refresh_conversations()
    assert not window.notice.isVisible(), "each notice is shown once"


@pytest.mark.slow
def test_with_a_real_model_the_switch_status_and_hint_tell_the_truth(qtbot, gemma3_gguf: Path) -> None:  # type: ignore[no-untyped-def]
    """Regressions on the real Gemma 3 270M (no thinking in its template): the Thinking switch stayed enabled;
    the status said "Ready" while a reply was being written."""
    from gemmadesk.core.store import ModelStore

    ModelStore(app_paths()).import_file(gemma3_gguf)
    window = MainWindow()  # the real hardware probe
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.chat.report is not None, timeout=120_000)
    view = window.chat_view
    assert window.chat.report is not None and not window.chat.report.supports_thinking
    assert not view.composer.thinking.isEnabled() and not view.composer.thinking.isChecked()
    assert "cannot think" in view.composer.thinking.toolTip()
    window.new_chat()
    assert view.messages.hint.isVisible() and view.messages.hint.title.text() == "Start a conversation"
    ready = view.model_status.full_text()
    assert ready.startswith("Ready")
    view.settings_panel.max_tokens.setValue(24)
    view.composer.edit.setPlainText("Count from one to twenty.")
    view.composer.send_button.click()
    assert window.chat.busy and view.model_status.full_text() == "Writing a reply… (Esc stops)"
    assert not view.messages.hint.isVisible()
    qtbot.waitUntil(lambda: not window.chat.busy, timeout=120_000)
    assert view.model_status.full_text() == ready
    assert not view.composer.thinking.isEnabled()
    window.close()
