"""One plan for an installed model (the chat and the Installed tab used two that differed: the chat's ignored
the projector of a model outside the catalog) and the sentence that says where a loaded model runs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from gemmadesk.core.catalog import load_catalog
from gemmadesk.core.fit import FitOptions, plan_for_file
from gemmadesk.core.hardware import Hardware
from gemmadesk.core.model_plan import load_settings, placement_banner, plan_installed
from gemmadesk.core.store import InstalledModel
from gemmadesk.core.types import LoadReport
from gemmadesk.core.units import MiB
from tests.support.tiny_gguf import write_gguf
from tests.ui import hardware_fixtures as hwf

REPORT = LoadReport("m.gguf", "gemma4", "m", 1, 4096, 131072, 35, 36, True, "f16", "f16", None, "gguf-template",
                    True, 1.0)  # fmt: skip


def _installed(path: Path, entry_id: str | None) -> InstalledModel:
    return InstalledModel("m", entry_id, path, path.stat().st_size, None, None, "imported", "ok", "m")  # type: ignore[arg-type]


def test_a_model_whose_entry_the_catalog_no_longer_lists_is_planned_from_its_file(tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "m.gguf", tensor_bytes=2 * MiB)
    hw = Hardware.from_dict(hwf.DESKTOP_24GB_NVIDIA)
    options = FitOptions(n_ctx=4096)
    plan = plan_installed(_installed(path, "no-such-entry"), hw, options, load_catalog())
    assert plan == plan_for_file(path, hw, options)
    settings = load_settings(_installed(path, None), plan, n_threads=3)
    assert settings.n_threads == 3 and settings.n_ctx == 4096
    assert load_settings(_installed(path, None), plan, n_threads=0).n_threads is None, "0: the engine chooses"


def test_the_placement_banner_says_why_a_model_is_not_all_on_the_gpu() -> None:
    gpu = Hardware.from_dict(hwf.DESKTOP_24GB_NVIDIA)
    cpu_only = Hardware.from_dict(hwf.LAPTOP_8GB)
    assert placement_banner(REPORT, "fits", gpu) == ""
    on_cpu = replace(REPORT, n_gpu_layers=0)
    assert "no GPU that this llama.cpp build can use" in placement_banner(on_cpu, "x", cpu_only)
    assert placement_banner(on_cpu, "the context is too long", gpu).startswith(
        "Running on the CPU only (the context is too long)")
    partial = placement_banner(replace(REPORT, n_gpu_layers=20), "8 GiB of VRAM", gpu)
    assert "20 of 35 layers are on the GPU (8 GiB of VRAM)" in partial
