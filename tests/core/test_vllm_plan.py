"""The w4a16-ct rows: what a vLLM server needs per GPU count, and the exact command."""

from __future__ import annotations

import json

import pytest

from gemmadesk.core.catalog import load_catalog
from gemmadesk.core.vllm_plan import (
    GPU_MEMORY_UTILIZATION,
    estimate_checkpoint_bytes,
    is_vllm_entry,
    kv_bytes_per_gpu,
    plan_vllm,
    vllm_command,
)
from tests.hostile.conftest import run_cli

CATALOG = load_catalog()
W4A16 = [e for e in CATALOG.entries if is_vllm_entry(e)]


def test_every_published_w4a16_size_is_there_and_26b_is_not() -> None:
    assert sorted(e.size for e in W4A16) == sorted(["E2B", "E4B", "12B", "31B"])
    assert all(e.repo_id.endswith("-it-qat-w4a16-ct") for e in W4A16)


@pytest.mark.parametrize("size", ["12B", "31B"])
def test_estimate_matches_the_published_checkpoint_sizes(size: str) -> None:
    entry = next(e for e in W4A16 if e.size == size)
    assert entry.checkpoint_bytes
    estimate = estimate_checkpoint_bytes(size, CATALOG.arch(entry))
    assert abs(estimate - entry.checkpoint_bytes) / entry.checkpoint_bytes < 0.01


def test_more_gpus_need_less_memory_each_and_a_longer_context_more() -> None:
    entry = next(e for e in W4A16 if e.size == "31B")
    plan = plan_vllm(entry, CATALOG, 32768)
    needs = [o.gpu_memory_needed for o in plan.options]
    assert [o.tensor_parallel for o in plan.options] == [1, 2, 4, 8]
    assert needs == sorted(needs, reverse=True)
    assert plan.options[0].weights_per_gpu == entry.checkpoint_bytes
    assert plan.options[1].weights_per_gpu * 2 >= entry.checkpoint_bytes
    longer = plan_vllm(entry, CATALOG, 131072)
    assert all(a.kv_per_gpu > b.kv_per_gpu for a, b in zip(longer.options, plan.options, strict=True))
    # 31B at 32K: does not fit one 24 GiB GPU, fits two; an 80 GiB GPU alone is enough.
    assert plan.smallest_tp(24 * 2**30).tensor_parallel == 2  # type: ignore[union-attr]
    assert plan.smallest_tp(80 * 2**30).tensor_parallel == 1  # type: ignore[union-attr]
    assert plan.smallest_tp(4 * 2**30) is None
    assert plan.options[0].gpu_memory_needed == int(plan.options[0].used_per_gpu / GPU_MEMORY_UTILIZATION)


def test_kv_heads_are_split_then_replicated() -> None:
    arch = CATALOG.architectures["12B"]  # 1 global KV head: replicated beyond 1 GPU; 8 sliding-window heads
    one, two, eight = (kv_bytes_per_gpu(arch, 65536, tp) for tp in (1, 2, 8))
    assert one > two > eight
    glob = arch.kv_layers_global * 65536 * 2 * arch.head_dim_global * 2
    assert eight - glob == arch.kv_layers_swa * (arch.sliding_window + 1024) * 2 * 1 * arch.head_dim_swa * 2


def test_the_exact_command() -> None:
    assert vllm_command("google/gemma-4-31B-it-qat-w4a16-ct", 2, 32768) == (
        "vllm serve google/gemma-4-31B-it-qat-w4a16-ct --tensor-parallel-size 2 --max-model-len 32768 "
        "--reasoning-parser gemma4"
    )


def test_context_is_bounded_by_the_model() -> None:
    entry = next(e for e in W4A16 if e.size == "E2B")
    with pytest.raises(ValueError, match="131,072"):
        plan_vllm(entry, CATALOG, 262144)


def test_cli_remote_vllm_recommends_a_gpu_count(tmp_path: object) -> None:
    result = run_cli("remote", "vllm", "31B", "--ctx", "32768", "--gpu-gib", "24", timeout=60)
    assert result.returncode == 0, result.stderr
    assert "★ 2 GPUs" in result.stdout
    command = "vllm serve google/gemma-4-31B-it-qat-w4a16-ct --tensor-parallel-size 2 --max-model-len 32768"
    assert command in result.stdout
    data = json.loads(run_cli("remote", "vllm", "--json", timeout=60).stdout)
    assert {d["id"] for d in data} == {e.id for e in W4A16}
    assert all(len(d["per_tp"]) == 4 for d in data)


def test_models_all_shows_the_vllm_needs_and_command() -> None:
    result = run_cli("models", "--all", "--ctx", "262144", timeout=120)
    assert result.returncode == 0, result.stderr
    command = "vllm serve google/gemma-4-31B-it-qat-w4a16-ct --tensor-parallel-size 1 --max-model-len 262144"
    assert command in result.stdout
    assert "--max-model-len 131072" in result.stdout  # E2B/E4B: capped at their trained context
    data = json.loads(run_cli("models", "--all", "--json", timeout=120).stdout)
    vllm_rows = [r for r in data["not_runnable"] if r["format"] == "w4a16-ct"]
    assert len(vllm_rows) == 4 and all(r["vllm"][0]["command"].startswith("vllm serve ") for r in vllm_rows)
