"""What Gemma 4's ``w4a16-ct`` checkpoints need on a vLLM server, and the command that serves them.

Pure functions of the catalog entry, its architecture and the context length (``--max-model-len``):

- weights: the checkpoint's size (catalog ``checkpoint_bytes``, else estimated from the architecture:
  int4 linear layers with one BF16 scale per group of 32 weights, BF16 embeddings and output head,
  BF16 per-layer embeddings for E2B/E4B, BF16 vision/audio towers), split evenly over the
  tensor-parallel GPUs (vLLM shards the layers and the vocabulary);
- KV cache (BF16) for one sequence of ``max_model_len`` tokens: the global layers cache every token,
  the sliding-window layers their window plus one scheduling step; KV heads are split over the GPUs
  (replicated when there are fewer heads than GPUs), as vLLM does;
- activations, CUDA graphs and NCCL buffers: a fixed reserve per GPU;
- vLLM uses ``--gpu-memory-utilization`` (0.9 by default) of each GPU, so the total is divided by it.

Estimates, not measurements: the numbers are meant to pick the GPU count, with a margin.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from gemmadesk.core.catalog import Architecture, Catalog, CatalogEntry

GiB = 2**30
BF16 = 2
INT4_GROUP_BYTES_PER_WEIGHT = 0.5 + BF16 / 32  # 4-bit weights + one BF16 scale per 32
RUNTIME_RESERVE_BYTES = 2 * GiB  # activations at the default batch, CUDA graphs, NCCL
GPU_MEMORY_UTILIZATION = 0.9
SCHEDULER_STEP_TOKENS = 1024  # what a sliding-window layer caches beyond its window (one prefill chunk)
TOWER_BYTES = {"E2B": int(0.9e9), "E4B": int(0.9e9), "12B": int(0.1e9), "31B": int(1.1e9)}
TP_DEGREES = (1, 2, 4, 8)


@dataclass(frozen=True)
class TpOption:
    tensor_parallel: int
    weights_per_gpu: int
    kv_per_gpu: int
    reserve_per_gpu: int

    @property
    def used_per_gpu(self) -> int:
        return self.weights_per_gpu + self.kv_per_gpu + self.reserve_per_gpu

    @property
    def gpu_memory_needed(self) -> int:
        """The smallest GPU (memory size) on which vLLM starts with these settings."""
        return int(self.used_per_gpu / GPU_MEMORY_UTILIZATION)


@dataclass(frozen=True)
class VllmPlan:
    entry_id: str
    repo_id: str
    max_model_len: int
    checkpoint_bytes: int
    checkpoint_estimated: bool
    options: tuple[TpOption, ...]

    def command(self, tensor_parallel: int) -> str:
        return vllm_command(self.repo_id, tensor_parallel, self.max_model_len)

    def smallest_tp(self, gpu_bytes: int) -> TpOption | None:
        """The fewest GPUs of ``gpu_bytes`` each that serve this model (None: not even 8)."""
        return next((o for o in self.options if o.gpu_memory_needed <= gpu_bytes), None)


def is_vllm_entry(entry: CatalogEntry) -> bool:
    return entry.format == "w4a16-ct"


def linear_params(arch: Architecture) -> int:
    """Weights of the attention and feed-forward projections (what w4a16 quantizes)."""
    n_global = arch.n_layer // arch.swa_period
    n_swa = arch.n_layer - n_global

    def attention(kv_heads: int, head_dim: int) -> int:
        q_and_o = 2 * arch.n_embd * arch.n_head * head_dim
        return q_and_o + 2 * arch.n_embd * kv_heads * head_dim

    ffn = 3 * arch.n_embd * arch.n_ff
    return (n_swa * (attention(arch.n_head_kv_swa, arch.head_dim_swa) + ffn)
            + n_global * (attention(arch.n_head_kv_global, arch.head_dim_global) + ffn))  # fmt: skip


def estimate_checkpoint_bytes(size: str, arch: Architecture) -> int:
    """The w4a16-ct checkpoint's size from the architecture (matches the published 12B and 31B sizes
    within 1 %: 10.26 and 23.27 GB)."""
    linear = int(linear_params(arch) * INT4_GROUP_BYTES_PER_WEIGHT)
    embeddings = 2 * arch.n_vocab * arch.n_embd * BF16  # input embedding and output head
    ple = arch.n_vocab * arch.n_layer * arch.ple_dim * BF16
    return linear + embeddings + ple + TOWER_BYTES.get(size, 0)


def kv_bytes_per_gpu(arch: Architecture, max_model_len: int, tensor_parallel: int) -> int:
    swa_tokens = min(max_model_len, arch.sliding_window + SCHEDULER_STEP_TOKENS)

    def per_gpu(heads: int) -> int:
        return max(1, heads // tensor_parallel)

    global_part = arch.kv_layers_global * max_model_len * 2 * per_gpu(arch.n_head_kv_global) * arch.head_dim_global
    swa_part = arch.kv_layers_swa * swa_tokens * 2 * per_gpu(arch.n_head_kv_swa) * arch.head_dim_swa
    return (global_part + swa_part) * BF16


def plan_vllm(entry: CatalogEntry, catalog: Catalog, max_model_len: int) -> VllmPlan:
    """Per-GPU memory at each tensor-parallel degree vLLM accepts for this model."""
    if not is_vllm_entry(entry):
        raise ValueError(f"{entry.id} is not a vLLM (w4a16-ct) checkpoint")
    arch = catalog.arch(entry)
    if not 256 <= max_model_len <= arch.n_ctx_train:
        raise ValueError(f"max_model_len must be between 256 and {arch.n_ctx_train:,} for Gemma 4 {entry.size}")
    known = entry.checkpoint_bytes
    total = known if known else estimate_checkpoint_bytes(entry.size, arch)
    options = []
    for tp in TP_DEGREES:
        if arch.n_head % tp:  # vLLM needs the attention heads to split evenly
            continue
        options.append(TpOption(tp, -(-total // tp), kv_bytes_per_gpu(arch, max_model_len, tp), RUNTIME_RESERVE_BYTES))
    return VllmPlan(entry.id, entry.repo_id, max_model_len, total, not known, tuple(options))


def vllm_command(repo_id: str, tensor_parallel: int, max_model_len: int) -> str:
    """The command for the user's GPU server. ``--reasoning-parser gemma4`` makes vLLM send Gemma 4's
    thoughts apart (``reasoning_content``), which GemmaDesk shows as thinking."""
    return shlex.join(["vllm", "serve", repo_id, "--tensor-parallel-size", str(tensor_parallel),
                       "--max-model-len", str(max_model_len), "--reasoning-parser", "gemma4"])  # fmt: skip
