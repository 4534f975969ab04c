"""The recommender, table-tested on typical machines (pure function: hardware description in, plan out).

Expected picks follow the ranking rules in fit.recommend: the largest model that runs entirely on the
GPU without being tight; on CPU-only machines the largest CPU-friendly one (E2B, E4B, or the 26B A4B MoE
with ~4B active parameters), never a dense 12B/31B that would crawl.
"""

from __future__ import annotations

import pytest

from gemmadesk.core.catalog import load_catalog
from gemmadesk.core.fit import FitOptions, Verdict, recommend
from gemmadesk.core.hardware import GPU, Hardware

GiB = 2**30


def machine(ram: float, gpus: tuple[GPU, ...] = ()) -> Hardware:
    return Hardware("test", "x86_64", "cpu", 8, 16, int(ram * GiB), int(ram * 0.85 * GiB), gpus)


def nvidia(vram: float, index: int = 0) -> GPU:
    return GPU(f"NVIDIA {vram:g} GB", "nvidia", "discrete", int(vram * GiB), int(vram * 0.95 * GiB), "nvml", index,
               True, "CUDA")


def apple(ram: float) -> GPU:
    # Metal's default working-set limit: about 2/3 of RAM up to 36 GB, 3/4 above.
    return GPU("Apple GPU", "apple", "unified", int(ram * GiB * (0.75 if ram > 36 else 2 / 3)), None, "apple", 0,
               True, "Metal")


def amd_apu(ram: float) -> GPU:
    return GPU("Radeon 890M", "amd", "integrated", int(ram / 2 * GiB), None, "sysfs", 0, True, "Vulkan")


PROFILES = [
    ("no GPU, 8 GB", machine(8), "E4B", Verdict.CPU),
    ("no GPU, 16 GB", machine(16), "E4B", Verdict.CPU),
    ("no GPU, 32 GB", machine(32), "26B-A4B", Verdict.CPU),
    ("no GPU, 64 GB", machine(64), "26B-A4B", Verdict.CPU),
    ("NVIDIA 4 GB", machine(32, (nvidia(4),)), "E4B", Verdict.GPU),
    ("NVIDIA 6 GB", machine(32, (nvidia(6),)), "E4B", Verdict.GPU),
    ("NVIDIA 8 GB", machine(32, (nvidia(8),)), "E4B", Verdict.GPU),
    ("NVIDIA 12 GB", machine(32, (nvidia(12),)), "12B", Verdict.GPU),
    ("NVIDIA 16 GB", machine(32, (nvidia(16),)), "12B", Verdict.GPU),
    ("NVIDIA 24 GB", machine(32, (nvidia(24),)), "31B", Verdict.GPU),
    ("Apple 8 GB", machine(8, (apple(8),)), "E4B", Verdict.GPU),
    ("Apple 16 GB", machine(16, (apple(16),)), "12B", Verdict.GPU),
    ("Apple 24 GB", machine(24, (apple(24),)), "26B-A4B", Verdict.GPU),
    ("Apple 36 GB", machine(36, (apple(36),)), "31B", Verdict.GPU),
    ("Apple 64 GB", machine(64, (apple(64),)), "31B", Verdict.GPU),
    ("AMD APU, 32 GB", machine(32, (amd_apu(32),)), "26B-A4B", Verdict.GPU),
    ("two NVIDIA GPUs (8 + 24 GB)", machine(64, (nvidia(8), nvidia(24, 1))), "31B", Verdict.GPU),
]


@pytest.mark.parametrize(("name", "hw", "size", "verdict"), PROFILES, ids=[p[0] for p in PROFILES])
def test_recommendation_for_profile(name: str, hw: Hardware, size: str, verdict: Verdict) -> None:
    catalog = load_catalog()
    rec = recommend(hw, catalog, FitOptions(n_ctx=8192))
    assert rec.best is not None, rec.explanation
    assert catalog.get(rec.best.entry_id).size == size, rec.explanation
    assert rec.best.verdict is verdict
    assert not rec.best.tight
    assert rec.runner_up is not None and rec.runner_up.entry_id != rec.best.entry_id
    # The plan never promises more than the machine has.
    budget_ram = hw.ram_available_bytes
    assert rec.best.estimate.cpu_bytes < budget_ram
    if rec.best.verdict is Verdict.GPU and hw.best_gpu is not None:
        assert rec.best.estimate.gpu_bytes < hw.best_gpu.offload_bytes
    if hw.best_gpu is not None and hw.best_gpu.memory_kind != "discrete":
        assert rec.best.estimate.total_bytes < budget_ram, "shared memory counted once"


def test_two_gpus_plan_on_the_larger_one() -> None:
    hw = machine(64, (nvidia(8), nvidia(24, 1)))
    rec = recommend(hw, load_catalog(), FitOptions())
    assert rec.best is not None and rec.best.gpu_name == "NVIDIA 24 GB"


def test_max_contexts_grow_with_memory() -> None:
    from gemmadesk.core.fit import entry_layout, max_contexts

    catalog = load_catalog()
    entry = catalog.find("12b")
    layout = entry_layout(entry, catalog)
    small = max_contexts(layout, machine(32, (nvidia(12),)), FitOptions(), entry)
    large = max_contexts(layout, machine(64, (nvidia(24),)), FitOptions(), entry)
    assert 8192 <= small.gpu < large.gpu <= layout.n_ctx_train
    assert small.gpu <= small.partial
    assert large.cpu > 0
    none = max_contexts(layout, machine(4), FitOptions(), entry)
    assert (none.gpu, none.partial, none.cpu) == (0, 0, 0)
