"""The fit list counts the projector when vision is chosen (issue 14 phase 2): the projector file plus its
encoders' compute buffers at Gemma 4's default image budget; the fit-list box downloads it with the model.
On the old code ``plan_entry`` counted the projector's file only, and the window had no such box."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from gemmadesk.core.catalog import Catalog, CatalogEntry, load_catalog
from gemmadesk.core.fit import (
    GPU_ENCODER_WORKSPACE_BYTES,
    FitOptions,
    image_tokens_note,
    plan_entry,
    plan_for_file,
    vision_bytes,
)
from gemmadesk.core.hardware import Hardware
from gemmadesk.core.mmproj import PUBLISHED_SHAPES, projector_memory, read_projector
from gemmadesk.core.types import FlashAttnMode
from gemmadesk.core.units import MiB
from tests.support.hubserver import HubServer
from tests.support.mm_fixtures import projectors, tiny_model
from tests.support.tiny_gguf import write_gguf
from tests.ui import hardware_fixtures as hwf

__all__ = ["projectors", "tiny_model"]  # fixtures


def _e2b() -> CatalogEntry:
    return next(e for e in load_catalog().runnable if e.size == "E2B" and e.mmproj is not None)


def test_the_projector_and_its_encoder_buffers_are_counted() -> None:
    entry = _e2b()
    assert entry.mmproj is not None
    fa = vision_bytes(entry, FitOptions())
    no_fa = vision_bytes(entry, FitOptions(flash_attn=FlashAttnMode.OFF))
    # docs/multimodal.md §3: the E2B projector's buffers are ~222 MiB with flash attention at 280 tokens
    assert 200 * MiB < fa - entry.mmproj.size_bytes < 260 * MiB
    assert no_fa > fa
    hw = Hardware.from_dict(hwf.DESKTOP_24GB_NVIDIA)
    plain = plan_entry(entry, hw, FitOptions())
    vision = plan_entry(entry, hw, FitOptions(with_mmproj=True))
    # on a GPU, also the encoder's CUDA workspaces measured at the first image on the H200 (about 0.7 GiB)
    assert vision.estimate.total_bytes - plain.estimate.total_bytes == fa
    assert vision.estimate.gpu_reserve - plain.estimate.gpu_reserve == GPU_ENCODER_WORKSPACE_BYTES
    assert vision.estimate.mmproj == fa and plain.estimate.mmproj == 0
    cpu = Hardware.from_dict(hwf.LAPTOP_8GB)
    on_cpu = plan_entry(entry, cpu, FitOptions(with_mmproj=True)).estimate
    assert on_cpu.total_bytes - plan_entry(entry, cpu, FitOptions()).estimate.total_bytes == fa
    assert on_cpu.gpu_reserve == 0, "no GPU workspace on the CPU"


def test_a_local_projector_file_is_counted_from_its_own_header(
    tiny_model: Path, projectors: Callable[..., Path]
) -> None:
    proj = projectors("tiny")
    hw = Hardware.from_dict(hwf.LAPTOP_8GB)
    plan = plan_for_file(tiny_model, hw, FitOptions(with_mmproj=True), mmproj_path=proj)
    info = read_projector(proj)
    assert plan.estimate.mmproj == proj.stat().st_size + projector_memory(info, 280, True)


def test_every_published_projector_shape_has_buffers_and_the_context_note() -> None:
    for size, shape in PUBLISHED_SHAPES.items():
        assert projector_memory(shape, 280, True) > 10 * MiB, size
    assert "up to 280 of the 8,192 context tokens (about 29 images" in image_tokens_note(8192)


@pytest.mark.slow
def test_the_vision_box_counts_the_projector_and_downloads_it_with_the_model(  # type: ignore[no-untyped-def]
    qtbot, hub: HubServer, tmp_path: Path, projectors: Callable[..., Path]
) -> None:
    from gemmadesk.ui.main_window import MainWindow

    served = hub.add_file("test/tiny", write_gguf(tmp_path / "served" / "tiny-q4_0.gguf", tensor_bytes=2 * MiB))
    proj = hub.add_file("test/tiny", projectors("tiny"), filename="mmproj-tiny.gguf")
    entry = hub.entry_for(served, mmproj=proj)
    real = load_catalog()
    window = MainWindow(hardware=Hardware.from_dict(hwf.DESKTOP_24GB_NVIDIA),
                        catalog=Catalog(real.version, real.architectures, (entry,)))
    qtbot.addWidget(window)
    window.show()
    view = window.setup_page.view
    view.select_entry(entry.id)
    [row] = window.setup.model.rows()
    assert row.plan is not None and row.plan.estimate.mmproj == 0
    view.vision_box.setChecked(True)
    [row] = window.setup.model.rows()
    assert row.plan is not None and row.plan.estimate.mmproj == vision_bytes(replace(entry), window.setup.options)
    assert "context tokens" in view.vision_box.toolTip()
    window.setup_page.panel.download_button.click()
    qtbot.waitUntil(lambda: window.setup_page.panel.chat_button.isVisible(), timeout=120_000)
    installed = window.store.find_for_entry(entry.id)
    assert installed is not None and installed.mmproj_path is not None
    assert installed.mmproj_path.read_bytes() == projectors("tiny").read_bytes()
    window.close()
