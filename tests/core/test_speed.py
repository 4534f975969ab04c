"""Expected decode speed: the model, its calibration table and error, and the correction by measurements."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from gemmadesk.core.catalog import load_catalog
from gemmadesk.core.fit import FitOptions, Verdict, entry_layout, plan_entry, recommend
from gemmadesk.core.gguf_info import read_layout
from gemmadesk.core.hardware import GPU, Hardware
from gemmadesk.core.speed import (
    CalibrationRow,
    MeasuredSpeed,
    calibration_rows,
    correction_factors,
    decode_work,
    error_table,
    estimate_speed,
    fit_device,
    parse_calibration,
    ram_bandwidth,
    speed_model,
)

ROOT = Path(__file__).resolve().parents[2]
GiB = 2**30


def cpu_machine(ram_gib: float = 24, cores: int = 2, bw_1t: float = 8e9, bw_all: float = 9e9) -> Hardware:
    return Hardware("Linux", "x86_64", "cpu", cores, cores, int(ram_gib * GiB), int(ram_gib * 0.95 * GiB),
                    ram_bandwidth_1t_bytes_s=bw_1t, ram_bandwidth_bytes_s=bw_all, ram_bandwidth_threads=cores)


def rtx4090_machine() -> Hardware:
    gpu = GPU("NVIDIA GeForce RTX 4090", "nvidia", "discrete", 24 * GiB, 23 * GiB, "nvml", 0, True, "CUDA")
    return replace(cpu_machine(64, 16, 12e9, 60e9), gpus=(gpu,))


# ------------------------------------------------------------------------------------------ what a token reads


def test_a_token_of_the_moe_reads_only_its_experts() -> None:
    catalog = load_catalog()
    moe = entry_layout(catalog.find("26b-a4b"), catalog)
    dense = entry_layout(catalog.find("31b"), catalog)
    moe_read = decode_work(moe, 0, 512).cpu_bytes
    # 8 of 128 experts: about 2-3 GB of a 14 GB file; a dense model reads nearly its whole file.
    assert 1.5 * GiB < moe_read < 3.0 * GiB < moe.file_size
    assert decode_work(dense, 0, 512).cpu_bytes > 0.9 * dense.file_size


def test_per_layer_embeddings_are_looked_up_not_read() -> None:
    """E2B's file is mostly per-layer-embedding tables that a token only indexes: it reads far less."""
    catalog = load_catalog()
    e2b = entry_layout(catalog.find("e2b"), catalog)
    assert decode_work(e2b, 0, 512).cpu_bytes < 0.55 * e2b.file_size


def test_kv_reads_grow_with_the_context_and_sliding_layers_stop_at_the_window() -> None:
    catalog = load_catalog()
    layout = entry_layout(catalog.find("12b"), catalog)
    short, long = decode_work(layout, 0, 1024), decode_work(layout, 0, 65536)
    assert long.cpu_bytes > short.cpu_bytes
    # Only the 8 global layers grow past the 1024-token window: 8 layers x 1 head x 1024 values x 2 bytes.
    assert long.cpu_bytes - short.cpu_bytes == (65536 - 1024) * 8 * 1 * (512 + 512) * 2


def test_gpu_placement_moves_the_bytes_to_the_gpu(gemma3_gguf: Path) -> None:
    layout = read_layout(gemma3_gguf)
    cpu = decode_work(layout, 0, 100)
    gpu = decode_work(layout, layout.n_layer + 1, 100)
    split = decode_work(layout, layout.n_layer // 2, 100)
    assert (cpu.placement, gpu.placement, split.placement) == ("cpu", "gpu", "split")
    assert cpu.cpu_bytes == gpu.gpu_bytes == split.cpu_bytes + split.gpu_bytes
    assert gpu.cpu_layers == 0 and cpu.gpu_layers == 0


# ------------------------------------------------------------------------------------------ the estimate


def test_more_bandwidth_more_speed_and_the_gpu_beats_the_cpu() -> None:
    catalog = load_catalog()
    layout = entry_layout(catalog.find("12b"), catalog)
    slow = estimate_speed(layout, cpu_machine(bw_1t=5e9, bw_all=5e9), None, 0, 8192, 1)
    fast = estimate_speed(layout, cpu_machine(bw_1t=20e9, bw_all=20e9), None, 0, 8192, 1)
    hw = rtx4090_machine()
    gpu = estimate_speed(layout, hw, hw.gpus[0], layout.n_layer + 1, 8192, 8)
    split = estimate_speed(layout, hw, hw.gpus[0], layout.n_layer // 2, 8192, 8)
    assert slow.tokens_per_s < fast.tokens_per_s < split.tokens_per_s < gpu.tokens_per_s
    assert gpu.tokens_per_s_full < gpu.tokens_per_s  # a full context reads more KV per token
    assert slow.slow and not gpu.slow
    assert "estimated from memory bandwidth" in slow.sentence()


def test_ram_bandwidth_interpolates_between_the_measurements() -> None:
    hw = cpu_machine(cores=8, bw_1t=10e9, bw_all=50e9)
    hw = replace(hw, ram_bandwidth_threads=8)
    assert ram_bandwidth(hw, 1) == (10e9, True)
    assert ram_bandwidth(hw, 8) == (50e9, True)
    assert 10e9 < ram_bandwidth(hw, 4)[0] < 50e9
    assert ram_bandwidth(replace(hw, ram_bandwidth_1t_bytes_s=0.0, ram_bandwidth_bytes_s=0.0), 4)[1] is False


def test_fit_recovers_known_constants() -> None:
    """Rows made from known constants are fitted back to those constants (the fit is not a black box)."""
    truth = (0.002, 0.00005, 1.25)  # host s, per-layer s, 1/efficiency
    rows = []
    for layers, mib, bw in ((18, 250, 10), (35, 1300, 10), (42, 2600, 12), (30, 2200, 20), (60, 16000, 20)):
        t = truth[0] + truth[1] * layers + truth[2] * mib * 2**20 / (bw * 1e9)
        rows.append(CalibrationRow("m", "x", "cpu", "engine", 1, bw, layers, mib, 1 / t))
    model = fit_device(rows)
    assert model is not None
    assert model.host_s == pytest.approx(truth[0], rel=1e-6)
    assert model.layer_s == pytest.approx(truth[1], rel=1e-6)
    assert model.inverse_efficiency == pytest.approx(truth[2], rel=1e-6)


# ------------------------------------------------------------------------------------------ calibration table


def test_shipped_calibration_covers_cpu_and_gpu_and_parses() -> None:
    rows = calibration_rows()
    assert {r.device for r in rows if r.runner == "engine"} == {"cpu", "gpu"}
    assert len({r.machine for r in rows if r.device == "gpu"}) >= 2  # H100 and H200: two bandwidths
    model = speed_model()
    for dm in (model.cpu, model.gpu):
        assert dm.host_s >= 0 and dm.layer_s >= 0 and dm.inverse_efficiency > 0
    with pytest.raises(ValueError, match="version"):
        parse_calibration({"version": 99, "rows": []})


def _documented_rows(text: str) -> dict[tuple[str, str, str, str], tuple[float, float, str, str]]:
    """The error table of docs/benchmarks.md: (model, machine, device, threads) -> (estimate, measured, errors)."""
    section = text.split("## Expected decode speed vs measured", 1)[1].split("\n## ", 1)[0]
    out = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 10 and cells[0] not in ("model",) and not cells[0].startswith("---"):
            est = float(re.sub(r"[^0-9.]", "", cells[6]))
            meas = float(re.sub(r"[^0-9.]", "", cells[7]))
            out[(cells[0], cells[1], cells[2], cells[3])] = (est, meas, cells[8], cells[9])
    return out


def test_documented_error_table_is_what_the_calibration_gives() -> None:
    """docs/benchmarks.md states the estimate's error; recompute it from the calibration table."""
    rows = list(calibration_rows())
    documented = _documented_rows((ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8"))
    computed = error_table(rows)
    assert len(documented) == len(computed)
    for e in computed:
        r = e.row
        model = r.model + (" (llama-bench, not fitted)" if r.runner != "engine" else "")
        doc = documented[(model, r.machine, r.device.upper(), str(r.threads))]
        assert doc[0] == pytest.approx(e.estimated_tok_s, abs=0.051)
        assert doc[1] == pytest.approx(r.measured_tok_s, abs=0.051)
        assert doc[2] == f"{e.error * 100:+.0f} %" and doc[3] == f"{e.loo_error * 100:+.0f} %"
    # The bound the docs promise for what users get (GemmaDesk's own decode, fitted rows).
    fitted = [e for e in computed if e.row.runner == "engine"]
    assert max(abs(e.error) for e in fitted) <= 0.35


def test_calibration_json_is_sorted_data_not_code() -> None:
    data = json.loads((ROOT / "gemmadesk" / "core" / "data" / "speed_calibration.json").read_text(encoding="utf-8"))
    assert data["version"] == 1
    assert all(set(row) >= {"model", "machine", "device", "runner", "measured_tok_s"} for row in data["rows"])


# ------------------------------------------------------------------------------------------ measured corrections


def _record(tps: float, threads: int = 1) -> MeasuredSpeed:
    """A reply of Google's E2B on the CPU, with the work the speed log would file for it."""
    catalog = load_catalog()
    entry = catalog.get("e2b-google-q4_0")
    assert entry.file is not None
    work = decode_work(entry_layout(entry, catalog), 0, 512)
    return MeasuredSpeed(entry.file.filename, entry.file.size_bytes, "cpu", 0, work.cpu_layers, 0, work.cpu_bytes,
                         threads, tps, 64)


def test_measurements_correct_the_estimate_of_every_cpu_row() -> None:
    hw = cpu_machine()
    catalog = load_catalog()
    options = FitOptions()
    before = recommend(hw, catalog, options)
    e2b_estimate = next(p for p in before.plans if p.entry_id == "e2b-google-q4_0").speed
    assert e2b_estimate is not None
    # This machine measured E2B at half the estimate: E2B shows the measurement, the others are halved.
    measured = [_record(e2b_estimate.tokens_per_s / 2, e2b_estimate.threads)] * 3
    factors = correction_factors(measured, hw)
    assert factors["cpu"] == pytest.approx(0.5, rel=0.02)
    after = recommend(hw, catalog, options, measured)
    by_id = {p.entry_id: p for p in after.plans}
    assert by_id["e2b-google-q4_0"].speed.basis == "measured"  # type: ignore[union-attr]
    assert by_id["e2b-google-q4_0"].speed.tokens_per_s == pytest.approx(e2b_estimate.tokens_per_s / 2)  # type: ignore[union-attr]
    old_e4b = next(p for p in before.plans if p.entry_id == "e4b-google-q4_0").speed
    assert by_id["e4b-google-q4_0"].speed.basis == "corrected"  # type: ignore[union-attr]
    assert by_id["e4b-google-q4_0"].speed.tokens_per_s == pytest.approx(old_e4b.tokens_per_s * factors["cpu"])  # type: ignore[union-attr]


def test_absurd_measurements_are_clamped() -> None:
    hw = cpu_machine()
    assert correction_factors([_record(1e-6)], hw)["cpu"] == 0.2
    assert correction_factors([_record(99_999.0)], hw)["cpu"] == 5.0
    assert correction_factors([], hw) == {}


# ------------------------------------------------------------------------------------------ recommendation


def test_a_two_core_cpu_is_never_sold_the_moe_without_hearing_it_is_slow() -> None:
    """Issue 11 item 4: on a 2-thread CPU (this dev VM: ~8 GB/s) "26B-A4B" was recommended with no word
    on speed. Now the best pick's speed is stated, and a slow one is called slow or not picked."""
    hw = cpu_machine(24, 2, 8e9, 9e9)
    rec = recommend(hw, load_catalog(), FitOptions())
    assert rec.best is not None and rec.best.speed is not None
    assert "tokens/s" in rec.explanation
    size = load_catalog().get(rec.best.entry_id).size
    if size == "26B-A4B" or rec.best.speed.slow:
        assert "slow" in rec.explanation
    moe = next(p for p in rec.plans if p.entry_id == "26b-a4b-google-q4_0")
    assert moe.verdict is Verdict.CPU and moe.speed is not None and moe.speed.slow


def test_when_everything_is_slow_the_fastest_is_picked() -> None:
    hw = cpu_machine(24, 1, 1e9, 1e9)  # 1 GB/s: nothing reaches reading speed
    rec = recommend(hw, load_catalog(), FitOptions())
    assert rec.best is not None and rec.best.speed is not None and rec.best.speed.slow
    fitting = [p for p in rec.plans if p.fits and p.fits_now and p.speed is not None]
    assert rec.best.speed.tokens_per_s == max(p.speed.tokens_per_s for p in fitting)  # type: ignore[union-attr]
    assert "Every model that fits is slow on this machine" in rec.explanation


def test_plans_carry_a_speed_only_where_they_run() -> None:
    hw = cpu_machine(4, 2)
    plan = plan_entry(load_catalog().find("31b"), hw, FitOptions())
    assert plan.verdict is Verdict.TOO_LARGE and plan.speed is None


# ------------------------------------------------------------------------------------------ threads


def test_decode_leaves_one_core_for_everything_else() -> None:
    """Issue 11 item 12: on 2 cores with one busy elsewhere, 2 threads decoded at 8 tok/s, 1 thread at 34."""
    import psutil

    from gemmadesk.core.engine import default_threads
    from gemmadesk.core.hardware import decode_threads

    assert [decode_threads(c) for c in (1, 2, 4, 16)] == [1, 1, 3, 15]
    assert default_threads() == decode_threads(psutil.cpu_count(logical=False) or 1)
    # The fit list's speed estimate assumes the same count the engine will use.
    plan = plan_entry(load_catalog().find("e2b"), cpu_machine(24, 4), FitOptions())
    assert plan.speed is not None and plan.speed.threads == 3
