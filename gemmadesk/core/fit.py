"""Memory-fit estimator and recommender: pure functions from (model, hardware, options) to a plan.

The estimate follows what llama.cpp allocates for one sequence with ``swa_full=False``:

* **weights**: each repeating layer goes to the GPU or stays in RAM (``n_gpu_layers`` counts from the
  last layer, and the output layer is offloaded only when ``n_gpu_layers > n_layer``); the token and
  per-layer embedding tables (E2B/E4B "PLE") always stay in host memory (mmap).
* **KV cache**: global layers cache ``n_ctx`` cells, sliding-window layers
  ``pad256(min(n_ctx, window + n_ubatch))`` cells; layers that reuse another layer's KV (E2B/E4B) cache
  nothing. K and V per layer use that layer's KV heads and head sizes. The KV of a layer lives where the
  layer runs.
* **compute buffers**: the worst-case graph of one micro-batch: the logits (``n_vocab × n_ubatch`` F32)
  plus the hidden/feed-forward activations, plus, without flash attention, the attention scores over
  the whole context.
* **headroom**: a fixed reserve per GPU (driver/context) and for the OS and the app in RAM.

The verdict compares that with *free* VRAM and *available* RAM: fits on GPU / partial offload / CPU
(RAM) / too large, with ``tight`` when less than 10 % of the budget would remain. Integrated and unified
GPUs share system RAM, so offloading to them frees no RAM and everything must fit in RAM once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from gemmadesk.core.attention import choose_attention, flash_attn_crashes_on_gpu
from gemmadesk.core.catalog import Catalog, CatalogEntry
from gemmadesk.core.gguf_info import ModelLayout, layout_from_catalog, read_layout
from gemmadesk.core.hardware import Hardware, decode_threads
from gemmadesk.core.speed import (
    SLOW_TOKENS_PER_S,
    MeasuredSpeed,
    Placement,
    SpeedEstimate,
    correction_factors,
    estimate_speed,
    measured_for,
)
from gemmadesk.core.types import FlashAttnMode, KvType, LoadSettings
from gemmadesk.core.units import GiB, MiB
from gemmadesk.core.units import human_bytes as _fmt

KV_BYTES_PER_ELEMENT = {KvType.F16: 2.0, KvType.Q8_0: 34 / 32, KvType.Q4_0: 18 / 32}
# CUDA context, cuBLAS workspaces and pool slack: NVML showed 526-620 MiB above llama.cpp's own buffers
# on an H100 (docs/benchmarks.md).
GPU_RESERVE_BYTES = 640 * MiB
# The projector's first image and first audio clip on a GPU: on the H200, NVML grew by 487-647 MiB more than
# the modelled encoder buffers (which match clip.cpp's own reports within ~15 %) at the first image for all
# four sizes, and by another 104-112 MiB at the first clip (E2B, 12B): CUDA pools and workspaces of the
# encoders' own graphs (benchmarks/gpu/mm_measure.py, docs/multimodal.md). Counted on top, on the GPU only:
# 736 MiB covers the largest (12B, image then audio: 733 MiB) and over-counts E2B by 140-250 MiB.
GPU_ENCODER_WORKSPACE_BYTES = 736 * MiB
RAM_RESERVE_BYTES = int(1.5 * GiB)  # the most RAM kept back: headroom for the OS, other apps, page cache
RAM_RESERVE_MIN_BYTES = 512 * MiB
RAM_RESERVE_FRACTION = 0.10


def ram_reserve(total_bytes: int) -> int:
    """RAM left unplanned: 10 % of RAM, between 512 MiB and 1.5 GiB. What runs now (the OS, this app) is
    already outside "available"; the reserve is headroom for it to grow. A flat 1.5 GiB took 37 % of a 4 GiB
    machine and left it no model at all (issue 11)."""
    return int(min(max(total_bytes * RAM_RESERVE_FRACTION, RAM_RESERVE_MIN_BYTES), RAM_RESERVE_BYTES))
TIGHT_FRACTION = 0.90
MIN_FALLBACK_CTX = 2048  # when nothing fits, a shorter context is offered down to this, never below
QUALITY_RANK = {"E2B": 1, "E4B": 2, "12B": 3, "26B-A4B": 4, "31B": 5}


class Verdict(StrEnum):
    GPU = "gpu"
    PARTIAL = "partial"
    CPU = "cpu"
    TOO_LARGE = "too_large"

    @property
    def label(self) -> str:
        return {
            "gpu": "Fits on GPU",
            "partial": "Partial GPU offload",
            "cpu": "Runs on CPU (RAM)",
            "too_large": "Too large",
        }[self.value]


@dataclass(frozen=True)
class FitOptions:
    n_ctx: int = 8192
    kv_type: KvType = KvType.F16
    flash_attn: FlashAttnMode = FlashAttnMode.AUTO
    with_mmproj: bool = False
    n_ubatch: int = 512
    max_gpu_layers: int | None = None  # force a cap (user setting); None: as many as fit


@dataclass(frozen=True)
class MemoryEstimate:
    weights_gpu: int
    weights_cpu: int
    kv_gpu: int
    kv_cpu: int
    compute_gpu: int
    compute_cpu: int
    mmproj: int  # counted on the GPU when offloading, else in RAM
    mmproj_on_gpu: bool
    gpu_reserve: int
    ram_reserve: int

    @property
    def gpu_bytes(self) -> int:
        """Memory the model needs on the GPU (without the reserve)."""
        return self.weights_gpu + self.kv_gpu + self.compute_gpu + (self.mmproj if self.mmproj_on_gpu else 0)

    @property
    def cpu_bytes(self) -> int:
        """Memory the model needs in RAM (without the reserve)."""
        return self.weights_cpu + self.kv_cpu + self.compute_cpu + (0 if self.mmproj_on_gpu else self.mmproj)

    @property
    def total_bytes(self) -> int:
        return self.gpu_bytes + self.cpu_bytes

    @property
    def kv_bytes(self) -> int:
        return self.kv_gpu + self.kv_cpu


@dataclass(frozen=True)
class Plan:
    entry_id: str
    verdict: Verdict
    tight: bool
    n_gpu_layers: int  # for llama.cpp: n_layer + 1 means everything, output layer included
    n_layers: int
    gpu_name: str | None
    estimate: MemoryEstimate
    options: FitOptions
    reason: str
    flash_attn: bool = True
    type_k: KvType = KvType.F16
    type_v: KvType = KvType.F16
    notes: tuple[str, ...] = ()
    speed: SpeedEstimate | None = None  # expected decode speed where the verdict puts it (None: too large)
    fits_now: bool = True  # False: it fits this machine's RAM only once other apps free some

    @property
    def fits(self) -> bool:
        return self.verdict is not Verdict.TOO_LARGE

    def load_settings(self, model_path: str | Path, mmproj_path: str | Path | None = None) -> LoadSettings:
        return LoadSettings(
            model_path=str(model_path),
            n_ctx=self.options.n_ctx,
            n_gpu_layers=self.n_gpu_layers,
            flash_attn=self.flash_attn,
            type_k=self.type_k,
            type_v=self.type_v,
            n_ubatch=self.options.n_ubatch,
            n_batch=max(self.options.n_ubatch, 512),
            mmproj_path=str(mmproj_path) if mmproj_path else None,
        )


@dataclass(frozen=True)
class Recommendation:
    plans: tuple[Plan, ...]  # every runnable entry at the context asked for
    best: Plan | None  # at ``n_ctx``, which is shorter than asked when nothing fitted there
    explanation: str
    alternatives: tuple[str, ...] = field(default=())
    runner_up: Plan | None = None  # the next best choice by the same ranking
    n_ctx: int = 0  # the context ``best`` is planned for
    asked_ctx: int = 0  # the context asked for (``n_ctx`` < ``asked_ctx``: nothing fitted at it)

    @property
    def context_reduced(self) -> bool:
        return self.best is not None and self.n_ctx < self.asked_ctx


@dataclass(frozen=True)
class MemoryBudget:
    """The memory figures every text on screen uses, so that they agree: RAM and VRAM in all, and what is
    free for models after the fixed reserves (system and app; driver and CUDA context)."""

    ram_total: int
    ram_for_models: int  # available now, minus the reserve (never negative)
    ram_reserve: int
    gpu_name: str | None
    vram_total: int
    vram_for_models: int  # free now, minus the reserve
    gpu_reserve: int
    shared_memory: bool  # the GPU uses system RAM (Apple, integrated): one pool

    def sentence(self) -> str:
        """The reserve, explained once: "21.4 GiB of RAM free for models (GemmaDesk leaves 1.5 GiB …)"."""
        text = (f"{_fmt(self.ram_for_models)} of RAM free for models (GemmaDesk leaves {_fmt(self.ram_reserve)} "
                "for the system and itself)")
        if self.gpu_name and not self.shared_memory:
            text += (f"; {_fmt(self.vram_for_models)} of the {self.gpu_name}'s VRAM (it leaves "
                     f"{_fmt(self.gpu_reserve)} for the driver)")
        return text


def memory_budget(hw: Hardware) -> MemoryBudget:
    gpu = hw.best_gpu
    return MemoryBudget(
        ram_total=hw.ram_total_bytes,
        ram_for_models=max(hw.ram_available_bytes - ram_reserve(hw.ram_total_bytes), 0),
        ram_reserve=ram_reserve(hw.ram_total_bytes),
        gpu_name=gpu.name if gpu else None,
        vram_total=gpu.total_bytes if gpu else 0,
        vram_for_models=max(gpu.offload_bytes - GPU_RESERVE_BYTES, 0) if gpu else 0,
        gpu_reserve=GPU_RESERVE_BYTES,
        shared_memory=bool(gpu and gpu.memory_kind in ("unified", "integrated")),
    )


@dataclass(frozen=True)
class MaxContexts:
    """The longest context (tokens, multiples of 1024) that still fits each way; 0 = not even 1024."""

    gpu: int  # everything on the GPU
    partial: int  # some layers on the GPU, the rest on the CPU (includes gpu)
    cpu: int  # CPU only


# ------------------------------------------------------------------------------------------ estimate


def _pad(x: int, p: int = 256) -> int:
    return (x + p - 1) // p * p


def kv_bytes_per_layer(
    layout: ModelLayout, n_ctx: int, type_k: KvType | str, type_v: KvType | str, n_ubatch: int,
    flash_attn: bool = True,
) -> list[int]:
    """KV-cache bytes of each layer (0 for layers that share another layer's cache).

    Without flash attention llama.cpp's CUDA buffers for Gemma 4's global layers held one more F16 V
    per cached token (measured on an H100 for 26B A4B and 31B; the 12B showed three), so that is added.
    """
    bk, bv = KV_BYTES_PER_ELEMENT[KvType(type_k)], KV_BYTES_PER_ELEMENT[KvType(type_v)]
    swa_cells = min(n_ctx, _pad(layout.sliding_window + n_ubatch)) if layout.sliding_window else n_ctx
    out = []
    for la in layout.layers:
        if not la.owns_kv:
            out.append(0)
            continue
        cells = swa_cells if la.is_swa else n_ctx
        extra_v = 0 if flash_attn or la.is_swa or layout.architecture != "gemma4" else la.head_dim_v * 2
        out.append(int(cells * la.n_head_kv * (la.head_dim_k * bk + la.head_dim_v * bv + extra_v)))
    return out


def compute_bytes(
    layout: ModelLayout, n_ctx: int, n_ubatch: int, flash_attn: bool, with_logits: bool, on_gpu: bool = True
) -> int:
    """Worst-case compute buffer of one micro-batch on one device.

    ggml's graph allocator reuses memory, so the buffer is the larger of two peaks rather than a sum:
    the output step (the F32 logits of ``n_ubatch`` tokens over the whole vocabulary, plus a few
    hidden-state tensors and, for E2B/E4B, the per-layer inputs) and the attention step (without flash
    attention, the F32 scores of every head over the whole context). The attention mask (F16 with flash
    attention, F32 without) is an input that lives through both on a GPU (on the CPU it is read in place).
    Calibrated against llama.cpp's
    "compute buffer size" report: Gemma 3 270M on CPU (514.5 MiB, exact) and synthetic Gemma 4
    E2B…31B on an H100 (docs/benchmarks.md, GPU section).
    """
    mask = n_ctx * n_ubatch * (2 if flash_attn else 4) if on_gpu else 0
    ple = 3 * layout.n_layer * _ple_dim(layout) * n_ubatch * 4
    logits_peak = (n_ubatch * 4 * layout.n_vocab if with_logits else 0) + 5 * n_ubatch * 4 * layout.n_embd + ple
    layer_peak = n_ubatch * 4 * (4 * layout.n_embd + 3 * layout.n_ff)
    if not flash_attn:
        layer_peak += layout.n_head * n_ctx * n_ubatch * 4
    return max(logits_peak, layer_peak) + mask


def estimate(
    layout: ModelLayout,
    options: FitOptions,
    n_gpu_layers: int,
    *,
    flash_attn: bool,
    type_k: KvType | str,
    type_v: KvType | str,
    mmproj_bytes: int = 0,
    gpu_reserve: int = GPU_RESERVE_BYTES,
) -> MemoryEstimate:
    n = layout.n_layer
    ngl = max(0, min(n_gpu_layers, n + 1))
    # llama.cpp offloads from the top: the output layer first, then the last ngl - 1 repeating layers
    # (llama_model::load_tensors: i_gpu_start = n_layer + 1 - n_gpu_layers).
    output_on_gpu = ngl >= 1
    first_gpu = n - max(ngl - 1, 0)  # layers [first_gpu, n) run on the GPU
    kv = kv_bytes_per_layer(layout, options.n_ctx, type_k, type_v, options.n_ubatch, flash_attn)
    w_gpu = sum(layout.layer_bytes[first_gpu:]) + (layout.output_bytes if output_on_gpu else 0)
    output_in_ram = not output_on_gpu and not layout.output_tied  # tied: same mmapped bytes as the input
    w_cpu = sum(layout.layer_bytes[:first_gpu]) + layout.input_bytes + (layout.output_bytes if output_in_ram else 0)
    kv_gpu = sum(kv[first_gpu:])
    kv_cpu = sum(kv[:first_gpu])
    uses_gpu = ngl > 0
    if uses_gpu:
        # The GPU holds the output layer (and llama.cpp runs big CPU-weight matmuls there too), so it
        # computes the logits; the host keeps the input embeddings and the CPU layers' activations.
        c_gpu = compute_bytes(layout, options.n_ctx, options.n_ubatch, flash_attn, with_logits=True)
        c_cpu = options.n_ubatch * 4 * (2 * layout.n_embd + layout.n_layer * _ple_dim(layout))
        if first_gpu > 0:
            c_cpu += compute_bytes(layout, options.n_ctx, options.n_ubatch, flash_attn, False, on_gpu=False)
    else:
        c_gpu = 0
        c_cpu = compute_bytes(layout, options.n_ctx, options.n_ubatch, flash_attn, True, on_gpu=False)
    c_cpu += layout.n_vocab * 4  # host output buffer: the logits of the last token
    return MemoryEstimate(
        weights_gpu=w_gpu,
        weights_cpu=w_cpu,
        kv_gpu=kv_gpu,
        kv_cpu=kv_cpu,
        compute_gpu=c_gpu,
        compute_cpu=c_cpu,
        mmproj=mmproj_bytes if options.with_mmproj else 0,
        mmproj_on_gpu=uses_gpu,
        gpu_reserve=(gpu_reserve + (GPU_ENCODER_WORKSPACE_BYTES if options.with_mmproj and mmproj_bytes else 0))
        if uses_gpu else 0,
        ram_reserve=RAM_RESERVE_BYTES,
    )


def _ple_dim(layout: ModelLayout) -> int:
    """Per-layer-embedding width of E2B/E4B-style models (0 for others), from the size of the input tables."""
    if not layout.n_vocab or not layout.n_layer:
        return 0
    extra = layout.input_bytes - layout.output_bytes if layout.output_tied else layout.input_bytes
    # Q4_0-ish tables: ~0.56 bytes per weight; only count a table that is clearly larger than one embedding.
    per_layer = extra / (layout.n_vocab * layout.n_layer * 0.5625)
    return int(per_layer) if per_layer >= 16 else 0


# ------------------------------------------------------------------------------------------ planning


def plan_layout(
    layout: ModelLayout,
    hw: Hardware,
    options: FitOptions,
    *,
    entry: CatalogEntry | None = None,
    entry_id: str = "",
    mmproj_bytes: int = 0,
) -> Plan:
    """Decide where the model runs on this hardware and what it needs there."""
    gpu = hw.best_gpu
    attention = choose_attention(
        options.flash_attn, options.kv_type, options.kv_type,
        crashes_on_gpu=flash_attn_crashes_on_gpu(layout.architecture, layout.n_embd),
        on_gpu=gpu is not None and options.max_gpu_layers != 0,
        default_off=entry is not None and entry.flash_attn_default == "off",
    )  # fmt: skip
    fa, type_k, type_v, notes = attention.flash_attn, attention.type_k, attention.type_v, attention.notes
    n = layout.n_layer
    reserve = ram_reserve(hw.ram_total_bytes)
    ram_budget = hw.ram_available_bytes - reserve
    ram_total_budget = hw.ram_total_bytes - reserve

    def est(ngl: int) -> MemoryEstimate:
        e = estimate(layout, options, ngl, flash_attn=fa, type_k=type_k, type_v=type_v, mmproj_bytes=mmproj_bytes)
        return replace(e, ram_reserve=reserve)

    threads = decode_threads(hw.cpu_cores)

    def make(
        verdict: Verdict, ngl: int, e: MemoryEstimate, tight: bool, reason: str, fits_now: bool = True
    ) -> Plan:
        speed = None
        if verdict is not Verdict.TOO_LARGE:
            speed = estimate_speed(layout, hw, gpu if ngl else None, ngl, options.n_ctx, threads, type_k, type_v)
        return Plan(entry_id or layout.name, verdict, tight, ngl, n, gpu.name if gpu and ngl else None, e,
                    options, reason, fa, type_k, type_v, notes, speed, fits_now)

    if options.n_ctx > layout.n_ctx_train > 0:
        e = est(0)
        return make(Verdict.TOO_LARGE, 0, e, False,
                    f"context {options.n_ctx:,} is longer than this model's limit of {layout.n_ctx_train:,} tokens")

    max_ngl = n + 1 if options.max_gpu_layers is None else min(options.max_gpu_layers, n + 1)
    if gpu is not None and max_ngl > 0:
        shared_memory = gpu.memory_kind in ("unified", "integrated")
        gpu_budget = gpu.offload_bytes - GPU_RESERVE_BYTES
        full = est(max_ngl)
        if shared_memory:
            # The GPU's memory is RAM: the whole model must fit in RAM once, and in the GPU's share of it.
            total = full.gpu_bytes + full.cpu_bytes
            if full.gpu_bytes <= gpu_budget and total <= ram_budget:
                tight = total > TIGHT_FRACTION * ram_budget
                return make(Verdict.GPU, max_ngl, full, tight,
                            f"runs on the {gpu.name} (shared memory): needs {_fmt(total)} of the "
                            f"{_fmt(max(ram_budget, 0))} free for models")
        else:
            if full.gpu_bytes <= gpu_budget and full.cpu_bytes <= ram_budget and max_ngl == n + 1:
                tight = full.gpu_bytes > TIGHT_FRACTION * gpu_budget or full.cpu_bytes > TIGHT_FRACTION * ram_budget
                return make(Verdict.GPU, max_ngl, full, tight,
                            f"fits entirely on the {gpu.name}: {_fmt(full.gpu_bytes)} of the "
                            f"{_fmt(max(gpu_budget, 0))} of VRAM free for models, and {_fmt(full.cpu_bytes)} of RAM")
            # Partial offload: the most layers whose GPU share fits.
            best = 0
            for ngl in range(min(max_ngl, n), 1, -1):  # ngl 1 would put only the output layer there
                if est(ngl).gpu_bytes <= gpu_budget:
                    best = ngl
                    break
            if best > 0:
                e = est(best)
                if e.cpu_bytes <= ram_budget:
                    tight = e.cpu_bytes > TIGHT_FRACTION * ram_budget
                    where = f"{best - 1} of {n} layers on the {gpu.name}"
                    return make(Verdict.PARTIAL, best, e, tight,
                                f"{where} ({_fmt(e.gpu_bytes)} of VRAM), the rest on the CPU "
                                f"({_fmt(e.cpu_bytes)} of RAM); slower than a full fit")
    cpu = est(0)
    why_not_gpu = "no GPU this llama.cpp build can use" if gpu is None else "too large for the GPU"
    if cpu.cpu_bytes <= ram_budget:
        tight = cpu.cpu_bytes > TIGHT_FRACTION * ram_budget
        return make(Verdict.CPU, 0, cpu, tight,
                    f"runs on the CPU ({why_not_gpu}): needs {_fmt(cpu.cpu_bytes)} of the "
                    f"{_fmt(max(ram_budget, 0))} of RAM free for models")
    if cpu.cpu_bytes <= ram_total_budget:
        return make(Verdict.CPU, 0, cpu, True,
                    f"runs on the CPU once other apps are closed: needs {_fmt(cpu.cpu_bytes)} of RAM and "
                    f"{_fmt(max(ram_budget, 0))} is free for models now", fits_now=False)
    if gpu is not None and gpu.memory_kind not in ("unified", "integrated"):
        where = (f"more than this machine's {_fmt(hw.ram_total_bytes)} of RAM and "
                 f"{_fmt(gpu.total_bytes)} of VRAM together, after the reserves")
    else:
        where = f"more than this machine's {_fmt(hw.ram_total_bytes)} of RAM after the reserve"
    return make(Verdict.TOO_LARGE, 0, cpu, False,
                f"needs about {_fmt(cpu.cpu_bytes)} of memory at {options.n_ctx:,} tokens: {where}")


def max_contexts(
    layout: ModelLayout, hw: Hardware, options: FitOptions, entry: CatalogEntry | None = None
) -> MaxContexts:
    """Binary-search the longest context for each placement (the plan is monotonic in ``n_ctx``)."""
    limit = layout.n_ctx_train or 131072

    def longest(ok: Callable[[Plan], bool], opts: FitOptions = options) -> int:
        lo, hi = 0, limit // 1024  # in units of 1024 tokens
        while lo < hi:
            mid = (lo + hi + 1) // 2
            plan = plan_layout(layout, hw, replace(opts, n_ctx=mid * 1024), entry=entry)
            lo, hi = (mid, hi) if ok(plan) else (lo, mid - 1)
        return lo * 1024

    return MaxContexts(
        gpu=longest(lambda p: p.verdict is Verdict.GPU),
        partial=longest(lambda p: p.verdict in (Verdict.GPU, Verdict.PARTIAL)),
        cpu=longest(lambda p: p.fits, replace(options, max_gpu_layers=0)),
    )


def entry_layout(entry: CatalogEntry, catalog: Catalog, gguf_path: Path | None = None) -> ModelLayout:
    if gguf_path is not None:
        return read_layout(gguf_path)
    if entry.file is None:
        raise ValueError(f"{entry.id} has no GGUF file: it is not runnable by this app")
    return layout_from_catalog(catalog.arch(entry), entry.file.size_bytes, entry.format)


def plan_entry(
    entry: CatalogEntry, hw: Hardware, options: FitOptions, gguf_path: Path | None = None,
    catalog: Catalog | None = None,
) -> Plan:
    from gemmadesk.core.catalog import load_catalog

    layout = entry_layout(entry, catalog or load_catalog(), gguf_path)
    return plan_layout(layout, hw, options, entry=entry, entry_id=entry.id, mmproj_bytes=vision_bytes(entry, options))


def plan_for_file(gguf_path: Path, hw: Hardware, options: FitOptions, mmproj_path: Path | None = None) -> Plan:
    """Plan any local GGUF (imported or custom) from its own header."""
    layout = read_layout(gguf_path)
    mmproj = vision_bytes_for_file(mmproj_path, options) if mmproj_path else 0
    return plan_layout(layout, hw, options, entry_id=Path(gguf_path).name, mmproj_bytes=mmproj)


def vision_bytes(entry: CatalogEntry, options: FitOptions) -> int:
    """Memory the entry's projector (mmproj) takes once loaded: its file plus the image/audio encoders'
    compute buffers at Gemma 4's default image budget (:func:`gemmadesk.core.mmproj.projector_memory`,
    from the published encoder shapes, so it is known before the projector is downloaded). 0 without one.
    Image and audio tokens need no memory of their own: they take context positions, which the KV cache
    sized for ``n_ctx`` already holds (see :func:`image_tokens_note`)."""
    from gemmadesk.core.mmproj import DEFAULT_IMAGE_MAX_TOKENS, PUBLISHED_SHAPES, projector_memory

    if entry.mmproj is None:
        return 0
    shape = PUBLISHED_SHAPES.get(entry.size)
    fa = options.flash_attn is not FlashAttnMode.OFF
    buffers = projector_memory(shape, DEFAULT_IMAGE_MAX_TOKENS, fa) if shape is not None else 0
    return entry.mmproj.size_bytes + buffers


def vision_bytes_for_file(mmproj_path: Path, options: FitOptions) -> int:
    """:func:`vision_bytes` for a projector file on disk (its own header gives the encoder shapes)."""
    from gemmadesk.core.mmproj import DEFAULT_IMAGE_MAX_TOKENS, ProjectorFileError, projector_memory, read_projector

    size = os.path.getsize(mmproj_path)
    try:
        info = read_projector(mmproj_path)
    except (ProjectorFileError, OSError):
        return size  # the engine says what is wrong with it when loading
    return size + projector_memory(info, DEFAULT_IMAGE_MAX_TOKENS, options.flash_attn is not FlashAttnMode.OFF)


def image_tokens_note(n_ctx: int) -> str:
    """How much of the context an image or a minute of audio uses, in words (for the fit list)."""
    from gemmadesk.core.mmproj import DEFAULT_IMAGE_MAX_TOKENS, TOKENS_PER_AUDIO_SECOND

    images = max(n_ctx // DEFAULT_IMAGE_MAX_TOKENS, 0)
    return (f"An image takes up to {DEFAULT_IMAGE_MAX_TOKENS} of the {n_ctx:,} context tokens (about {images} images "
            f"fit), a minute of audio {60 * TOKENS_PER_AUDIO_SECOND:,}.")


# ------------------------------------------------------------------------------------------ recommend

def _preferred_format(entry: CatalogEntry) -> int:
    """Lower is better among formats of one size: Google's official Q4_0 first, except 26B A4B where
    Unsloth's UD-Q4_K_XL is reported far more accurate than a plain Q4_0 conversion."""
    if entry.format == "UD-Q2_K_XL":
        return 3
    official_first = entry.size != "26B-A4B"
    return 0 if (entry.publisher == "google") == official_first else 1


def placement_of(plan: Plan) -> Placement:
    """"cpu", "gpu" (every layer) or "split", as the speed log files measurements."""
    if plan.n_gpu_layers <= 0:
        return "cpu"
    return "gpu" if plan.n_gpu_layers >= plan.n_layers + 1 else "split"


def apply_measurements(
    plans: Sequence[Plan], catalog: Catalog, hw: Hardware, measured: Sequence[MeasuredSpeed]
) -> tuple[Plan, ...]:
    """Correct each plan's speed by what this machine measured: a model measured with the same placement
    shows its measured speed; the others are scaled by the measured/estimated ratio of their placement."""
    if not measured:
        return tuple(plans)
    factors = correction_factors(measured, hw)
    out = []
    for plan in plans:
        speed = plan.speed
        if speed is not None:
            placement = placement_of(plan)
            entry = _entry_or_none(catalog, plan.entry_id)
            exact = None
            if entry is not None and entry.file is not None:
                exact = measured_for(measured, entry.file.filename, entry.file.size_bytes, placement, speed.threads)
            if exact is not None:
                speed = speed.scaled(exact / speed.tokens_per_s, "measured")
            elif placement in factors:
                speed = speed.scaled(factors[placement], "corrected")
            plan = replace(plan, speed=speed)
        out.append(plan)
    return tuple(out)


def _entry_or_none(catalog: Catalog, entry_id: str) -> CatalogEntry | None:
    try:
        return catalog.get(entry_id)
    except KeyError:
        return None


def _tier(plan: Plan) -> int:
    """How well a plan would run, lower is better:
    0 all on the GPU; 1 mostly on the GPU (>= 85 % of layers); 2 on the CPU or split at a usable speed;
    3 any of those but tight; 4 slow (under SLOW_TOKENS_PER_S expected); 5 fits only once other apps
    free memory; 6 the same and slow; 7 too large."""
    slow = plan.speed is not None and plan.speed.slow
    if not plan.fits:
        return 7
    if not plan.fits_now:
        return 6 if slow else 5
    if slow:
        return 4
    if plan.verdict is Verdict.GPU:
        tier = 0
    elif plan.verdict is Verdict.PARTIAL and plan.n_gpu_layers >= 0.85 * plan.n_layers:
        tier = 1
    else:
        tier = 2
    return 3 if plan.tight else tier


def speed_phrase(speed: SpeedEstimate | None) -> str:
    """"about 23 tokens/s", with what it means for slower ones; "" when unknown."""
    if speed is None:
        return ""
    from gemmadesk.core.speed import format_rate

    rate = format_rate(speed.tokens_per_s)
    where = "measured here" if speed.basis == "measured" else "expected here"
    if speed.slow:
        return f"slow: about {rate} tokens/s {where}, slower than people read"
    if speed.tokens_per_s < 3 * SLOW_TOKENS_PER_S:
        return f"about {rate} tokens/s {where}, roughly reading speed"
    return f"about {rate} tokens/s {where}"


def _why_not(plan: Plan) -> str:
    """Why a larger model was not picked, as the end of a sentence."""
    e = plan.estimate
    if not plan.fits:
        return f"does not fit ({plan.reason})"
    if not plan.fits_now:
        return f"would fit only once other apps are closed ({_fmt(e.cpu_bytes)} of RAM)"
    if plan.speed is not None and plan.speed.slow:
        return f"would be {speed_phrase(plan.speed)}"
    if plan.verdict is Verdict.PARTIAL:
        layers = f"{plan.n_gpu_layers - 1} of {plan.n_layers} layers on the GPU"
        return f"would need partial offload ({layers}), which is slower"
    where = "VRAM" if plan.verdict is Verdict.GPU else "RAM"
    amount = e.gpu_bytes if plan.verdict is Verdict.GPU else e.cpu_bytes
    return f"would only just fit ({_fmt(amount)} of {where})" if plan.tight else f"fits too ({_fmt(amount)} of {where})"


def _rank(plans: Sequence[Plan], by_id: dict[str, CatalogEntry]) -> list[Plan]:
    """Best first: the best-running tier; within it the largest model (among slow ones the fastest);
    then the preferred format."""

    def key(p: Plan) -> tuple[int, float, int]:
        e = by_id[p.entry_id]
        tier = _tier(p)
        second = -(p.speed.tokens_per_s if p.speed else 0.0) if tier in (4, 6) else -QUALITY_RANK[e.size]
        return (tier, second, _preferred_format(e))

    return sorted(plans, key=key)


def _plans_at(
    hw: Hardware, catalog: Catalog, options: FitOptions, measured: Sequence[MeasuredSpeed]
) -> tuple[Plan, ...]:
    plans = tuple(plan_entry(e, hw, options, catalog=catalog) for e in catalog.runnable)
    return apply_measurements(plans, catalog, hw, measured)


def _shorter_context(
    hw: Hardware, catalog: Catalog, options: FitOptions, ok: Callable[[Plan], bool],
    steps: Sequence[int] | None,
) -> int:
    """The longest context below ``options.n_ctx`` (and not below MIN_FALLBACK_CTX) at which some plan is
    ``ok``; 0 if none. ``steps``: only these contexts (the UI's choices), else multiples of 1024."""

    def any_ok(n_ctx: int) -> bool:
        opts = replace(options, n_ctx=n_ctx)
        return any(ok(plan_entry(e, hw, opts, catalog=catalog)) for e in catalog.runnable)

    if steps is not None:
        for c in sorted((c for c in steps if MIN_FALLBACK_CTX <= c < options.n_ctx), reverse=True):
            if any_ok(c):
                return c
        return 0
    lo, hi = MIN_FALLBACK_CTX // 1024 - 1, (options.n_ctx - 1) // 1024  # lo: "none" sentinel
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if any_ok(mid * 1024) else (lo, mid - 1)
    return lo * 1024 if lo * 1024 >= MIN_FALLBACK_CTX else 0


def recommend(
    hw: Hardware,
    catalog: Catalog,
    options: FitOptions,
    measured: Sequence[MeasuredSpeed] = (),
    context_steps: Sequence[int] | None = None,
) -> Recommendation:
    """Pick the best model for this machine: the best-running tier first, then the largest (best quality)
    model within it, then the preferred format. Returns every plan at ``options.n_ctx``, so the UI can show
    the whole list. When nothing fits in the memory free now at that context, the recommendation is for
    the longest shorter context (down to 2,048 tokens) where something does, and says so.

    ``measured``: this machine's recorded decode speeds (``speed_log``), which correct the estimates.
    ``context_steps``: contexts the caller can offer (the UI's list); None: any multiple of 1024."""
    by_id = {e.id: e for e in catalog.runnable}
    plans = _plans_at(hw, catalog, options, measured)
    asked = options.n_ctx
    ranked = _rank(plans, by_id)
    usable = [p for p in ranked if p.fits_now and p.fits]
    prefix = ""
    n_ctx = asked
    if not usable:
        shorter = _shorter_context(hw, catalog, options, lambda p: p.fits and p.fits_now, context_steps)
        if shorter:
            n_ctx = shorter
            prefix = f"Nothing fits at {asked:,} tokens of context, so this is for {shorter:,} tokens: "
        else:  # nothing fits in the memory free now, even at 2K: what would fit once other apps close
            fits_later = [p for p in ranked if p.fits]
            if not fits_later:
                shorter = _shorter_context(hw, catalog, options, lambda p: p.fits, context_steps)
                if shorter:
                    n_ctx = shorter
                    prefix = f"Nothing fits at {asked:,} tokens of context, so this is for {shorter:,} tokens. "
        if n_ctx != asked:
            at = _rank(_plans_at(hw, catalog, replace(options, n_ctx=n_ctx), measured), by_id)
            usable = [p for p in at if p.fits_now and p.fits] or [p for p in at if p.fits]
            ranked_at = at
        else:
            usable = [p for p in ranked if p.fits]
            ranked_at = ranked
    else:
        ranked_at = ranked
    best = usable[0] if usable else None
    if best is None:
        smallest = min(plans, key=lambda p: p.estimate.total_bytes)
        budget = memory_budget(hw)
        return Recommendation(plans, None,
                              f"No Gemma 4 model fits this machine, even at {MIN_FALLBACK_CTX:,} tokens of context: "
                              f"at {asked:,} tokens the smallest needs about {_fmt(smallest.estimate.total_bytes)} "
                              f"and this machine has {_fmt(budget.ram_total)} of RAM"
                              + (f" and {_fmt(budget.vram_total)} of VRAM" if budget.vram_total and
                                 not budget.shared_memory else "") + ".",
                              n_ctx=asked, asked_ctx=asked)
    e = by_id[best.entry_id]
    text = prefix + ("Close other apps first. " if not best.fits_now else "") + f"{e.label} — {best.reason}."
    phrase = speed_phrase(best.speed)
    if phrase:
        text += f" Speed: {phrase}."
    if _tier(best) in (4, 6):
        text += " Every model that fits is slow on this machine; this is the fastest of them."
    if best.tight and best.fits_now:
        text += " It is a tight fit; a shorter context or a q8_0 KV cache leaves more room."
    alternatives = []
    bigger = [p for p in ranked_at if QUALITY_RANK[by_id[p.entry_id].size] > QUALITY_RANK[e.size]
              and _preferred_format(by_id[p.entry_id]) == 0]
    if bigger:
        nxt = min(bigger, key=lambda p: QUALITY_RANK[by_id[p.entry_id].size])
        why = _why_not(nxt)
        alternatives.append(f"{by_id[nxt.entry_id].size} {why}")
        text += f" The next size up, {by_id[nxt.entry_id].size}, {why}."
    runner_up = next((p for p in ranked_at if p.fits and p is not best and by_id[p.entry_id].size != e.size), None)
    return Recommendation(plans, best, text, tuple(alternatives), runner_up, n_ctx=n_ctx, asked_ctx=asked)


def will_not_run_warning(plan: Plan) -> str | None:
    """The one sentence both the window's download confirmation and ``gemmadesk pull`` show before
    downloading a model that will not run here; None when it will run."""
    if plan.fits:
        return None
    return f"This model will not run on this machine: it {plan.reason}."


def surprising_notes(plans: Sequence[Plan], catalog: Catalog) -> dict[str, str]:
    """For each plan that needs more memory than a *larger* model of the same format and publisher, one
    sentence saying why, from the estimate's parts (e.g. E4B at 128K: flash attention is off for it, so
    its attention buffers and KV cache grow past 12B's, although its KV cache is smaller with it on)."""
    by_id = {p.entry_id: p for p in plans}
    notes: dict[str, str] = {}
    for plan in plans:
        entry = _entry_or_none(catalog, plan.entry_id)
        if entry is None or entry.size not in QUALITY_RANK:
            continue
        larger = [
            (e, by_id[e.id]) for e in catalog.runnable
            if e.id in by_id and e.format == entry.format and e.publisher == entry.publisher
            and QUALITY_RANK.get(e.size, 0) > QUALITY_RANK[entry.size]
            and by_id[e.id].estimate.total_bytes < plan.estimate.total_bytes
        ]
        if not larger:
            continue
        other_entry, other = max(larger, key=lambda x: QUALITY_RANK[x[0].size])
        a, b = plan.estimate, other.estimate
        parts = []
        comp_a, comp_b = a.compute_gpu + a.compute_cpu, b.compute_gpu + b.compute_cpu
        if comp_a > comp_b:
            parts.append(f"its working buffers take {_fmt(comp_a)} against {_fmt(comp_b)}")
        if a.kv_bytes > b.kv_bytes:
            parts.append(f"its KV cache takes {_fmt(a.kv_bytes)} against {_fmt(b.kv_bytes)}")
        if not parts:
            continue
        why = ""
        if not plan.flash_attn and other.flash_attn:
            why = (" because flash attention is off for it"
                   + (" (llama.cpp's CUDA kernel crashes on this model)" if entry.flash_attn_default == "off" else "")
                   + ": without it the attention scores of the whole context need a buffer, and the global "
                   "layers' KV cache an extra copy of V")
        notes[plan.entry_id] = (
            f"Gemma 4 {entry.size} needs more memory than the larger {other_entry.size} at "
            f"{plan.options.n_ctx:,} tokens{why}; {' and '.join(parts)}."
        )
    return notes
