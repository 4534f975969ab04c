"""The fit list's memory bars, speed column, small-machine context, measured speeds and the download
confirmation for a model that will not run: real widgets offscreen, real downloader against the local Hub."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from PySide6.QtCore import QRect
from PySide6.QtGui import QColor, QImage, QPalette
from PySide6.QtWidgets import QMessageBox

from gemmadesk.core.catalog import Catalog, CatalogEntry, load_catalog
from gemmadesk.core.hardware import Hardware
from gemmadesk.core.speed import MeasuredSpeed
from gemmadesk.core.speed_log import SpeedLog, machine_key
from gemmadesk.ui.fit_model import MEMORY_BARS_ROLE, SLOW_ROLE, FitTableModel
from gemmadesk.ui.main_window import MainWindow
from gemmadesk.ui.setup_view import BAR_COLOURS
from tests.support.hubserver import HubServer
from tests.support.tiny_gguf import write_gguf

GiB = 2**30
LONG = 120_000


@pytest.fixture
def make_window(qtbot):  # type: ignore[no-untyped-def]
    def make(hw: Hardware, catalog: Catalog | None = None) -> MainWindow:
        window = MainWindow(hardware=hw, catalog=catalog)
        qtbot.addWidget(window)
        window.resize(1100, 720)
        window.show()
        qtbot.waitExposed(window)
        return window

    return make


def cell_image(window: MainWindow, row: int, col: int) -> tuple[QImage, QRect]:
    table = window.setup_page.view.table
    table.scrollTo(window.setup.model.index(row, col))
    rect = table.visualRect(window.setup.model.index(row, col))
    return table.viewport().grab().toImage(), rect


def colours_in(image: QImage, rect: QRect) -> list[QColor]:
    return [image.pixelColor(x, y) for x in range(rect.left(), rect.right()) for y in range(rect.top(), rect.bottom())]


def near(c: QColor, hex_colour: str, tol: int = 12) -> bool:
    t = QColor(hex_colour)
    return abs(c.red() - t.red()) <= tol and abs(c.green() - t.green()) <= tol and abs(c.blue() - t.blue()) <= tol


def test_memory_bars_show_vram_and_ram_in_words_too(make_window, desktop_24gb_nvidia: Hardware) -> None:  # type: ignore[no-untyped-def]
    window = make_window(desktop_24gb_nvidia)
    model = window.setup.model
    row = model.row_of("31b-google-q4_0")
    index = model.index(row, FitTableModel.MEMORY)
    bars = index.data(MEMORY_BARS_ROLE)
    assert [b.pool for b in bars] == ["VRAM", "RAM"]
    vram = bars[0]
    assert 0 < vram.used < vram.available  # 31B at 8K fits a 24 GB card
    spoken = index.data(0x0B)  # Qt.AccessibleTextRole
    assert "VRAM:" in spoken and "free for models" in spoken and "left" in spoken
    image, rect = cell_image(window, row, FitTableModel.MEMORY)
    assert any(near(c, BAR_COLOURS["ok"]) for c in colours_in(image, rect)), "no filled bar painted"
    # Two bars make the row taller than an information row with none.
    table = window.setup_page.view.table
    assert table.rowHeight(row) > table.rowHeight(model.row_of("31b-google-w4a16-ct"))


def test_bar_text_follows_the_theme(make_window, laptop_8gb: Hardware) -> None:  # type: ignore[no-untyped-def]
    """The numbers beside the bars use the palette's text colour: dark on light, light on dark."""
    window = make_window(laptop_8gb)
    table = window.setup_page.view.table
    row = window.setup.model.row_of("e2b-google-q4_0")
    table.clearSelection()
    window.setup_page.view.table.setCurrentIndex(window.setup.model.index(-1, -1))
    for base, text, dark in (("#ffffff", "#101010", False), ("#1e1e1e", "#f0f0f0", True)):
        palette = table.palette()
        for group in (QPalette.ColorGroup.Active, QPalette.ColorGroup.Inactive):
            palette.setColor(group, QPalette.ColorRole.Base, QColor(base))
            palette.setColor(group, QPalette.ColorRole.AlternateBase, QColor(base))
            palette.setColor(group, QPalette.ColorRole.Text, QColor(text))
        table.setPalette(palette)
        image, rect = cell_image(window, row, FitTableModel.MEMORY)
        light = [c.lightness() for c in colours_in(image, rect)]
        if dark:
            assert sum(v > 200 for v in light) > 20, "no light text on the dark base"
        else:
            assert sum(v < 60 for v in light) > 20, "no dark text on the light base"


def test_speed_column_shows_tokens_per_second_and_flags_slow_rows(make_window, laptop_8gb: Hardware) -> None:  # type: ignore[no-untyped-def]
    window = make_window(laptop_8gb)
    model = window.setup.model
    e2b = model.index(model.row_of("e2b-google-q4_0"), FitTableModel.SPEED)
    assert "tok/s" in e2b.data()
    assert "tokens/s at the start of a chat" in e2b.data(3)  # tooltip
    too_large = model.index(model.row_of("31b-google-q4_0"), FitTableModel.SPEED)
    assert too_large.data() == "—"
    slow = [r for r in range(model.rowCount()) if model.index(r, FitTableModel.SPEED).data(SLOW_ROLE)]
    for r in slow:
        assert model.index(r, FitTableModel.SPEED).data().endswith("\nslow")
        assert model.index(r, FitTableModel.SPEED).data(0x0B).startswith("Slow:")
    assert FitTableModel.COLUMNS[FitTableModel.SPEED] == "Speed"
    assert FitTableModel.COLUMNS.index("Memory needed") + 1 == FitTableModel.SPEED  # next to memory


def test_hardware_summary_has_one_free_figure_and_the_thread_count(make_window, laptop_8gb: Hardware) -> None:  # type: ignore[no-untyped-def]
    window = make_window(laptop_8gb)
    text = window.setup_page.view.hardware_label.text()
    assert "4.2 GiB free for models" in text  # 5 GiB available minus the reserve (10 % of 8 GiB)
    assert "leaves 819.2 MiB for the system and itself" in text
    assert "5.0 GiB" not in text
    assert "decodes with 3 threads" in text  # 4 physical cores: one left for everything else


def test_small_machine_gets_a_shorter_context_and_is_told(make_window) -> None:  # type: ignore[no-untyped-def]
    hw = Hardware("Linux", "x86_64", "Celeron", 2, 2, int(3.8 * GiB), int(3.0 * GiB))
    window = make_window(hw)
    view = window.setup_page.view
    assert window.setup.model.recommended is not None
    assert view.context_box.currentData() < 8192
    assert window.setup.options.n_ctx == view.context_box.currentData()
    assert view.reason_label.text().startswith("Nothing fits at 8,192 tokens of context")
    row = window.setup.model.row_of(window.setup.model.recommended)
    assert window.setup.model.index(row, FitTableModel.VERDICT).data() in ("fits", "tight")


def test_measured_speed_replaces_the_estimate(make_window, laptop_8gb: Hardware, qtbot) -> None:  # type: ignore[no-untyped-def]
    entry = load_catalog().get("e2b-google-q4_0")
    assert entry.file is not None
    SpeedLog().add(MeasuredSpeed(entry.file.filename, entry.file.size_bytes, "cpu", 0, 35, 0, 1_400_000_000, 3,
                                 12.5, 64), machine_key(laptop_8gb))
    window = make_window(laptop_8gb)
    model = window.setup.model
    index = model.index(model.row_of("e2b-google-q4_0"), FitTableModel.SPEED)
    qtbot.waitUntil(lambda: "measured on this machine" in index.data(3), timeout=10_000)
    assert index.data() == "≈ 12 tok/s"
    other = model.index(model.row_of("e4b-google-q4_0"), FitTableModel.SPEED)
    assert "corrected by what this machine measured" in other.data(3)


# ------------------------------------------------------------------------------------------ item 6


def one_entry_catalog(entry: CatalogEntry) -> Catalog:
    real = load_catalog()
    return Catalog(real.version, real.architectures, (entry,))


def test_downloading_a_model_that_will_not_run_asks_first_with_the_numbers(
    make_window, qtbot, hub: HubServer, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    payload = write_gguf(tmp_path / "served" / "too-big-q4_0.gguf", tensor_bytes=2 * 1024 * 1024)
    served = hub.add_file("test/too-big", payload)
    entry = hub.entry_for(served, entry_id="test-too-big")
    tiny = Hardware("Linux", "x86_64", "cpu", 2, 2, 1 * GiB, int(0.8 * GiB))  # 1 GiB: nothing runs here
    window = make_window(tiny, one_entry_catalog(entry))
    page = window.setup_page
    page.view.select_entry(entry.id)
    assert window.setup.model.index(0, FitTableModel.VERDICT).data() == "too large"

    page.panel.download_button.click()
    box = page.confirm_box
    assert isinstance(box, QMessageBox) and box.isVisible()
    assert "will not run on this machine: it needs about" in box.text()
    assert "more than this machine's 1.0 GiB of RAM" in box.text()
    assert "Download 2.0 MiB anyway?" in box.text()
    assert not window.downloads.active  # nothing started while asking
    box.button(QMessageBox.StandardButton.Cancel).click()
    qtbot.waitUntil(lambda: page.confirm_box is None, timeout=5000)
    assert not window.downloads.active and hub.bytes_sent(served.filename) == 0

    page.panel.download_button.click()
    box = page.confirm_box
    assert box is not None
    anyway = next(b for b in box.buttons() if b.text() == "Download anyway")
    anyway.click()
    qtbot.waitUntil(lambda: window.store.find_for_entry(entry.id) is not None, timeout=LONG)
    assert hub.bytes_sent(served.filename) >= served.size


def test_a_model_that_fits_downloads_without_a_question(make_window, qtbot, hub: HubServer, tmp_path: Path,
                                                        desktop_24gb_nvidia: Hardware) -> None:  # type: ignore[no-untyped-def]
    payload = write_gguf(tmp_path / "served" / "fine-q4_0.gguf", tensor_bytes=1024 * 1024)
    served = hub.add_file("test/fine", payload)
    entry = replace(hub.entry_for(served, entry_id="test-fine"))
    window = make_window(desktop_24gb_nvidia, one_entry_catalog(entry))
    window.setup_page.view.select_entry(entry.id)
    window.setup_page.panel.download_button.click()
    assert window.setup_page.confirm_box is None
    qtbot.waitUntil(lambda: window.store.find_for_entry(entry.id) is not None, timeout=LONG)


def test_selecting_a_surprising_row_explains_it(make_window, desktop_24gb_nvidia: Hardware) -> None:  # type: ignore[no-untyped-def]
    """At 128K, E4B needs more memory than the larger 12B: the list says why when the row is picked."""
    window = make_window(desktop_24gb_nvidia)
    view, model = window.setup_page.view, window.setup.model
    view.set_context(131072)
    e4b, b12 = model.row_of("e4b-google-q4_0"), model.row_of("12b-google-q4_0")
    assert model.rows()[e4b].plan.estimate.total_bytes > model.rows()[b12].plan.estimate.total_bytes  # type: ignore[union-attr]
    view.table.setCurrentIndex(model.index(e4b, 0))
    assert view.note_label.isVisibleTo(window)
    assert "needs more memory than the larger 12B" in view.note_label.text()
    assert "flash attention is off" in model.index(e4b, FitTableModel.MEMORY).data(3)  # also in the tooltip
    view.table.setCurrentIndex(model.index(b12, 0))
    assert not view.note_label.isVisibleTo(window)


@pytest.mark.slow
def test_a_finished_reply_feeds_the_speed_record_and_the_fit_list(qtbot, gemma3_gguf: Path) -> None:  # type: ignore[no-untyped-def]
    """The real window, the real Gemma 3 270M: when a reply finishes, its decode speed is recorded for this
    machine (decode_speeds.json) and the fit list's plans are recomputed with it."""
    from PySide6.QtCore import Qt

    from gemmadesk.core.paths import app_paths
    from gemmadesk.core.store import ModelStore

    ModelStore(app_paths()).import_file(gemma3_gguf)
    window = MainWindow()  # real hardware probe
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.chat.report is not None, timeout=LONG)
    assert window.setup.measured == ()
    window.chat_view.settings_panel.max_tokens.setValue(40)
    edit = window.chat_view.composer.edit
    edit.setFocus()
    qtbot.keyClicks(edit, "Write a long story about a lighthouse keeper.")
    qtbot.keyClick(edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not window.chat.busy and bool(window.chat.transcript.messages()[-1].stats), timeout=LONG)
    stats = window.chat.transcript.messages()[-1].stats
    assert stats["completion_tokens"] >= 16, stats
    qtbot.waitUntil(lambda: len(window.setup.measured) == 1, timeout=10_000)
    record: MeasuredSpeed = next(iter(window.setup.measured))
    assert record.model_file == gemma3_gguf.name
    assert record.tokens_per_s == pytest.approx(stats["generated_tokens_per_s"])
    assert (app_paths().data_dir / "decode_speeds.json").is_file()
    window.close()
