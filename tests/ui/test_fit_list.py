"""The first-run memory-fit list, driven through the real window offscreen for described machines."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from gemmadesk.core.catalog import load_catalog
from gemmadesk.core.fit import FitOptions, recommend
from gemmadesk.core.hardware import Hardware
from gemmadesk.core.paths import app_paths
from gemmadesk.core.store import ModelStore
from gemmadesk.core.types import ModelSource
from gemmadesk.ui.fit_model import ENTRY_ID_ROLE, VERDICT_ROLE, FitRow, FitTableModel
from gemmadesk.ui.main_window import MainWindow


def verdicts(model: FitTableModel) -> dict[str, str]:
    return {
        model.index(r, 0).data(ENTRY_ID_ROLE): model.index(r, FitTableModel.VERDICT).data(VERDICT_ROLE)
        for r in range(model.rowCount())
    }


@pytest.fixture
def make_window(qtbot):  # type: ignore[no-untyped-def]
    def make(hw: Hardware) -> MainWindow:
        window = MainWindow(hardware=hw)
        qtbot.addWidget(window)
        window.show()
        qtbot.waitExposed(window)
        return window

    return make


def test_fit_model_passes_qt_model_tester(qtmodeltester, desktop_24gb_nvidia: Hardware) -> None:  # type: ignore[no-untyped-def]
    catalog = load_catalog()
    rec = recommend(desktop_24gb_nvidia, catalog, FitOptions())
    plans = {p.entry_id: p for p in rec.plans}
    model = FitTableModel()
    model.set_rows([FitRow(e, plans.get(e.id)) for e in catalog.entries], rec.best.entry_id if rec.best else None)
    qtmodeltester.check(model, force_py=True)
    assert model.rowCount() == len(catalog.entries)


def test_laptop_8gb_gets_small_models_and_too_large_for_big_ones(make_window, laptop_8gb: Hardware) -> None:  # type: ignore[no-untyped-def]
    window = make_window(laptop_8gb)
    model = window.setup.model
    v = verdicts(model)
    for big in ("12b-google-q4_0", "26b-a4b-google-q4_0", "31b-google-q4_0", "31b-unsloth-ud-q4_k_xl"):
        assert v[big] == "too large"
    assert v["e2b-unsloth-ud-q2_k_xl"] in ("fits", "tight")
    # The recommended row is pre-selected, is an E2B/E4B, and runs on the CPU (the iGPU is not usable).
    selected = window.setup_page.view.selected_entry()
    assert selected == model.recommended
    assert selected.startswith(("e2b", "e4b"))
    row = model.row_of(selected)
    assert model.index(row, FitTableModel.RUNS_ON).data() == "CPU"
    assert "★" in model.index(row, 0).data()
    assert model.index(row, 0).data(0x0B).endswith(", recommended")  # accessible text, in words
    summary = window.setup_page.view.hardware_label.text()
    assert "8.0 GiB RAM" in summary
    assert "Intel Iris Xe" in summary
    assert "not usable by this build" in summary
    assert "CPU only" in summary
    assert window.setup_page.view.reason_label.text().startswith(load_catalog().get(selected).label)


def test_desktop_24gb_runs_31b_on_gpu_and_context_updates_live(make_window, desktop_24gb_nvidia: Hardware) -> None:  # type: ignore[no-untyped-def]
    window = make_window(desktop_24gb_nvidia)
    model, view = window.setup.model, window.setup_page.view
    assert model.recommended == "31b-google-q4_0"
    row = model.row_of("31b-google-q4_0")
    assert model.index(row, FitTableModel.RUNS_ON).data() == "GPU"
    assert model.index(row, FitTableModel.RUNS_ON).data(3) == "<qt>Everything on the NVIDIA GeForce RTX 4090.</qt>"
    assert verdicts(model)["31b-google-q4_0"] == "fits"
    assert "usable (CUDA)" in view.hardware_label.text()
    need_8k = model.index(row, FitTableModel.MEMORY).data()

    view.context_box.setCurrentIndex(view.context_box.findData(131072))  # as a user picking 128K

    row = model.row_of("31b-google-q4_0")
    assert model.index(row, FitTableModel.MEMORY).data() != need_8k
    assert window.setup.options.n_ctx == 131072
    runs_on = model.index(row, FitTableModel.RUNS_ON).data()
    assert verdicts(model)["31b-google-q4_0"] != "fits" or runs_on != "GPU"
    # The choice is remembered in settings.json for the next start.
    assert '"context_length": 131072' in app_paths().settings_file.read_text()


def test_mac_64gb_runs_everything_on_the_unified_gpu(make_window, mac_64gb: Hardware) -> None:  # type: ignore[no-untyped-def]
    window = make_window(mac_64gb)
    model = window.setup.model
    for r in range(model.rowCount()):
        if model.index(r, FitTableModel.VERDICT).data(VERDICT_ROLE) != "info only":
            assert model.index(r, FitTableModel.VERDICT).data(VERDICT_ROLE) == "fits"
            assert model.index(r, FitTableModel.RUNS_ON).data() == "GPU"
            assert model.index(r, FitTableModel.RUNS_ON).data(3) == "<qt>Everything on the Apple M3 Max GPU.</qt>"
    assert model.recommended == "31b-google-q4_0"
    assert "shared memory" in window.setup_page.view.hardware_label.text()


def test_non_runnable_formats_are_information_only(make_window, mac_64gb: Hardware) -> None:  # type: ignore[no-untyped-def]
    window = make_window(mac_64gb)
    model, view = window.setup.model, window.setup_page.view
    row = model.row_of("31b-google-w4a16-ct")
    index = model.index(row, 0)
    assert model.index(row, FitTableModel.VERDICT).data(VERDICT_ROLE) == "info only"
    assert not model.flags(index) & Qt.ItemFlag.ItemIsSelectable
    assert "vLLM" in model.index(row, FitTableModel.RUNS_ON).data()
    view.table.setCurrentIndex(index)  # clicking it does not offer a download
    assert view.selected_entry() == ""
    assert not window.setup_page.panel.download_button.isEnabled()


def test_installed_models_are_marked(make_window, laptop_8gb: Hardware, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A recorded model that is not a valid GGUF: the app opens the chat, says the file is damaged, and
    the fit list (File → Models…) marks the entry installed."""
    gguf = tmp_path / "gemma-4-E2B-it-UD-Q2_K_XL.gguf"
    gguf.write_bytes(b"GGUF" + b"\0" * 64)
    ModelStore(app_paths()).record(
        model_id="e2b-q2",
        entry_id="e2b-unsloth-ud-q2_k_xl",
        path=gguf,
        sha256=None,
        source=ModelSource.DOWNLOAD,
        display_name="Gemma 4 E2B",
        owned=True,
    )
    window = make_window(laptop_8gb)
    assert window.stack.currentWidget() is window.chat_view
    assert window.notice.isVisible()
    assert "is damaged" in window.notice.text()
    window.models_action.trigger()
    assert window.stack.currentWidget() is window.setup_page
    model = window.setup.model
    row = model.row_of("e2b-unsloth-ud-q2_k_xl")
    assert "✓" in model.index(row, 0).data() and "installed" in model.index(row, 0).data(0x0B)
    assert "✓" not in model.index(model.row_of("e4b-google-q4_0"), 0).data()
    window.setup_page.view.select_entry("e2b-unsloth-ud-q2_k_xl")
    assert window.setup_page.panel.chat_button.isVisibleTo(window)


def test_selection_follows_the_recommendation_until_the_user_picks(make_window, desktop_24gb_nvidia: Hardware) -> None:  # type: ignore[no-untyped-def]
    window = make_window(desktop_24gb_nvidia)
    model, view = window.setup.model, window.setup_page.view
    view.set_context(131072)
    assert view.selected_entry() == model.recommended  # pre-selection tracks the new recommendation
    view.table.setCurrentIndex(model.index(model.row_of("e2b-google-q4_0"), 0))  # the user's choice
    view.set_context(4096)
    assert view.selected_entry() == "e2b-google-q4_0"
    assert "E2B" in window.setup_page.panel.status.text()
