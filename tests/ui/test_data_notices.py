"""The window says once, at start-up, what happened to the user's data files (issue 10.5, 10.11)."""

from __future__ import annotations

import os

from gemmadesk.core.hardware import Hardware
from gemmadesk.core.paths import app_paths
from gemmadesk.ui.main_window import MainWindow


def test_a_damaged_history_and_model_list_are_kept_aside_and_said(qtbot, laptop_8gb: Hardware) -> None:  # type: ignore[no-untyped-def]
    paths = app_paths().ensure()
    paths.history_db.write_bytes(os.urandom(16384))
    (paths.data_dir / "models.json").write_text("{ damaged")
    window = MainWindow(hardware=laptop_8gb)
    qtbot.addWidget(window)
    window.show()
    assert window.notice.isVisible()
    text = window.notice.text()
    assert "chats.sqlite3.damaged-" in text, "where the old history is"
    assert "models.json.corrupt-1" in text, "where the old model list is"
    assert "Nothing was deleted" in text
    conv = window.chat.history.create_conversation()
    assert conv.id > 0, "a fresh history works"
    window.close()


def test_damaged_settings_are_still_said_when_read_twice_at_start(qtbot, laptop_8gb: Hardware) -> None:  # type: ignore[no-untyped-def]
    """app.main reads settings.json for the theme before the window reads it: the first read keeps the
    damaged file aside, and the window must still say so."""
    from gemmadesk.core.settings import SettingsStore

    paths = app_paths().ensure()
    paths.settings_file.write_text('{"schema_version": "abc"}')
    SettingsStore(paths.settings_file).load()  # as app.main does, for the theme
    window = MainWindow(hardware=laptop_8gb)
    qtbot.addWidget(window)
    window.show()
    assert "settings.json.corrupt-1" in window.notice.text()
    window.close()
