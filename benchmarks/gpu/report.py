#!/usr/bin/env python3
"""Turn benchmarks/gpu/measure.py's gpu_results.jsonl into the GPU section of docs/benchmarks.md.

    python3 benchmarks/gpu/report.py benchmarks/gpu/results/gpu_results.jsonl > benchmarks/results/gpu.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TARGET_REL, TARGET_ABS = 0.10, 150.0  # the estimator's target: within 10 % or 150 MiB


def main(argv: list[str]) -> int:
    rows = [json.loads(line) for line in Path(argv[0]).read_text().splitlines() if line.strip()]
    meta = json.loads(Path(argv[1]).read_text()) if len(argv) > 1 else {}
    ok = [r for r in rows if "error" not in r]
    out = ["## GPU: fit estimate vs what llama.cpp allocates (NVIDIA H100)", ""]
    out.append(f"Produced by `bash benchmarks/gpu/run_gpu.sh build && bash benchmarks/gpu/run_gpu.sh measure` on the "
               f"device machine, then `python3 benchmarks/gpu/report.py benchmarks/gpu/results/gpu_results.jsonl`. "
               f"{meta.get('when', '')} {meta.get('gpu', '')} llama-cpp-python 0.3.36 built with "
               "`-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90`.")
    out.append("")
    out.append("Models are synthetic Gemma-4-architecture GGUFs with the published shapes (random Q4_0 weights, "
               "`tests/support/synth_gemma4.py`), fully offloaded unless noted. *Estimate* is "
               "`fit.estimate(...).gpu_bytes`; *llama.cpp* is the sum of the CUDA buffers llama.cpp reports "
               "(model + KV + compute); *NVML* is what the process added on the device (CUDA context included, "
               "which the planner covers with its 640 MiB per-GPU reserve, so it is compared with estimate + "
               "reserve). Target: within 10 % or 150 MiB.")
    out.append("")
    out.append("| model | ctx | FA | KV | GPU layers | estimate MiB | llama.cpp MiB | error | NVML MiB "
               "| est.+reserve vs NVML |")
    out.append("|---|---:|:-:|:-:|---:|---:|---:|---:|---:|---:|")
    worst = 0.0
    misses = 0
    for r in ok:
        est, real, nv = r["est_gpu_mib"], r["llama_gpu_mib"], r["nvml_delta_mib"]
        err = est - real
        within = abs(err) <= TARGET_ABS or abs(err) <= TARGET_REL * real
        misses += not within
        worst = max(worst, abs(err) / real)
        est_res = est + 640
        note = f" (pretend {r['pretend_vram_gib']} GiB: {r.get('plan_verdict')})" if "pretend_vram_gib" in r else ""
        fa = "on" if r["fa"] else "off"
        out.append(f"| {r['size']}{note} | {r['ctx']:,} | {fa} | {r['kv']} | {r.get('ngl', '')} "
                   f"| {est:,.0f} | {real:,.0f} | {err:+,.0f} ({100 * err / real:+.1f} %){'' if within else ' ✗'} "
                   f"| {nv:,.0f} | {100 * (est_res - nv) / nv:+.1f} % |")
    out.append("")
    out.append(f"{len(ok)} loads, {misses} outside the target, largest error {100 * worst:.1f} %. "
               f"Failed loads: {len(rows) - len(ok)}.")
    speed = [r for r in ok if "speed_ratio" in r]
    if speed:
        out += ["", "### Decode speed: GemmaDesk's engine vs a bare llama-cpp-python loop (same model, same run)", "",
                "| model | ctx | FA | bare tok/s | engine tok/s | ratio |", "|---|---:|:-:|---:|---:|---:|"]
        for r in speed:
            out.append(f"| {r['size']} | {r['ctx']:,} | {'on' if r['fa'] else 'off'} | {r['bare_tps']:.1f} "
                       f"| {r['engine_tps']:.1f} | {r['speed_ratio']:.2f} |")
        out += ["", "128 greedy tokens each; the bare loop is `Llama.generate` with top_k=1."]
    oom = Path(argv[0]).with_name("oom.log")
    if oom.exists():
        text = oom.read_text()
        wanted = ("hog loaded", "ggml_backend_cuda_buffer", "graph_reserve", "gpu used MiB", "OOM RETRY")
        keep = [ln for ln in text.splitlines() if ln.startswith(wanted)]
        out += ["", "### A real GPU out-of-memory at load (`bash benchmarks/gpu/run_gpu.sh oom`)", "",
                "A second llama.cpp instance (the synthetic 31B at 256K context, flash attention) holds ~39 GiB; then "
                "the Engine loads the same 31B with full offload at 256K context without flash attention, which "
                "cannot fit. `cudaMalloc` fails, the Engine retries with fewer GPU layers, loads, answers, and says "
                "so in `LoadReport.notes` (`tests/engine/gpu_oom_check.py`):", "", "```",
                *[ln[:160] + ("…" if len(ln) > 160 else "") for ln in keep], "```"]
    hw = Path(argv[0]).with_name("hw.txt")
    if hw.exists():
        lines = [ln for ln in hw.read_text().splitlines() if not ln.startswith(("ggml_cuda_init", "  Device"))]
        out += ["", "### `gemmadesk hw` on that machine (NVML through nvidia-ml-py, backend from ggml's device list)",
                "", "```", *lines, "```"]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
