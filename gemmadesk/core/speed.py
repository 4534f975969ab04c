"""Expected decode speed (tokens/s) of a model on a machine: pure functions, calibrated on measurements.

Decoding one token reads every weight the token uses once (a mixture-of-experts layer only the experts it
is routed to: 26B A4B reads ~4B of its 26B parameters) plus the KV cache of the context so far, so a
token costs roughly

    t = host + layers_gpu * gpu_layer_s + bytes_gpu / (gpu_efficiency * gpu_bandwidth)
             + layers_cpu * cpu_layer_s + bytes_cpu / (cpu_efficiency * ram_bandwidth(threads))

``host`` is the per-token work outside the layers (the Python loop, copying 262,144 logits, sampling);
the per-layer terms are what does not scale with bytes (kernel launches and synchronisation between
threads, which dominate small models on a fast GPU). The constants are fitted, per device kind, to the
measured speeds in ``data/speed_calibration.json`` (non-negative least squares on relative error), so
adding a measurement there re-calibrates the estimate; ``docs/benchmarks.md`` shows the error table
that :func:`error_table` recomputes. On the user's machine :func:`correction_factors` scales the estimate
by what GemmaDesk measured there (``speed_log``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

from gemmadesk.core.gguf_info import ModelLayout
from gemmadesk.core.hardware import DEFAULT_RAM_BANDWIDTH, GPU, Hardware, gpu_bandwidth

Device = Literal["cpu", "gpu"]
Placement = Literal["cpu", "gpu", "split"]

SLOW_TOKENS_PER_S = 5.0  # below this a reply arrives slower than people read: say "slow"
START_FILL = 512  # "at the start of a chat": the KV cache holds about this many tokens
KV_BYTES = {"f16": 2.0, "q8_0": 34 / 32, "q4_0": 18 / 32}
CALIBRATION_VERSION = 1


@dataclass(frozen=True)
class DecodeWork:
    """What decoding one token reads, by device: bytes (weights + KV cache) and repeating layers."""

    gpu_bytes: int
    cpu_bytes: int
    gpu_layers: int
    cpu_layers: int

    @property
    def placement(self) -> Placement:
        if self.gpu_layers == 0 and self.gpu_bytes == 0:
            return "cpu"
        return "gpu" if self.cpu_layers == 0 else "split"


def kv_read_bytes(layout: ModelLayout, layer: int, fill: int, type_k: str, type_v: str) -> int:
    """KV bytes layer ``layer`` reads per decoded token with ``fill`` tokens in the context. A layer
    that shares another layer's cache (E2B/E4B) reads it too; a sliding-window layer at most its window."""
    la = layout.layers[layer]
    cells = min(fill, layout.sliding_window) if la.is_swa and layout.sliding_window else fill
    per_cell = la.head_dim_k * KV_BYTES.get(type_k, 2.0) + la.head_dim_v * KV_BYTES.get(type_v, 2.0)
    return int(cells * la.n_head_kv * per_cell)


def decode_work(
    layout: ModelLayout, n_gpu_layers: int, fill: int, type_k: str = "f16", type_v: str = "f16"
) -> DecodeWork:
    """Bytes and layers per decoded token for llama.cpp's placement (``n_gpu_layers`` counts the output
    layer first, then the last repeating layers, as in :func:`gemmadesk.core.fit.estimate`)."""
    n = layout.n_layer
    ngl = max(0, min(n_gpu_layers, n + 1))
    first_gpu = n - max(ngl - 1, 0)
    gpu = cpu = 0
    for i in range(n):
        b = layout.active_layer_bytes(i) + kv_read_bytes(layout, i, fill, type_k, type_v)
        if i >= first_gpu:
            gpu += b
        else:
            cpu += b
    # The output projection reads the whole (vocabulary x embedding) matrix for every token.
    if ngl >= 1:
        gpu += layout.output_bytes
    else:
        cpu += layout.output_bytes
    return DecodeWork(gpu, cpu, n - first_gpu, first_gpu)


# ------------------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class CalibrationRow:
    """One measured decode speed: a model on a machine, on one device, with the work it reads."""

    model: str
    machine: str
    device: Device
    runner: str  # "engine": GemmaDesk's streamed decode (what users get); "llama-bench": reference only
    threads: int
    bandwidth_gbs: float  # the device's bandwidth in that run (RAM: measured with ``threads`` threads)
    layers: int
    read_mib: float  # bytes read per token (weights + KV at the measured context)
    measured_tok_s: float
    source: str = ""

    @property
    def seconds_per_byte(self) -> float:
        return 1.0 / (self.bandwidth_gbs * 1e9)

    def features(self) -> tuple[float, float, float]:
        """(1, layers, read time at full bandwidth): the model's time is a non-negative mix of these."""
        return 1.0, float(self.layers), self.read_mib * 2**20 * self.seconds_per_byte


@dataclass(frozen=True)
class DeviceModel:
    host_s: float  # per token, outside the layers
    layer_s: float  # per repeating layer
    inverse_efficiency: float  # 1 / (share of the bandwidth reached)

    def seconds(self, layers: float, read_bytes: float, bandwidth: float) -> float:
        return layers * self.layer_s + read_bytes * self.inverse_efficiency / bandwidth

    @property
    def efficiency(self) -> float:
        return 1.0 / self.inverse_efficiency if self.inverse_efficiency > 0 else math.inf


@dataclass(frozen=True)
class SpeedModel:
    cpu: DeviceModel
    gpu: DeviceModel

    def device(self, device: Device) -> DeviceModel:
        return self.cpu if device == "cpu" else self.gpu

    def predict_row(self, row: CalibrationRow) -> float:
        m = self.device(row.device)
        f = row.features()
        t = m.host_s * f[0] + m.layer_s * f[1] + m.inverse_efficiency * f[2]
        return 1.0 / t if t > 0 else math.inf


# Used when the calibration file has no usable rows for a device (it always has; a safety net).
FALLBACK_MODEL = SpeedModel(cpu=DeviceModel(0.002, 0.0, 1.6), gpu=DeviceModel(0.001, 0.00008, 1.0))


def _solve(a: list[list[float]], b: list[float]) -> list[float] | None:
    """Gaussian elimination with partial pivoting; None if singular."""
    n = len(b)
    m = [row[:] + [b[i]] for i, row in enumerate(a)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        if abs(m[pivot][col]) < 1e-18:
            return None
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(n):
            if r != col:
                factor = m[r][col] / m[col][col]
                for c in range(col, n + 1):
                    m[r][c] -= factor * m[col][c]
    return [m[i][n] / m[i][i] for i in range(n)]


def fit_device(rows: Sequence[CalibrationRow]) -> DeviceModel | None:
    """Non-negative least squares of the row times on (host, layer, read time), minimising *relative*
    error: every subset of the three terms is solved and the best solution with no negative term wins."""
    rows = [r for r in rows if r.measured_tok_s > 0 and r.bandwidth_gbs > 0]
    if not rows:
        return None
    best: tuple[float, list[float]] | None = None
    for mask in range(1, 8):
        idx = [i for i in range(3) if mask >> i & 1]
        if 2 not in idx:
            continue  # the bandwidth term stays: without it nothing scales with model size
        xs = [[r.features()[i] * r.measured_tok_s for i in idx] for r in rows]  # row time t = 1/tok_s: x/t
        ys = [1.0] * len(rows)
        ata = [[sum(x[i] * x[j] for x in xs) for j in range(len(idx))] for i in range(len(idx))]
        aty = [sum(x[i] * y for x, y in zip(xs, ys, strict=True)) for i in range(len(idx))]
        sol = _solve(ata, aty)
        if sol is None or any(v < 0 for v in sol):
            continue
        coef = [0.0, 0.0, 0.0]
        for i, v in zip(idx, sol, strict=True):
            coef[i] = v
        resid = sum((sum(c * f for c, f in zip(coef, r.features(), strict=True)) * r.measured_tok_s - 1) ** 2
                    for r in rows)
        if best is None or resid < best[0] - 1e-12:
            best = (resid, coef)
    if best is None:
        return None
    host, layer, inv = best[1]
    return DeviceModel(host, layer, inv)


def parse_calibration(data: dict[str, Any]) -> tuple[CalibrationRow, ...]:
    version = int(data.get("version", 0))
    if version != CALIBRATION_VERSION:
        raise ValueError(f"speed calibration version {version}; this GemmaDesk reads version {CALIBRATION_VERSION}")
    return tuple(CalibrationRow(**row) for row in data["rows"])


@lru_cache(maxsize=1)
def calibration_rows() -> tuple[CalibrationRow, ...]:
    text = resources.files("gemmadesk.core").joinpath("data/speed_calibration.json").read_text(encoding="utf-8")
    return parse_calibration(json.loads(text))


def fit_model(rows: Iterable[CalibrationRow]) -> SpeedModel:
    rows = [r for r in rows if r.runner == "engine"]
    cpu = fit_device([r for r in rows if r.device == "cpu"]) or FALLBACK_MODEL.cpu
    gpu = fit_device([r for r in rows if r.device == "gpu"]) or FALLBACK_MODEL.gpu
    return SpeedModel(cpu, gpu)


@lru_cache(maxsize=1)
def speed_model() -> SpeedModel:
    """The model fitted to the shipped calibration table."""
    return fit_model(calibration_rows())


@dataclass(frozen=True)
class ErrorRow:
    row: CalibrationRow
    estimated_tok_s: float
    error: float  # (estimated - measured) / measured
    loo_estimated_tok_s: float  # fitted without this model's rows (how well it predicts a model it has not seen)
    loo_error: float


def error_table(rows: Sequence[CalibrationRow]) -> list[ErrorRow]:
    """Estimated vs measured for every row, in-sample and leave-one-model-out (only engine rows are fitted)."""
    model = fit_model(rows)
    out = []
    for r in rows:
        est = model.predict_row(r)
        # Every row of the same model (on any machine) left out: the estimate for a model it has not seen.
        loo = fit_model([x for x in rows if x.model != r.model]).predict_row(r)
        out.append(ErrorRow(r, est, est / r.measured_tok_s - 1, loo, loo / r.measured_tok_s - 1))
    return out


# ------------------------------------------------------------------------------------- estimate


def ram_bandwidth(hw: Hardware, threads: int) -> tuple[float, bool]:
    """(bytes/s, measured) RAM read bandwidth with ``threads`` threads: interpolated between the probe's
    one-thread and all-cores measurements; a default when the machine was not measured."""
    one, many, n = hw.ram_bandwidth_1t_bytes_s, hw.ram_bandwidth_bytes_s, hw.ram_bandwidth_threads
    if one <= 0 and many <= 0:
        return DEFAULT_RAM_BANDWIDTH * min(1.0, 0.5 + 0.5 * max(threads - 1, 0)), False
    one = one if one > 0 else many
    many = max(many, one)
    if threads <= 1 or n <= 1:
        return one, True
    if threads >= n:
        return many, True
    return one + (many - one) * (threads - 1) / (n - 1), True


@dataclass(frozen=True)
class SpeedEstimate:
    tokens_per_s: float  # at the start of a chat
    tokens_per_s_full: float  # with the whole context filled
    basis: Literal["estimate", "corrected", "measured"]  # corrected: scaled by this machine's measurements
    bandwidth_known: bool  # False: a default bandwidth was assumed (unknown GPU, unmeasured RAM)
    threads: int
    limited_by: str  # in words: "memory bandwidth", "per-layer overhead", "the CPU part"

    @property
    def slow(self) -> bool:
        return self.tokens_per_s < SLOW_TOKENS_PER_S

    def scaled(self, factor: float, basis: Literal["corrected", "measured"]) -> SpeedEstimate:
        return SpeedEstimate(self.tokens_per_s * factor, self.tokens_per_s_full * factor, basis,
                             self.bandwidth_known, self.threads, self.limited_by)

    def label(self) -> str:
        """Short, for a table cell: "≈ 23 tok/s", "≈ 3 tok/s (slow)"."""
        text = f"≈ {format_rate(self.tokens_per_s)} tok/s"
        return f"{text} (slow)" if self.slow else text

    def sentence(self) -> str:
        """One sentence for a tooltip or an explanation (says "slow" when it is)."""
        how = {"estimate": "estimated from memory bandwidth", "corrected": "estimated, corrected by what this "
               "machine measured", "measured": "measured on this machine"}[self.basis]
        text = (f"About {format_rate(self.tokens_per_s)} tokens/s at the start of a chat and "
                f"{format_rate(self.tokens_per_s_full)} with the context full ({how}")
        if not self.bandwidth_known:
            text += "; the memory bandwidth is a guess"
        text += ")."
        return f"Slow: {text[0].lower()}{text[1:]}" if self.slow else text


def format_rate(x: float) -> str:
    return f"{x:.1f}" if x < 10 else f"{x:.0f}"


def estimate_speed(
    layout: ModelLayout,
    hw: Hardware,
    gpu: GPU | None,
    n_gpu_layers: int,
    n_ctx: int,
    threads: int,
    type_k: str = "f16",
    type_v: str = "f16",
    model: SpeedModel | None = None,
) -> SpeedEstimate:
    """Expected decode speed of ``layout`` placed with ``n_gpu_layers`` on ``gpu`` (or the CPU)."""
    model = model or speed_model()
    ram_bw, ram_known = ram_bandwidth(hw, threads)
    if gpu is not None and n_gpu_layers > 0:
        gpu_bw, gpu_known = gpu_bandwidth(gpu, hw)
    else:
        gpu_bw, gpu_known = 1.0, True

    def seconds(fill: int) -> tuple[float, float, float, float]:
        work = decode_work(layout, n_gpu_layers if gpu is not None else 0, fill, type_k, type_v)
        host = model.gpu.host_s if work.gpu_layers or work.gpu_bytes else model.cpu.host_s
        g_layers = work.gpu_layers * model.gpu.layer_s if work.gpu_bytes else 0.0
        g_bytes = work.gpu_bytes * model.gpu.inverse_efficiency / gpu_bw if work.gpu_bytes else 0.0
        c = model.cpu.seconds(work.cpu_layers, work.cpu_bytes, ram_bw) if work.cpu_bytes else 0.0
        return host, g_layers, g_bytes, c

    start = seconds(min(n_ctx, START_FILL))
    full = seconds(n_ctx)
    host, g_layers, g_bytes, c = start
    parts = {"memory bandwidth": g_bytes, "per-layer overhead": g_layers, "the CPU part": c}
    if gpu is None or n_gpu_layers <= 0:
        parts = {"memory bandwidth": c}
    limited_by = max(parts, key=lambda k: parts[k])
    known = ram_known if (gpu is None or n_gpu_layers <= 0 or c > 0) else gpu_known
    if gpu is not None and n_gpu_layers > 0 and c > 0:
        known = ram_known and gpu_known
    return SpeedEstimate(1.0 / sum(start), 1.0 / sum(full), "estimate", known, threads, limited_by)


# ------------------------------------------------------------------------------------- correction


@dataclass(frozen=True)
class MeasuredSpeed:
    """One reply's decode speed as the speed log keeps it (see :mod:`gemmadesk.core.speed_log`)."""

    model_file: str
    file_bytes: int
    placement: Placement
    gpu_layers: int
    cpu_layers: int
    gpu_bytes: int
    cpu_bytes: int
    threads: int
    tokens_per_s: float
    tokens: int


def predicted_for(m: MeasuredSpeed, hw: Hardware, model: SpeedModel | None = None) -> float:
    """What the uncorrected estimate says for a measured reply's work on this hardware."""
    model = model or speed_model()
    ram_bw, _ = ram_bandwidth(hw, m.threads)
    gpu = hw.best_gpu
    gpu_bw = gpu_bandwidth(gpu, hw)[0] if gpu is not None else 1.0
    t = model.cpu.host_s if m.placement == "cpu" else model.gpu.host_s
    if m.gpu_bytes:
        t += m.gpu_layers * model.gpu.layer_s + m.gpu_bytes * model.gpu.inverse_efficiency / gpu_bw
    if m.cpu_bytes:
        t += model.cpu.seconds(m.cpu_layers, m.cpu_bytes, ram_bw)
    return 1.0 / t if t > 0 else 0.0


MIN_FACTOR, MAX_FACTOR = 0.2, 5.0
RECENT = 12  # the latest measurements per placement that count


def correction_factors(measured: Sequence[MeasuredSpeed], hw: Hardware) -> dict[Placement, float]:
    """Per placement, the median of measured / estimated over this machine's latest replies (clamped)."""
    out: dict[Placement, float] = {}
    for placement in ("cpu", "gpu", "split"):
        ratios = []
        for m in [x for x in measured if x.placement == placement][-RECENT:]:
            p = predicted_for(m, hw)
            if p > 0 and m.tokens_per_s > 0:
                ratios.append(m.tokens_per_s / p)
        if ratios:
            ratios.sort()
            mid = len(ratios) // 2
            median = ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2
            out[placement] = min(max(median, MIN_FACTOR), MAX_FACTOR)
    return out


def measured_for(
    measured: Sequence[MeasuredSpeed], model_file: str, file_bytes: int, placement: Placement, threads: int
) -> float | None:
    """The median measured speed of exactly this file with this placement and thread count, if any."""
    speeds = sorted(m.tokens_per_s for m in measured[-200:]
                    if m.model_file == model_file and m.file_bytes == file_bytes and m.placement == placement
                    and m.threads == threads)
    if not speeds:
        return None
    mid = len(speeds) // 2
    return speeds[mid] if len(speeds) % 2 else (speeds[mid - 1] + speeds[mid]) / 2
