#!/usr/bin/env python3
"""Turn benchmarks/gpu/results/decode_gpu.jsonl (decode_bench.py's records, tagged by run) into the
"GPU decode" section of docs/benchmarks.md.

    python3 benchmarks/gpu/report_decode.py benchmarks/gpu/results/decode_gpu.jsonl > benchmarks/results/gpu_decode.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _f(v: Any, fmt: str = ".0f") -> str:
    return format(v, fmt) if isinstance(v, (int, float)) else "–"


def main(argv: list[str]) -> int:
    rows = [json.loads(line) for line in Path(argv[0]).read_text().splitlines() if line.strip()]
    runs: dict[int, str] = {r["run"]: r["build"] for r in rows}
    bw = {r["run"]: r for r in rows if r["kind"] == "bandwidth"}
    first = rows[0]
    out = [
        "## GPU: decode and prompt speed vs llama.cpp's own `llama-bench` (NVIDIA H200)",
        "",
        f"`bash benchmarks/gpu/run_gpu.sh decode` on the device machine ({first['gpu']}, 16 CPU cores), "
        f"{first['when']}: llama.cpp built once from the sources vendored in llama-cpp-python 0.3.36 "
        "(`benchmarks/gpu/build_llama.sh`: shared libraries, CUDA sm_90; `llama-bench`, `llama-completion` and "
        "the `llama_cpp` package all use those very libraries), then `benchmarks/gpu/decode_bench.py`. "
        "Synthetic Gemma-4-architecture GGUFs with the published shapes (Q4_0, random weights, real "
        "262,144-token vocabulary), all layers on the GPU, flash attention on, n_ctx 8192, 128 generated "
        "tokens, medians of 3 interleaved rounds; each ratio is the median of per-round ratios to "
        "llama-bench in the same round. Not a shared machine.",
        "",
        "Builds: " + "; ".join(f"run {k}: {v}" for k, v in sorted(runs.items())) + ".",
        "",
        "| run | model | llama-bench tg128 | bare `Llama.generate` greedy | engine greedy | engine, default "
        "sampling | same, top-k on the CPU | llama-bench pp512 | engine prompt (512 tokens) | same reply, device "
        "vs CPU top-k |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|:-:|",
    ]
    for r in rows:
        if r["kind"] != "compare" or "error" in r:
            continue
        out.append(
            f"| {r['run']} | {r['size']} | {_f(r['lb_tg'])} | {_f(r['bare_tg'])} ({_f(r['ratio_bare_tg'], '.2f')}) "
            f"| {_f(r['eng_tg_greedy'])} (**{_f(r['ratio_eng_tg_greedy'], '.2f')}**) "
            f"| {_f(r['eng_tg'])} (**{_f(r['ratio_eng_tg'], '.2f')}**) "
            f"| {_f(r.get('eng_tg_dev0'))} ({_f(r.get('ratio_eng_tg_dev0'), '.2f')}) "
            f"| {_f(r['lb_pp'])} | {_f(r['eng_pp'])} ({_f(r['ratio_eng_pp'], '.2f')}) "
            f"| {r.get('same_reply_device_vs_cpu_sampling', '')} |"
        )
    out += [
        "",
        "*Engine*: `Engine.chat_stream`, whole streamed path (template, native loop, detokenizer, thought "
        "parser, events). *Default sampling*: temperature 1, top-k 64, top-p 0.95, seed 0; top-k runs in the "
        "model's graph on the GPU (llama.cpp backend sampling), the rest of the chain on the 64 candidates on "
        "the CPU. *Top-k on the CPU*: the same reply with `GEMMADESK_DEVICE_SAMPLING=0` (the 262,144 logits "
        "copied back and partially sorted on the host, as `Llama.generate` and llama-server do by default). "
        "*Engine prompt*: prompt tokens ÷ time from the `chat_stream` call to the first token (template, "
        "tokenizer and the first sample included); llama-bench pp512 varies a lot between repetitions here "
        "(±25 %), so read that column as \"not slower\".",
    ]
    out += ["", "Where the time per token goes (ms; from the medians above):", ""]
    out += ["| run | model | llama-bench | + engine, greedy | + engine, top-k on the GPU | + top-k on the CPU |",
            "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        if r["kind"] != "compare" or "error" in r:
            continue
        base = 1000 / r["lb_tg"]
        out.append(f"| {r['run']} | {r['size']} | {base:.2f} | +{1000 / r['eng_tg_greedy'] - base:.2f} "
                   f"| +{1000 / r['eng_tg'] - base:.2f} | +{1000 / r['eng_tg_dev0'] - base:.2f} |")
    out += [
        "",
        "llama-bench decodes without sampling anything. Greedy, the engine adds about 0.1 ms per token: the argmax"
        " in the graph, copying the chosen id back, and the Python loop (whose text work overlaps the GPU: the "
        "next decode is queued before the token is turned into text). Top-k 64 adds the top-k over 262,144 logits "
        "on the GPU, 0.1–0.2 ms: with the CUDA 13.0 toolkit's CCCL 3.0, ggml falls back to a full segmented sort; "
        "with CCCL ≥ 3.2 headers (run 2) it uses cub's one-pass `DeviceTopK`, which brought E2B to greedy's cost "
        "but left 12B's difference at ~0.1 ms (three rounds are too few to split differences this small; the "
        "remaining cost is llama.cpp's, not Python's). Copying the logits back and sorting them on the CPU (what "
        "`Llama.generate` did) costs 0.7–0.9 ms. In run 2 one of the three E2B replies differed between device and"
        " CPU top-k (`DeviceTopK` is asked for unsorted, non-deterministic output; a tie in the random model's "
        "logits or a differing kernel choice between the two contexts would do it; not investigated further for "
        "lack of device time). The same comparison on the CPU backend and on the real Gemma 3 270M is exact "
        "(tests/engine/test_llama_adapter.py).",
        "",
        "### llama-bench for every size (run 1; FIT calibrates its speed estimates with these)",
        "",
        "Physical limit = measured device copy bandwidth (bytes read + written) ÷ weight bytes read per token "
        "(every matrix; MoE experts only for the 8 of 128 used; the tied output projection reads the whole "
        "embedding table).",
        "",
        "| model | pp512 tok/s | tg128 tok/s | weights read per token | limit at the measured bandwidth | tg ÷ limit |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    b1 = bw.get(1, {})
    gbps = b1.get("gbps_read_write")
    for r in rows:
        if r["kind"] != "llama_bench" or r["run"] != 1 or "error" in r:
            continue
        nbytes = b1.get("bytes_per_token", {}).get(r["size"])
        limit = gbps * 1e9 / nbytes if gbps and nbytes else None
        out.append(
            f"| {r['size']} | {r['pp512']:,.0f} ± {r['pp512_sd']:,.0f} | {r['tg128']:.1f} ± {r['tg128_sd']:.1f} "
            f"| {nbytes / 1e9:.2f} GB | {_f(limit)} tok/s | {_f(r['tg128'] / limit if limit else None, '.0%')} |"
        )
    out += ["", f"Device copy bandwidth measured in the run: {_f(gbps)} GB/s (datasheet 4,800). llama.cpp itself "
            "reaches 12 % (E2B) to 41 % (31B) of that limit: a decode step is hundreds of small kernels (per "
            "layer: norms, projections, attention, feed-forward), so small models are bound by per-kernel "
            "latency rather than by bytes; the larger the matrices, the closer to the limit. GemmaDesk "
            "adds the few percent in the table above on top of that."]
    ft = [r for r in rows if r["kind"] == "first_token"]
    if ft:
        out += [
            "",
            "### From \"Load\" to the first token (run 1)",
            "",
            "*Cold*: page cache dropped (`/proc/sys/vm/drop_caches`) before each process. *Engine, in the app*: "
            "`Engine.load` + `chat_stream` until the first token, llama_cpp already imported (as in the running "
            "app after its first load); *engine process*: a fresh Python process doing import + load + first "
            "token; `llama-completion -n 1` (the classic one-shot `llama-cli`): whole process, its default "
            "warm-up run included.",
            "",
            "| model | page cache | engine, in the app | engine process | llama-completion process |",
            "|---|---|---:|---:|---:|",
        ]
        for r in ft:
            out.append(
                f"| {r['model']} | {'cold' if r['cold'] else 'warm'} | {_f(r.get('load_to_first_token_s'), '.2f')} s "
                f"| {_f(r.get('engine_process_s'), '.2f')} s | {_f(r.get('llama_completion_process_s'), '.2f')} s |"
            )
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
