"""The fit estimator against independent numbers: published measurements and llama.cpp's own report."""

from __future__ import annotations

from pathlib import Path

import pytest

from gemmadesk.core.catalog import load_catalog
from gemmadesk.core.fit import (
    GPU_RESERVE_BYTES,
    FitOptions,
    Verdict,
    estimate,
    kv_bytes_per_layer,
    plan_entry,
    plan_for_file,
    recommend,
)
from gemmadesk.core.gguf_info import GGUFError, layout_from_catalog, read_layout
from gemmadesk.core.hardware import GPU, Hardware
from gemmadesk.core.types import KvType

MiB = 2**20
GiB = 2**30


def machine(ram_gb: float, vram_gb: float = 0, kind: str = "discrete", vendor: str = "nvidia",
            usable: bool = True) -> Hardware:
    gpus: tuple[GPU, ...] = ()
    if vram_gb:
        gpus = (GPU("Test GPU", vendor, kind, int(vram_gb * GiB), int(vram_gb * GiB) - 200 * MiB, "test", 0,  # type: ignore[arg-type]
                    usable, "CUDA" if usable else ""),)
    return Hardware("Linux", "x86_64", "cpu", 8, 16, int(ram_gb * GiB), int(ram_gb * 0.9 * GiB), gpus)


def kv_mib(size: str, ctx: int, kv: str, ub: int) -> float:
    catalog = load_catalog()
    entry = catalog.find(size)
    assert entry.file is not None
    layout = layout_from_catalog(catalog.arch(entry), entry.file.size_bytes)
    return sum(kv_bytes_per_layer(layout, ctx, kv, kv, ub)) / MiB


@pytest.mark.parametrize(
    ("size", "ctx", "measured_mib"),
    # Third-party llama.cpp measurements (Vulkan, q8_0 KV, one slot, ubatch 256): gemma4-qat-facts.md §3c.
    [("E2B", 32768, 107), ("E4B", 32768, 288), ("12B", 65536, 757), ("26B-A4B", 32768, 473), ("31B", 32768, 1892)],
)
def test_kv_cache_matches_published_llama_cpp_measurements(size: str, ctx: int, measured_mib: float) -> None:
    assert kv_mib(size, ctx, "q8_0", 256) == pytest.approx(measured_mib, abs=1.0)


def test_kv_cache_grows_only_with_global_layers_beyond_the_window() -> None:
    # 31B: the sliding part is fixed (1,200 MiB f16 at ub=512), the global part is 80 KiB per token.
    at_8k, at_32k = kv_mib("31B", 8192, "f16", 512), kv_mib("31B", 32768, "f16", 512)
    assert at_8k == pytest.approx(1840, abs=1)
    assert at_32k - at_8k == pytest.approx((32768 - 8192) * 80 / 1024, abs=1)


def test_estimate_matches_llama_cpp_on_a_real_gguf(gemma3_gguf: Path) -> None:
    """Load the real Gemma 3 270M with llama.cpp and compare its own buffer report with the estimate."""
    from llama_cpp import Llama

    from gemmadesk.core.allocations import capture_llama_log, parse_buffers

    layout = read_layout(gemma3_gguf)
    for n_ctx, fa in ((4096, True), (16384, False)):
        with capture_llama_log() as lines:
            llm = Llama(str(gemma3_gguf), n_ctx=n_ctx, n_gpu_layers=0, swa_full=False, flash_attn=fa,
                        n_threads=1, verbose=False)
        del llm
        real = parse_buffers("".join(lines))
        est = estimate(layout, FitOptions(n_ctx=n_ctx), 0, flash_attn=fa, type_k="f16", type_v="f16")
        assert est.kv_cpu / MiB == pytest.approx(real.total("KV"), abs=0.5)
        assert est.compute_cpu / MiB == pytest.approx(real.total("compute") + real.total("output"), rel=0.05)
        assert est.weights_cpu / MiB == pytest.approx(real.total("model", "CPU_Mapped"), rel=0.01)


def test_read_layout_of_real_gguf(gemma3_gguf: Path) -> None:
    layout = read_layout(gemma3_gguf)
    assert (layout.architecture, layout.n_layer, layout.n_embd, layout.sliding_window) == ("gemma3", 18, 640, 512)
    assert layout.n_vocab == 262144
    assert sum(1 for la in layout.layers if not la.is_swa) == 3  # every 6th layer is global
    tensor_bytes = sum(layout.layer_bytes) + layout.input_bytes
    assert 0.97 * layout.file_size < tensor_bytes < layout.file_size


def test_read_layout_rejects_bad_files(tmp_path: Path, gemma3_gguf: Path) -> None:
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(GGUFError, match="not a GGUF"):
        read_layout(text)
    truncated = tmp_path / "cut.gguf"
    truncated.write_bytes(gemma3_gguf.read_bytes()[:4096])
    with pytest.raises(GGUFError, match="is incomplete"):
        read_layout(truncated)


def test_verdicts_for_typical_machines() -> None:
    catalog = load_catalog()
    opts = FitOptions(n_ctx=8192)
    e2b, b12, b31 = catalog.find("e2b"), catalog.find("12b"), catalog.find("31b")
    laptop = machine(8)
    assert plan_entry(e2b, laptop, opts).verdict is Verdict.CPU
    assert plan_entry(b31, laptop, opts).verdict is Verdict.TOO_LARGE
    desktop = machine(32, vram_gb=24)
    assert plan_entry(b12, desktop, opts).verdict is Verdict.GPU
    small_gpu = machine(32, vram_gb=8)
    partial = plan_entry(b31, small_gpu, opts)
    assert partial.verdict is Verdict.PARTIAL
    assert 0 < partial.n_gpu_layers < partial.n_layers
    # The chosen layer count is the largest whose GPU share fits in free VRAM minus the reserve.
    budget = small_gpu.gpus[0].offload_bytes - GPU_RESERVE_BYTES
    assert partial.estimate.gpu_bytes <= budget
    one_more = plan_entry(b31, small_gpu, FitOptions(n_ctx=8192, max_gpu_layers=partial.n_gpu_layers + 1))
    assert one_more.verdict is not Verdict.PARTIAL or one_more.n_gpu_layers == partial.n_gpu_layers


def test_gpu_the_build_cannot_use_is_not_counted() -> None:
    hw = machine(32, vram_gb=24, usable=False)
    plan = plan_entry(load_catalog().find("12b"), hw, FitOptions())
    assert plan.verdict is Verdict.CPU
    assert "no GPU this llama.cpp build can use" in plan.reason


def test_unified_memory_counts_once() -> None:
    """A 16 GB Mac: the GPU's share is RAM, so a model must fit in RAM once (not RAM + 'VRAM')."""
    mac = machine(16, vram_gb=16 * 2 / 3, kind="unified", vendor="apple")
    catalog = load_catalog()
    assert plan_entry(catalog.find("e4b"), mac, FitOptions()).verdict is Verdict.GPU
    # 26B A4B (14.4 GB file) exceeds the GPU's working-set limit; it only squeezes into RAM on the CPU.
    moe = plan_entry(catalog.find("26b-a4b"), mac, FitOptions())
    assert moe.verdict is Verdict.CPU
    assert moe.tight
    assert plan_entry(catalog.find("31b"), mac, FitOptions()).verdict is Verdict.TOO_LARGE


def test_longer_context_needs_more_and_can_stop_fitting() -> None:
    catalog = load_catalog()
    hw = machine(32, vram_gb=12)
    short = plan_entry(catalog.find("12b"), hw, FitOptions(n_ctx=4096))
    long = plan_entry(catalog.find("12b"), hw, FitOptions(n_ctx=262144))
    assert long.estimate.kv_bytes > short.estimate.kv_bytes
    assert short.verdict is Verdict.GPU
    assert long.verdict is not Verdict.GPU
    too_long = plan_entry(catalog.find("e2b"), hw, FitOptions(n_ctx=262144))
    assert too_long.verdict is Verdict.TOO_LARGE
    assert "limit" in too_long.reason


def test_quantized_kv_without_flash_attention_keeps_v_in_f16() -> None:
    catalog = load_catalog()
    plan = plan_entry(catalog.find("e4b"), machine(32, 24), FitOptions(kv_type=KvType.Q8_0))
    # E4B defaults to flash attention off (llama.cpp CUDA crash), so V must stay f16.
    assert plan.flash_attn is False
    assert (plan.type_k, plan.type_v) == ("q8_0", "f16")
    assert plan.load_settings("/m.gguf").flash_attn is False


def test_recommendation_prefers_full_gpu_fit_and_explains() -> None:
    catalog = load_catalog()
    rec = recommend(machine(32, vram_gb=12), catalog, FitOptions(n_ctx=8192))
    assert rec.best is not None
    assert rec.best.verdict is Verdict.GPU
    assert catalog.get(rec.best.entry_id).size == "12B"
    assert "12B" in rec.explanation
    assert "GPU" in rec.explanation
    big = recommend(machine(128, vram_gb=80), catalog, FitOptions(n_ctx=32768))
    assert big.best is not None
    assert catalog.get(big.best.entry_id).size == "31B"
    none = recommend(machine(2), catalog, FitOptions())
    assert none.best is None
    assert "No Gemma 4 model fits" in none.explanation


def test_plan_for_local_file(gemma3_gguf: Path) -> None:
    plan = plan_for_file(gemma3_gguf, machine(8), FitOptions(n_ctx=2048))
    assert plan.verdict is Verdict.CPU
    settings = plan.load_settings(gemma3_gguf)
    assert settings.n_ctx == 2048
    assert settings.n_gpu_layers == 0
    assert settings.model_path == str(gemma3_gguf)


def test_header_reader_is_fast_and_complete_on_a_gemma4_file(tmp_path: Path) -> None:
    """A synthetic Gemma 4 GGUF (real 262k vocabulary, E2B-like KV sharing): per-layer arrays are read."""
    from tests.support.synth_gemma4 import write_gemma4_gguf

    path = tmp_path / "tiny-gemma4.gguf"
    write_gemma4_gguf(path, size="tiny")
    layout = read_layout(path)
    assert layout.architecture == "gemma4" and layout.n_vocab == 262144
    assert [la.owns_kv for la in layout.layers] == [True, True, False, False]  # last 2 layers share KV
    assert [la.is_swa for la in layout.layers] == [True, False, True, False]
    assert layout.chat_template and "<|turn>" in layout.chat_template
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(path.read_bytes()[: layout.file_size - 1000])
    with pytest.raises(GGUFError, match="truncated"):
        read_layout(cut)


def test_block_size_table_matches_the_gguf_package() -> None:
    from gguf.constants import GGML_QUANT_SIZES

    from gemmadesk.core.gguf_file import GGML_BLOCK_SIZES

    assert {int(k): tuple(v) for k, v in GGML_QUANT_SIZES.items()} == GGML_BLOCK_SIZES


def test_reading_a_header_does_not_import_numpy(gemma3_gguf: Path) -> None:
    """numpy loaded before llama.cpp's CUDA library crashed model loads on the GPU machine."""
    import subprocess
    import sys

    code = ("import sys; from gemmadesk.core.gguf_info import read_layout; read_layout(sys.argv[1]); "
            "sys.exit(1 if 'numpy' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code, str(gemma3_gguf)]).returncode == 0


def test_log_capture_puts_the_engines_log_hook_back(gemma3_gguf: Path) -> None:
    from llama_cpp import Llama

    from gemmadesk.core.allocations import capture_llama_log
    from gemmadesk.core.engine import Engine, LoadSettings, llama_adapter

    engine = Engine()
    engine.load(LoadSettings(model_path=str(gemma3_gguf), n_ctx=512))
    with capture_llama_log() as lines:
        llm = Llama(str(gemma3_gguf), n_ctx=512, swa_full=False, verbose=False)
    del llm
    assert any("KV buffer size" in line for line in lines)
    llama_adapter.clear_log()
    engine.unload()
    engine.load(LoadSettings(model_path=str(gemma3_gguf), n_ctx=512))
    assert llama_adapter.recent_log(), "the engine's log hook no longer receives llama.cpp's messages"
    engine.unload()
