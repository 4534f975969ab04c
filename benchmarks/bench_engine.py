#!/usr/bin/env python3
"""The engine's speed, KV-prefix reuse and history cost, each against a reference in the same run.

1. Decode and prefill speed (issue 15): ``Engine.chat_stream`` vs llama.cpp's own ``llama-bench`` (built
   from the very llama.cpp that llama-cpp-python vendors, run on the same shared libraries; see
   llama_ref.py) vs a bare ``Llama.generate`` loop, same thread count, rounds interleaved
   (decode_compare.py): on the real Gemma 3 270M, and, if the Gemma 4 vocabulary is available, on
   synthetic Gemma-4-architecture GGUFs: "tiny" (a huge vocabulary on a tiny network: shows the
   per-token overhead) and the E2B shape (Q4_0). Target: engine ≥ 0.95 × llama-bench.
2. Time to first token on turn 2 of a chat: with the KV prefix of turn 1 reused (the engine's normal
   path) vs re-processing the whole prompt (cache reset before the turn).
3. History: tokens/s while the reply is saved with ``PartialSaver`` (one UPDATE per second) and finished
   in SQLite, vs no history; plus the cost of one ``update_partial`` (what saving per token would cost).
4. This CPU's memory bandwidth (a large numpy copy), for tok/s vs the physical limit.

    python3 benchmarks/bench_engine.py [--runs 5] [--tokens 64] [--threads 1] [--no-e2b]

The first run builds llama-bench into ~/.cache/gemmadesk-bench (minutes) and writes the synthetic
E2B file there (2.7 GB).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from decode_compare import Comparison, bytes_per_token, compare, loop_split  # noqa: E402
from llama_ref import build, cache_dir  # noqa: E402

from gemmadesk.core.engine import (  # noqa: E402
    ChatMessage,
    DirectLoadSettings,
    Engine,
    ReplyDone,
    SamplingParams,
    TextChunk,
)
from gemmadesk.core.history import HistoryStore, PartialSaver  # noqa: E402

PROMPT = [ChatMessage("user", "Write a long, detailed story about a lighthouse keeper and the sea.")]


def gemma3_path() -> Path:
    from tests.support.assets import gemma3_gguf

    return gemma3_gguf()


def synthetic(size: str) -> Path | None:
    """The synthetic Gemma 4 GGUF of ``size`` (Q4_0), written once into the benchmark cache."""
    try:
        from tests.support.synth_gemma4 import find_vocab, write_gemma4_gguf

        find_vocab()
    except (ImportError, FileNotFoundError) as exc:
        print(f"skipping the synthetic Gemma 4 {size}: {exc}")
        return None
    path = cache_dir().parent / f"gemma4-{size}-q4_0.gguf"
    if not path.exists():
        tmp = path.with_suffix(".tmp")
        write_gemma4_gguf(tmp, size, qtype="Q4_0")
        tmp.rename(path)
    return path


SAVE_SECONDS = [0.0]  # time spent inside PartialSaver.add, summed over a benchmark


def engine_reply(engine: Engine, n_tokens: int, seed: int, saver: PartialSaver | None = None) -> ReplyDone:
    engine._native_model().reset()  # benchmark-only reach: every reply starts from an empty KV cache
    done = None
    stop = threading.Event()
    for event in engine.chat_stream(PROMPT, SamplingParams(max_tokens=n_tokens, seed=seed), stop):
        if isinstance(event, TextChunk) and saver is not None:
            started = time.perf_counter()
            saver.add(event.kind, event.text)
            SAVE_SECONDS[0] += time.perf_counter() - started
        elif isinstance(event, ReplyDone):
            done = event
    assert done is not None
    return done


def turn2_ttft(engine: Engine, reuse: bool) -> tuple[float, int, int]:
    system = ChatMessage("system", "You are a patient teacher. " + "Explain things step by step. " * 60)
    history = [system, ChatMessage("user", "What is a lighthouse?")]
    first = list(engine.chat_stream(history, SamplingParams(max_tokens=32, seed=1)))[-1]
    assert isinstance(first, ReplyDone)
    history += [ChatMessage("assistant", first.answer), ChatMessage("user", "And who keeps it?")]
    if not reuse:
        engine._native_model().reset()
    done = list(engine.chat_stream(history, SamplingParams(max_tokens=4, seed=1)))[-1]
    assert isinstance(done, ReplyDone)
    s = done.stats
    return s.time_to_first_token_s, s.prompt_tokens, s.prompt_tokens_evaluated


def update_cost_ms(store: HistoryStore, msg_id: int, n: int = 200) -> float:
    started = time.perf_counter()
    for i in range(n):
        store.update_partial(msg_id, "word " * i, "")
    return (time.perf_counter() - started) / n * 1000


def median(values: list[float]) -> float:
    return statistics.median(values)


def cpu_bandwidth_gbps(n_bytes: int = 1 << 30, runs: int = 5) -> float:
    """Memory bandwidth of one core copying a 1 GiB buffer (bytes read + written ÷ time), best of ``runs``."""
    import numpy as np

    a = np.ones(n_bytes, dtype=np.uint8)
    b = np.empty_like(a)
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        np.copyto(b, a)
        best = min(best, time.perf_counter() - started)
    return 2 * n_bytes / best / 1e9


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="llama.cpp threads (default 1: on a shared machine, 2 threads spinning on 2 cores make every "
        "number depend on the other jobs; one thread keeps the ratios readable)",
    )
    ap.add_argument("--no-e2b", action="store_true", help="skip the synthetic E2B (2.7 GB, slow on a CPU)")
    args = ap.parse_args()
    bin_dir = build()
    print(f"llama-bench: {bin_dir}")

    speed: list[Comparison] = []
    models = [("Gemma 3 270M Q4_K_M (real)", gemma3_path(), args.runs, args.tokens)]
    tiny = synthetic("tiny")
    if tiny:
        models.append(("synthetic Gemma 4 tiny (262k vocabulary)", tiny, args.runs, args.tokens))
    e2b = None if args.no_e2b else synthetic("E2B")
    if e2b:
        models.append(("synthetic Gemma 4 E2B Q4_0", e2b, max(3, args.runs // 2), min(args.tokens, 32)))
    for label, path, rounds, n_gen in models:
        print(f"== {label}")
        result = compare(path, threads=args.threads, n_gpu_layers=0, flash_attn=False, n_ctx=4096, rounds=rounds,
                         n_gen=n_gen, bin_dir=bin_dir, alt_device_sampling="1")
        result.model = label
        speed.append(result)
        print(result.summary())

    splits = []
    for label, path, _rounds, _n in models:
        split = loop_split(path, threads=args.threads)
        splits.append((label, split))
        print(f"per-token split, {label}: " + ", ".join(f"{k} {v:.3f} ms" for k, v in split.items()))

    engine = Engine()
    report = engine.load(DirectLoadSettings(model_path=str(gemma3_path()), n_ctx=4096, n_threads=args.threads))
    print(f"loaded {report.model_name}: {report.n_threads} threads, n_ctx {report.n_ctx}")
    engine_reply(engine, 16, seed=99)  # warm-up

    with_reuse, without = [], []
    for _ in range(args.runs):
        with_reuse.append(turn2_ttft(engine, reuse=True))
        without.append(turn2_ttft(engine, reuse=False))
    ttft_reuse = median([r[0] for r in with_reuse])
    ttft_full = median([r[0] for r in without])
    prompt_tokens, evaluated = with_reuse[-1][1], with_reuse[-1][2]
    print(
        f"turn-2 TTFT: reuse {ttft_reuse * 1000:.0f} ms ({evaluated}/{prompt_tokens} tokens evaluated), "
        f"full {ttft_full * 1000:.0f} ms"
    )

    with tempfile.TemporaryDirectory() as tmp:
        store = HistoryStore(Path(tmp) / "bench.sqlite3")
        conv = store.create_conversation()
        no_hist, with_hist, hist_ratios = [], [], []
        SAVE_SECONDS[0], reply_seconds = 0.0, 0.0
        for run in range(args.runs):
            no_hist.append(engine_reply(engine, args.tokens, seed=run).stats.generated_tokens_per_s)
            msg_id = store.begin_reply(conv.id)
            saver = PartialSaver(store, msg_id, interval_s=1.0)
            done = engine_reply(engine, args.tokens, seed=run, saver=saver)
            started = time.perf_counter()
            store.finish_reply(msg_id, done.answer, done.thoughts, done.stats.to_dict())
            SAVE_SECONDS[0] += time.perf_counter() - started
            reply_seconds += done.stats.total_s
            with_hist.append(done.stats.generated_tokens_per_s)
            hist_ratios.append(with_hist[-1] / no_hist[-1])
        per_update = update_cost_ms(store, store.begin_reply(conv.id))
        store.close()
    nh, wh, hist_ratio = median(no_hist), median(with_hist), median(hist_ratios)
    save_share = SAVE_SECONDS[0] / reply_seconds
    print(
        f"history: without {nh:.1f} tok/s, with {wh:.1f} tok/s (pair ratio {hist_ratio:.3f}), "
        f"saving took {save_share:.3%} of reply time, one UPDATE {per_update:.2f} ms"
    )
    engine.unload()
    bandwidth = cpu_bandwidth_gbps()
    print(f"CPU copy bandwidth: {bandwidth:.1f} GB/s")
    write_results(
        args,
        report.n_threads,
        speed,
        (ttft_reuse, ttft_full, prompt_tokens, evaluated),
        (nh, wh, hist_ratio, save_share),
        per_update,
        bandwidth,
        splits,
    )
    return 0


def _split_ratio(sp: dict[str, float]) -> float:
    return sp["decode"] / (sp["decode"] + sp["sample_default"] + sp["text"])


def _met(value: float, target: float) -> str:
    return "yes" if value >= target else "**no**"


def speed_table(speed: list[Comparison], bandwidth_gbps: float) -> list[str]:
    rows = [
        "| Model | llama-bench tg | bare `Llama.generate`, greedy | engine, greedy | engine, default sampling "
        "| same, top-k in the graph | engine ÷ llama-bench (median; best) | llama-bench pp512 | engine prompt "
        "| prompt ÷ pp512 (median; best) | memory limit |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in speed:
        s = c.summary()
        limit = f"{bandwidth_gbps * 1e9 / bytes_per_token(Path(c.path)):.0f} tok/s"
        rows.append(
            f"| {c.model} | {s['lb_tg']:.1f} | {s['bare_tg']:.1f} ({s['ratio_bare_tg']:.2f}) "
            f"| {s['eng_tg_greedy']:.1f} ({s['ratio_eng_tg_greedy']:.2f}) | {s['eng_tg']:.1f} "
            f"| {s.get('eng_tg_dev1', float('nan')):.1f} ({s.get('ratio_eng_tg_dev1', float('nan')):.2f}) "
            f"| {s['ratio_eng_tg']:.2f}; {s['best_ratio_eng_tg']:.2f} "
            f"| {s['lb_pp']:.0f} | {s['eng_pp']:.0f} "
            f"| {s['ratio_eng_pp']:.2f}; {s['best_ratio_eng_pp']:.2f} "
            f"| {limit} |"
        )
    return rows


def write_results(
    args: argparse.Namespace,
    threads: int | None,
    speed: list[Comparison],
    turn2: tuple[float, float, int, int],
    hist: tuple[float, float, float, float],
    per_update: float,
    bandwidth: float,
    splits: list[tuple[str, dict[str, float]]],
) -> None:
    ttft_reuse, ttft_full, prompt_tokens, evaluated = turn2
    nh, wh, hist_ratio, save_share = hist
    rows = [
        "| Measure | Value | Target | Met |",
        "|---|---|---|---|",
        f"| Turn-2 time to first token, re-processing the prompt | {ttft_full * 1000:.0f} ms | | |",
        f"| Turn-2 time to first token, KV prefix reused ({evaluated} of {prompt_tokens} prompt tokens "
        f"evaluated) | {ttft_reuse * 1000:.0f} ms | | |",
        f"| Speed-up from reuse | {ttft_full / ttft_reuse:.1f}× | > 1 | {'yes' if ttft_full > ttft_reuse else 'no'} |",
        f"| Generation without history | {nh:.1f} tok/s | | |",
        f"| Generation saving to history (UPDATE each 1 s + final) | {wh:.1f} tok/s | | |",
        f"| Ratio with / without history (noisy: back-to-back pairs on a shared machine) | {hist_ratio:.3f} | | |",
        f"| Share of reply time spent saving (measured around each save call) | {save_share:.3%} | ≤ 1% | "
        f"{'yes' if save_share <= 0.01 else '**no**'} |",
        f"| One `update_partial` (a save per token would cost this per token) | {per_update:.2f} ms | | |",
    ]
    now = dt.datetime.now(dt.UTC)
    text = "\n".join(
        [
            "## Engine (`bench_engine.py`)",
            "",
            f"Command: `python3 benchmarks/bench_engine.py --runs {args.runs} --tokens {args.tokens} "
            f"--threads {args.threads}` —",
            f"{now:%Y-%m-%d %H:%M} UTC, {platform.platform()}, {os.cpu_count()} CPUs ({threads} threads used). "
            "The machine is shared with other engineers' jobs: absolute numbers move from run to run; read "
            "the ratios, each the median over rounds of (column ÷ llama-bench in the same round).",
            "",
            "### Decode and prompt speed vs llama.cpp's own `llama-bench` (CPU)",
            "",
            "Whole replies, tok/s; in brackets the ratio to llama-bench tg in the same round. llama-bench is",
            "built from the llama.cpp vendored in llama-cpp-python's sdist (`benchmarks/llama_ref.py`) and runs",
            "on the installed package's own shared libraries, so only the driving loop differs. It samples",
            "nothing, so it is the ceiling for any loop that picks tokens from the 262,144-entry vocabulary.",
            "*Default sampling* is temperature 1 / top-k 64 / top-p 0.95 (what users run); *top-k in the",
            "graph*: the same with `GEMMADESK_DEVICE_SAMPLING=1` (llama.cpp's backend sampling on the CPU",
            "backend; the default on a GPU). *Engine prompt*: prompt tokens ÷ time from `chat_stream` to the",
            "first token for a ~512-token prompt (template and tokenizer included). *Memory limit*: this CPU's",
            f"measured copy bandwidth ({bandwidth:.1f} GB/s, one core, read + write) ÷ weight bytes read per token. "
            f"Replies of up to {args.tokens} tokens (E2B: 32), n_ctx 4096, flash attention off.",
            "",
            *speed_table(speed, bandwidth),
            "",
            "On this shared machine these whole-reply ratios move by ±10-20 % from run to run and even within a",
            "round (other engineers' builds and tests start and stop): more than the effect to be measured, in",
            "both directions. So the loop is also timed from inside (`decode_compare.loop_split`, medians per",
            "token, immune to the drift): llama.cpp's decode of one token (what llama-bench tg times), llama.cpp's",
            "sampler on its logits (a pass over all 262,144 of them on the CPU, in C: what separates any sampling",
            "loop from llama-bench), and the engine's own text work per token (detokenizer, thought parser,",
            "events; ~0.1 ms here because the decode just pushed the interpreter's data out of the caches).",
            "*Engine ÷ llama-bench* = decode ÷ (decode + sampler + text work): the target is ≥ 0.95.",
            "",
            "| Model | decode, ms/token | sampler, greedy | sampler, default sampling | engine text work "
            "| **engine ÷ llama-bench** (default sampling) |",
            "|---|---:|---:|---:|---:|---:|",
            *[
                f"| {label} | {sp['decode']:.2f} | {sp['sample_greedy']:.3f} | {sp['sample_default']:.3f} "
                f"| {sp['text'] * 1000:.0f} µs | **{_split_ratio(sp):.3f}** {_met(_split_ratio(sp), 0.95)} |"
                for label, sp in splits
            ],
            "",
            "The synthetic *tiny* model is a 262,144-token vocabulary on a 4-layer, 32-wide network: a decode",
            "step costs less than 5 ms, so the sampler's fixed ~0.55 ms shows; it is there to expose per-token",
            "overhead, not a model anyone runs. Top-k in the graph does not pay on a CPU (ggml's CPU top-k is a",
            "single-threaded partial sort), so the engine keeps it for GPUs.",
            "",
            "### KV-prefix reuse and history (Gemma 3 270M)",
            "",
            *rows,
            "",
            "Turn 2 re-renders the whole conversation; the engine finds the common prefix with the cached",
            "tokens and evaluates only the rest. Replies are saved once a second as one-row UPDATEs,",
            "so the history costs nothing measurable per token.",
        ]
    )
    out = ROOT / "benchmarks" / "results" / "engine.md"
    out.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
