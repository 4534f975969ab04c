"""The fit list's ``w4a16-ct`` rows: what a GPU server needs, the exact ``vllm serve`` command, and a button
that adds that server (checked against a real OpenAI-compatible server on 127.0.0.1: GemmaDesk's own,
serving the test model under the checkpoint's id, as vLLM would)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from gemmadesk.core.catalog import load_catalog
from gemmadesk.core.hardware import Hardware
from gemmadesk.core.paths import app_paths
from gemmadesk.core.remote import ServerStore
from gemmadesk.core.units import human_bytes
from gemmadesk.core.vllm_plan import plan_vllm, vllm_command
from gemmadesk.ui.main_window import MainWindow
from tests.support.serving import serve_gguf

REPO = "google/gemma-4-31B-it-qat-w4a16-ct"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def _open_dialog(qtbot, desktop: Hardware):  # type: ignore[no-untyped-def]
    window = MainWindow(hardware=desktop)
    qtbot.addWidget(window)
    window.show()
    view, model = window.setup_page.view, window.setup.model
    offer = window.vllm_offer
    assert not offer.isVisible()
    row = next(i for i, r in enumerate(model.rows()) if r.entry.repo_id == REPO)
    view.table.setCurrentIndex(model.index(row, 0))  # the user clicks the information row
    assert view.selected_entry() == "", "still not offered for download"
    assert offer.isVisible() and "vLLM" in offer.label.text()
    qtbot.mouseClick(offer.button, Qt.MouseButton.LeftButton)
    dialog = offer.dialog
    assert dialog is not None and dialog.isVisible()
    return window, dialog


def test_the_dialog_shows_memory_per_gpu_count_and_the_exact_command(qtbot, desktop_24gb_nvidia: Hardware) -> None:  # type: ignore[no-untyped-def]
    window, dialog = _open_dialog(qtbot, desktop_24gb_nvidia)
    catalog = load_catalog()
    entry = next(e for e in catalog.entries if e.repo_id == REPO)
    plan = plan_vllm(entry, catalog, 32768)
    assert dialog.context.currentData() == 32768
    assert dialog.table.rowCount() == len(plan.options)
    for i, option in enumerate(plan.options):
        assert dialog.table.item(i, 0).text() == str(option.tensor_parallel)
        assert dialog.table.item(i, 1).text() == human_bytes(option.gpu_memory_needed)
    assert dialog.command.text() == vllm_command(REPO, 1, 32768)
    dialog.table.selectRow(1)
    assert dialog.command.text() == vllm_command(REPO, 2, 32768)
    assert "--tensor-parallel-size 2 --max-model-len 32768" in dialog.command.text()
    dialog.context.setCurrentIndex(dialog.context.findData(131072))
    assert dialog.command.text() == vllm_command(REPO, 2, 131072), "the GPU count is kept"
    longer = plan_vllm(entry, catalog, 131072)
    assert dialog.table.item(1, 1).text() == human_bytes(longer.options[1].gpu_memory_needed)
    dialog.copy_command()
    assert QGuiApplication.clipboard().text() == dialog.command.text()
    dialog.close()
    window.close()


@pytest.mark.slow
def test_add_this_server_checks_that_it_serves_the_checkpoint(qtbot, desktop_24gb_nvidia: Hardware,
                                                               gemma3_gguf: Path) -> None:  # type: ignore[no-untyped-def]  # fmt: skip
    window, dialog = _open_dialog(qtbot, desktop_24gb_nvidia)
    with serve_gguf(gemma3_gguf, "some-other-model") as wrong:
        dialog.fields.url.setText(wrong.base_url)
        qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not dialog.fields.checking, timeout=60_000)
        assert f"does not serve “{REPO}”" in dialog.fields.problem.text() and dialog.isVisible()
    with serve_gguf(gemma3_gguf, REPO) as served:
        dialog.fields.url.setText(served.base_url)
        qtbot.mouseClick(dialog.add_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not dialog.fields.checking, timeout=60_000)
        assert dialog.result() == 1, dialog.fields.problem.text()
        saved = ServerStore(app_paths().config_dir / "servers.json").list()
        assert [(e.name, e.base_url) for e in saved] == [("vLLM · Gemma 4 31B", served.base_url)]
        box = window.chat_view.model_box
        qtbot.waitUntil(lambda: box.findText(REPO, Qt.MatchFlag.MatchContains) >= 0, timeout=10_000)
    window.close()
