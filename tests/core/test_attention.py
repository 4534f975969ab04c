"""One attention/KV policy for the planner and the engine (issue 12 item 2: it used to be decided twice)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gemmadesk.core.attention import attention_settings, choose_attention
from gemmadesk.core.catalog import load_catalog
from gemmadesk.core.engine.engine import _resolve_attention
from gemmadesk.core.engine.gguf_meta import GGUFInfo
from gemmadesk.core.fit import FitOptions, plan_entry
from gemmadesk.core.types import FlashAttnMode, KvType
from tests.core.test_fit import machine


def _e4b_info(tmp_path: Path) -> GGUFInfo:
    metadata = {"general.architecture": "gemma4", "gemma4.embedding_length": 2560}
    return GGUFInfo(tmp_path / "e4b.gguf", 3, 0, 0, 0, metadata)


@pytest.mark.parametrize("mode", [FlashAttnMode.ON, FlashAttnMode.AUTO, FlashAttnMode.OFF])
@pytest.mark.parametrize("kv", [KvType.F16, KvType.Q8_0])
def test_the_plan_for_e4b_on_a_gpu_is_what_the_engine_loads(mode: FlashAttnMode, kv: KvType, tmp_path: Path) -> None:
    """E4B with flash attention forced on and a quantized KV cache on a GPU: the fit list used to plan (and
    estimate memory) with flash attention and a q8_0 V cache while the engine then loaded without flash
    attention and with an f16 V cache."""
    plan = plan_entry(load_catalog().find("e4b"), machine(32, 24), FitOptions(kv_type=kv, flash_attn=mode))
    settings = plan.load_settings("/models/e4b.gguf")
    assert settings.n_gpu_layers != 0
    flash, type_k, type_v, _notes = _resolve_attention(_e4b_info(tmp_path), settings, settings.n_gpu_layers)
    assert (plan.flash_attn, plan.type_k, plan.type_v) == (flash, type_k, type_v)
    assert plan.flash_attn is False, "llama.cpp's CUDA flash-attention kernel crashes on E4B"
    assert plan.type_v == KvType.F16, "a quantized V cache needs flash attention"


def test_the_rules() -> None:
    on_gpu = choose_attention(FlashAttnMode.ON, "q8_0", "q8_0", crashes_on_gpu=True, on_gpu=True)
    assert (on_gpu.flash_attn, on_gpu.type_k, on_gpu.type_v, len(on_gpu.notes)) == (False, "q8_0", "f16", 2)
    on_cpu = choose_attention(True, KvType.Q4_0, KvType.Q4_0, crashes_on_gpu=True, on_gpu=False)
    assert (on_cpu.flash_attn, on_cpu.type_v, on_cpu.notes) == (True, KvType.Q4_0, ())
    auto_default_off = choose_attention("auto", "f16", "f16", crashes_on_gpu=False, on_gpu=True, default_off=True)
    assert not auto_default_off.flash_attn and auto_default_off.notes
    with pytest.raises(ValueError, match="unknown KV cache type 'q9'"):
        choose_attention("on", "q9", "f16", crashes_on_gpu=False, on_gpu=False)
    with pytest.raises(ValueError, match="unknown flash attention setting 'maybe'"):
        choose_attention("maybe", "f16", "f16", crashes_on_gpu=False, on_gpu=False)
    assert attention_settings("q8_0", "off") == (KvType.Q8_0, FlashAttnMode.OFF, [])
    kv, fa, problems = attention_settings("big", "sometimes")
    assert (kv, fa, len(problems)) == (KvType.F16, FlashAttnMode.AUTO, 2)
