#!/usr/bin/env python3
"""Expected decode speed (``gemmadesk.core.speed``) vs measured: the calibration table and its error.

The estimate's constants are fitted to ``gemmadesk/core/data/speed_calibration.json`` (rows: model,
machine, device, threads, bandwidth, layers, bytes read per token, measured tokens/s). This script

1. measures rows on this CPU (unless ``--table-only``): the real Gemma 3 270M and synthetic Gemma 4 GGUFs
   (tests/support/synth_gemma4: real vocabulary, random Q4_0 weights) decoded through GemmaDesk's
   ``Engine.chat_stream`` with 1 and 2 threads, alternating (A/B/A/B) because the machine is shared, with
   the RAM read bandwidth measured right before each run (``hardware.measure_ram_bandwidth``);
2. can add GPU rows from a GPU run's results (``--gpu-results FILE --gpu-machine "NVIDIA H100 ..."
   --gpu-bandwidth-gbs 3350``; the jsonl of benchmarks/gpu/, whose ``engine_tps`` is GemmaDesk's decode);
3. writes the rows back (this machine's rows replaced) and the error table (estimated vs measured, fitted
   and leave-one-out) to benchmarks/results/speed.md for docs/benchmarks.md.

    python3 benchmarks/bench_speed.py                       # measure here (tiny, 270M, E2B, E4B)
    python3 benchmarks/bench_speed.py --sizes tiny,E2B,E4B,26B-A4B --tokens 48
    python3 benchmarks/bench_speed.py --table-only          # just recompute the table from the JSON

``tests/core/test_speed.py`` recomputes the same table from the JSON and checks the documented one.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULT = ROOT / "benchmarks" / "results" / "speed.md"
CALIBRATION = ROOT / "gemmadesk" / "core" / "data" / "speed_calibration.json"
MiB = 2**20

from gemmadesk.core.gguf_info import LayerAttention, ModelLayout  # noqa: E402
from gemmadesk.core.speed import CalibrationRow, decode_work, error_table, parse_calibration  # noqa: E402


def synthetic_layout(size: str) -> ModelLayout:
    """The layout ``read_layout`` would read from a synthetic GGUF of this size, without writing it (the
    GPU rows' models are 3-17 GB)."""
    from tests.support.synth_gemma4 import SIZES, _dtype_for, _is_swa, _nbytes, _tensors

    s = SIZES[size]
    layer_bytes, expert_bytes = [0] * s.n_layer, [0] * s.n_layer
    input_bytes = output_bytes = embd = 0
    for name, ne, matrix in _tensors(s):
        n = _nbytes(ne, _dtype_for(matrix, ne, "Q4_0"))
        if name.startswith("blk."):
            i = int(name.split(".")[1])
            layer_bytes[i] += n
            if "_exps." in name:
                expert_bytes[i] += n
        elif name == "output_norm.weight":
            output_bytes += n
        else:
            input_bytes += n
            if name == "token_embd.weight":
                embd = n
    layers = tuple(
        LayerAttention(_is_swa(s, i), i < s.n_layer - s.n_kv_shared,
                       s.n_kv_swa if _is_swa(s, i) else s.n_kv_full,
                       s.head_swa if _is_swa(s, i) else s.head_full, s.head_swa if _is_swa(s, i) else s.head_full)
        for i in range(s.n_layer)
    )
    return ModelLayout("gemma4", f"synthetic {size}", 0, s.n_layer, s.n_embd, s.n_head, 262144, s.n_ctx_train,
                       s.n_swa, s.n_ff, layers, tuple(layer_bytes), input_bytes, output_bytes + embd, True,
                       n_expert=s.n_expert, n_expert_used=s.n_expert_used,
                       layer_expert_bytes=tuple(expert_bytes) if s.n_expert else ())


# ------------------------------------------------------------------------------------------ CPU rows

PROMPT = "Write a long, detailed story about a lighthouse keeper and the sea."


def measure_once(path: Path, threads: int, tokens: int) -> dict[str, Any]:
    from gemmadesk.core.engine import ChatMessage, DirectLoadSettings, Engine, ReplyDone, SamplingParams, TextChunk
    from gemmadesk.core.hardware import measure_ram_bandwidth

    bandwidth = measure_ram_bandwidth(threads)
    engine = Engine()
    try:
        engine.load(DirectLoadSettings(model_path=str(path), n_ctx=2048, n_threads=threads))
        stop = threading.Event()
        list(engine.chat_stream([ChatMessage("user", "Hi")], SamplingParams(max_tokens=4, seed=1), stop))  # warm
        engine._llm.reset()
        done = None
        cpu_first = cpu_last = 0.0
        chunks = 0
        for event in engine.chat_stream([ChatMessage("user", PROMPT)], SamplingParams(max_tokens=tokens, seed=7),
                                        stop):
            if isinstance(event, TextChunk):
                cpu_last = time.thread_time()
                chunks += 1
                if chunks == 1:
                    cpu_first = cpu_last
            elif isinstance(event, ReplyDone):
                done = event
        assert done is not None
        s = done.stats
        # With one thread llama.cpp decodes on this (the calling) thread, so its CPU time is the decode's
        # time as a machine without other jobs would see it; the wall clock counts the other jobs too.
        cpu_rate = (s.completion_tokens - 1) / (cpu_last - cpu_first) if threads == 1 and cpu_last > cpu_first else 0.0
        return {"threads": threads, "bandwidth": bandwidth, "tok_s": s.generated_tokens_per_s, "cpu_tok_s": cpu_rate,
                "tokens": s.completion_tokens, "fill": s.prompt_tokens + s.completion_tokens // 2}
    finally:
        engine.unload()


def cpu_rows(sizes: list[str], rounds: int, tokens: int, machine: str, threads_list: list[int],
             keep: Path | None, gemma3: bool = True) -> list[CalibrationRow]:
    """Rows for this CPU. Each (model, threads) keeps its *best* run (with the bandwidth measured just
    before it): on a shared machine the other jobs only ever slow a run down, so the best run is the
    closest to what the machine can do. With one thread the rate is tokens per CPU-second of the decoding
    thread (llama.cpp decodes on the calling thread), which other processes do not dilute; the wall-clock
    rates are kept in the row's ``source``."""
    from gemmadesk.core.gguf_info import read_layout
    from tests.support.assets import gemma3_gguf
    from tests.support.synth_gemma4 import write_gemma4_gguf

    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("GEMMADESK_BENCH_TMP")) as tmp:
        folder = keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        models: list[tuple[str, Path]] = [("Gemma 3 270M Q4_K_M (real)", gemma3_gguf())] if gemma3 else []
        for size in sizes:
            path = folder / f"gemma4-{size}.gguf"
            if not path.exists():
                print(f"writing synthetic {size} …", flush=True)
                write_gemma4_gguf(path, size=size)
            models.append((f"Gemma 4 {size} Q4_0 (synthetic)", path))
        for name, path in models:
            layout = read_layout(path)
            runs: dict[int, list[dict[str, Any]]] = {t: [] for t in threads_list}
            for r in range(rounds):
                for threads in threads_list if r % 2 == 0 else list(reversed(threads_list)):  # A/B/B/A
                    m = measure_once(path, threads, tokens)
                    runs[threads].append(m)
                    print(f"{name}: {threads} thread(s) {m['tok_s']:.1f} tok/s wall, {m['cpu_tok_s']:.1f} per CPU-s, "
                          f"RAM {m['bandwidth'] / 1e9:.1f} GB/s, {m['tokens']} tokens", flush=True)
            for threads, ms in runs.items():
                key = "cpu_tok_s" if threads == 1 else "tok_s"
                best = max(ms, key=lambda m: m[key])
                all_runs = ", ".join(f"{m['tok_s']:.1f}" for m in ms)
                work = decode_work(layout, 0, int(best["fill"]))
                rows.append(CalibrationRow(
                    model=name, machine=machine, device="cpu", runner="engine", threads=threads,
                    bandwidth_gbs=round(best["bandwidth"] / 1e9, 2),
                    layers=layout.n_layer, read_mib=round(work.cpu_bytes / MiB, 1),
                    measured_tok_s=round(best[key], 2),
                    source=(f"bench_speed.py {dt.date.today()}, best of {len(ms)}"
                            + (" per CPU-second of the decoding thread" if key == "cpu_tok_s" else "")
                            + f"; wall clock {all_runs} tok/s"),
                ))
    return rows


# ------------------------------------------------------------------------------------------ GPU rows


def gpu_rows(results: Path, machine: str, bandwidth_gbs: float) -> list[CalibrationRow]:
    rows = []
    for line in results.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        if not r.get("speed") or not r.get("engine_tps"):
            continue
        layout = synthetic_layout(r["size"])
        work = decode_work(layout, layout.n_layer + 1, 64 + int(r.get("engine_tokens", 128)) // 2)
        rows.append(CalibrationRow(
            model=f"Gemma 4 {r['size']} Q4_0 (synthetic)", machine=machine, device="gpu", runner="engine",
            threads=1, bandwidth_gbs=bandwidth_gbs, layers=work.gpu_layers, read_mib=round(work.gpu_bytes / MiB, 1),
            measured_tok_s=float(r["engine_tps"]), source=f"{results.name}, FA {'on' if r['fa'] else 'off'}",
        ))
    return rows


# ------------------------------------------------------------------------------------------ table


def table_markdown(rows: list[CalibrationRow]) -> str:
    errs = error_table(rows)
    lines = [
        "| model | machine | device | threads | bandwidth | read per token | estimated | measured | error | "
        "error, model left out |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in errs:
        r = e.row
        ref = " (llama-bench, not fitted)" if r.runner != "engine" else ""
        lines.append(
            f"| {r.model}{ref} | {r.machine} | {r.device.upper()} | {r.threads} | {r.bandwidth_gbs:g} GB/s | "
            f"{r.read_mib:,.0f} MiB | {e.estimated_tok_s:.1f} tok/s | {r.measured_tok_s:.1f} tok/s | "
            f"{e.error * 100:+.0f} % | {e.loo_error * 100:+.0f} % |"
        )
    return "\n".join(lines)


def summary(rows: list[CalibrationRow]) -> str:
    from gemmadesk.core.speed import fit_model

    errs = [e for e in error_table(rows) if e.row.runner == "engine"]
    m = fit_model(rows)
    out = []
    for device in ("cpu", "gpu"):
        es = [e for e in errs if e.row.device == device]
        if not es:
            continue
        worst = max(abs(e.error) for e in es)
        worst_loo = max(abs(e.loo_error) for e in es)
        dm = m.device(device)  # type: ignore[arg-type]
        out.append(
            f"- **{device.upper()}** ({len(es)} rows): largest error {worst * 100:.0f} % fitted, "
            f"{worst_loo * 100:.0f} % with the row's own model left out of the fit. Fitted: "
            f"{dm.host_s * 1000:.2f} ms per token, {dm.layer_s * 1e6:.0f} µs per layer, "
            f"{dm.efficiency * 100:.0f} % of the bandwidth."
        )
    return "\n".join(out)


def write_doc(rows: list[CalibrationRow], note: str) -> None:
    RESULT.write_text("\n".join([
        "## Expected decode speed vs measured (`bench_speed.py`)",
        "",
        note,
        "",
        "The fit list's speed column comes from `gemmadesk.core.speed`: per token, a fixed host cost, a cost per "
        "layer and the bytes the token reads (weights it uses — for 26B A4B only 8 of 128 experts — plus the "
        "KV cache) over the device's memory bandwidth. Its three constants per device are fitted to the rows "
        "below (`gemmadesk/core/data/speed_calibration.json`; non-negative least squares on relative error; "
        "`tests/core/test_speed.py` recomputes this table from that file). *Error, model left out* is the "
        "estimate for a row with that row left out of the fit: how far off the estimate is for a model it "
        "was not fitted to. On a user's machine the estimate is further scaled by what GemmaDesk measured "
        "there (`decode_speeds.json` in the data folder), and a model that has run shows its measured speed.",
        "",
        "GPU rows: the H100 run of `benchmarks/gpu/` (GemmaDesk's `Engine.chat_stream`, 128 tokens) and the H200 "
        "numbers of issue 15 (engine rows fitted; `llama-bench` tg128 rows shown for reference only). To add "
        "a run (e.g. the final H200 numbers): add rows to the JSON by hand, or `--gpu-results RESULTS.jsonl "
        "--gpu-machine NAME --gpu-bandwidth-gbs N` for a `benchmarks/gpu/` results file, then "
        "`python3 benchmarks/bench_speed.py --table-only` and `python3 bootstrap.py bench --collect`.",
        "",
        table_markdown(rows),
        "",
        summary(rows),
        "",
    ]), encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="tiny,E2B,E4B", help="synthetic Gemma 4 sizes to measure on the CPU")
    ap.add_argument("--no-gemma3", action="store_true", help="only the synthetic sizes (rows of other models stay)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", default="1", help="thread counts to measure (bench_threads.py compares them)")
    ap.add_argument("--keep", type=Path, help="keep the synthetic GGUFs in this folder (and reuse them)")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--machine", default=None, help="label of this machine in the table")
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--gpu-results", type=Path)
    ap.add_argument("--gpu-machine", default="NVIDIA H100 80GB HBM3")
    ap.add_argument("--gpu-bandwidth-gbs", type=float, default=3350.0)
    args = ap.parse_args()
    data = json.loads(CALIBRATION.read_text(encoding="utf-8"))
    rows = list(parse_calibration(data))
    note = data.get("note", "")
    if args.gpu_results:
        new = gpu_rows(args.gpu_results, args.gpu_machine, args.gpu_bandwidth_gbs)
        rows = [r for r in rows if not (r.machine == args.gpu_machine and r.device == "gpu" and r.runner == "engine")]
        rows += new
    if not args.table_only and not args.gpu_results:
        from gemmadesk.core.hardware import probe

        hw = probe(include_backend=False, measure_bandwidth=False)
        machine = args.machine or f"{hw.cpu_name}, {hw.cpu_cores} cores (shared dev VM)"
        load_before = os.getloadavg()
        new = cpu_rows([s for s in args.sizes.split(",") if s], args.rounds, args.tokens, machine,
                       [int(t) for t in args.threads.split(",")], args.keep, not args.no_gemma3)
        load_after = os.getloadavg()
        replaced = {(r.machine, r.model, r.threads, r.device) for r in new}
        rows = [r for r in rows if (r.machine, r.model, r.threads, r.device) not in replaced] + new
        note = (f"{note} " if args.no_gemma3 and note else "") + (
                f"CPU rows: `python3 benchmarks/bench_speed.py --sizes {args.sizes} --threads {args.threads} "
                f"--rounds {args.rounds} --tokens {args.tokens}{' --no-gemma3' if args.no_gemma3 else ''}` on "
                f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.platform()}; load average "
                f"{load_before[0]:.1f} before, {load_after[0]:.1f} after: other engineers' jobs share the 2 cores, "
                "so the wall clock is slowed several times; one-thread rows therefore count tokens per CPU-second "
                "of the decoding thread (wall-clock rates in each row's `source`).")
    data["rows"] = [r.__dict__ for r in rows]
    data["note"] = note
    CALIBRATION.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    write_doc(rows, note)
    print(table_markdown(rows))
    print(summary(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
