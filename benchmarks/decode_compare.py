#!/usr/bin/env python3
"""Decode and prefill speed: GemmaDesk's engine vs llama.cpp's own ``llama-bench`` vs a bare
llama-cpp-python loop, on one model, in one run (issue 15). Used by bench_engine.py (CPU) and
benchmarks/gpu/decode_bench.py (GPU).

Columns (tok/s; medians of ``rounds`` rounds, each round running every column once, back to back):

* ``lb_tg`` / ``lb_pp``: ``llama-bench`` tg<n_gen> / pp512 (one repetition per round; no sampling at all,
  so it is the ceiling for any loop that samples).
* ``bare_tg``: llama-cpp-python's ``Llama.generate`` (what the engine used before), greedy.
* ``eng_tg_greedy``, ``eng_tg``: ``Engine.chat_stream`` greedy, and with Gemma's default sampling
  (temperature 1, top-k 64, top-p 0.95): what a user runs. ``eng_tg_dev0`` / ``eng_tg_dev1``: the same
  with top-k forced onto the CPU / onto the device (``GEMMADESK_DEVICE_SAMPLING``), the alternative to
  the default (device on a GPU, CPU otherwise).
* ``eng_pp``: the engine's prompt rate for a ~512-token prompt (``ReplyStats.prompt_tokens_per_s``:
  from the call to the first token, so template, tokenizer and the first sample are in it).

Each ratio is the median over rounds of (column ÷ llama-bench in that round); ``best_ratio_*`` is the
fastest run of the column ÷ the fastest llama-bench run (on a shared machine the least disturbed runs).
Rounds start at a different column each time, so that a drifting load favours none.
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from llama_ref import llama_bench  # noqa: E402

from gemmadesk.core.engine import ChatMessage, DirectLoadSettings, Engine, ReplyDone, SamplingParams  # noqa: E402

STORY = [ChatMessage("user", "Write a long, detailed story about a lighthouse keeper and the sea.")]


@dataclass
class Comparison:
    model: str
    path: str = ""
    columns: dict[str, list[float]] = field(default_factory=dict)
    ratios: dict[str, list[float]] = field(default_factory=dict)
    tokens: dict[str, list[int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    same_reply: list[bool] = field(default_factory=list)

    def add(self, name: str, value: float) -> None:
        self.columns.setdefault(name, []).append(value)

    def median(self, name: str) -> float:
        values = self.columns.get(name) or self.ratios.get(name) or [float("nan")]
        return statistics.median(values)

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "notes": self.notes}
        for name in self.columns:
            out[name] = round(self.median(name), 2)
        for name, values in self.ratios.items():
            out["ratio_" + name] = round(statistics.median(values), 3)
            # on a shared machine the fastest run of each column is the least disturbed one
            ref = "lb_pp" if name == "eng_pp" else "lb_tg"
            if self.columns.get(ref) and self.columns.get(name):
                out["best_ratio_" + name] = round(max(self.columns[name]) / max(self.columns[ref]), 3)
        for name, counts in self.tokens.items():
            out["tokens_" + name] = min(counts)
        if self.same_reply:
            out["same_reply_device_vs_cpu_sampling"] = f"{sum(self.same_reply)}/{len(self.same_reply)}"
        return out


def bytes_per_token(path: Path) -> int:
    """Weight bytes one decode step reads: every matrix, MoE experts only for the used share; embedding
    tables are row lookups (not counted) unless the output layer is tied to them."""
    from gemmadesk.core.gguf_file import GGUFFile

    header = GGUFFile.open(path)
    arch = header.architecture
    n_expert = int(header.metadata.get(f"{arch}.expert_count", 0) or 0)
    n_used = int(header.metadata.get(f"{arch}.expert_used_count", 0) or 0)
    names = {t.name for t in header.tensors}
    total = 0
    for t in header.tensors:
        if t.name in ("token_embd.weight", "per_layer_token_embd.weight"):
            if t.name == "token_embd.weight" and "output.weight" not in names:
                total += t.n_bytes  # tied output projection reads the whole table
            continue
        total += t.n_bytes * n_used // n_expert if "_exps" in t.name and n_expert else t.n_bytes
    return total


def _reply(engine: Engine, messages: list[ChatMessage], params: SamplingParams) -> ReplyDone:
    done = None
    for event in engine.chat_stream(messages, params, threading.Event()):
        if isinstance(event, ReplyDone):
            done = event
    assert done is not None
    return done


def _fresh(engine: Engine) -> None:
    engine._native_model().reset()  # benchmark-only reach: start each reply from an empty KV cache


def prompt_of(engine: Engine, n_tokens: int) -> list[ChatMessage]:
    """A user message whose rendered prompt is about ``n_tokens`` tokens."""
    words = ("The keeper climbed the stairs again, counting every step, and watched the grey sea. " * 200).split()
    lo, hi = 1, len(words)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if len(engine.tokenize_prompt([ChatMessage("user", " ".join(words[:mid]))])) <= n_tokens:
            lo = mid
        else:
            hi = mid - 1
    return [ChatMessage("user", " ".join(words[:lo]))]


def bare_tg(llm: Any, prompt: list[int], n: int) -> tuple[float, int]:
    """llama-cpp-python's own loop, nothing else per token (greedy, like the issue's table)."""
    llm.reset()
    count, first_at = 0, 0.0
    for _token in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
        if count == 0:
            first_at = time.perf_counter()
        count += 1
        if count >= n:
            break
    return (count - 1) / (time.perf_counter() - first_at), count


def _with_device_sampling(value: str | None, fn: Callable[[], ReplyDone]) -> ReplyDone:
    old = os.environ.get("GEMMADESK_DEVICE_SAMPLING")
    if value is None:
        os.environ.pop("GEMMADESK_DEVICE_SAMPLING", None)
    else:
        os.environ["GEMMADESK_DEVICE_SAMPLING"] = value
    try:
        return fn()
    finally:
        if old is None:
            os.environ.pop("GEMMADESK_DEVICE_SAMPLING", None)
        else:
            os.environ["GEMMADESK_DEVICE_SAMPLING"] = old


def compare(
    model: Path,
    *,
    threads: int,
    n_gpu_layers: int = 0,
    flash_attn: bool = True,
    n_ctx: int = 8192,
    rounds: int = 3,
    n_gen: int = 128,
    bin_dir: Path | None = None,
    alt_device_sampling: str | None = None,
    log: Callable[[str], None] = print,
) -> Comparison:
    """All columns for one model; see the module docstring."""
    import llama_cpp

    result = Comparison(model.name, str(model))
    settings = DirectLoadSettings(model_path=str(model), n_ctx=n_ctx, n_gpu_layers=n_gpu_layers,
                                  flash_attn=flash_attn, n_threads=threads)
    engine = Engine()
    report = engine.load(settings)
    result.notes.append(f"{report.n_gpu_layers} GPU layers, flash attention {'on' if report.flash_attn else 'off'}, "
                        f"{report.n_threads} threads, n_ctx {report.n_ctx}")
    bare = llama_cpp.Llama(str(model), n_ctx=n_ctx, n_gpu_layers=n_gpu_layers, flash_attn=flash_attn,
                           n_threads=threads, n_threads_batch=threads, swa_full=False, verbose=False)
    story = engine.tokenize_prompt(STORY)
    long_prompt = prompt_of(engine, 512)
    greedy = SamplingParams(temperature=0.0, top_k=1, max_tokens=n_gen, seed=0)
    sampled = SamplingParams(max_tokens=n_gen, seed=0)
    alt: Engine | None = None
    alt_name = f"eng_tg_dev{alt_device_sampling}"
    if alt_device_sampling is not None:
        alt = Engine()
        _with_device_sampling(alt_device_sampling, lambda: alt.load(settings))  # type: ignore[arg-type,return-value]
    _fresh(engine)
    _reply(engine, STORY, SamplingParams(max_tokens=8, seed=1))  # warm-up (graph reservation, CUDA graphs)
    bare_tg(bare, story, 8)
    lb: dict[str, float] = {}
    answers: dict[str, str] = {}

    def step_llama_bench() -> None:
        try:
            lb.update(llama_bench(model, threads=threads, n_gen=n_gen, reps=1, n_gpu_layers=99 if n_gpu_layers else 0,
                                  flash_attn=flash_attn, bin_dir=bin_dir))
        except (RuntimeError, OSError, ValueError, KeyError) as exc:  # keep the other columns
            lb.update(pp=float("nan"), tg=float("nan"))
            if not any(n.startswith("llama-bench failed") for n in result.notes):
                result.notes.append(f"llama-bench failed: {str(exc)[-600:]}")
        result.add("lb_tg", lb["tg"])
        result.add("lb_pp", lb["pp"])

    def step_bare() -> None:
        tps, count = bare_tg(bare, story, n_gen)
        result.add("bare_tg", tps)
        result.tokens.setdefault("bare_tg", []).append(count)

    def step_engine(name: str, which: Engine, params: SamplingParams) -> None:
        _fresh(which)
        done = _reply(which, STORY, params)
        answers[name] = done.answer
        result.add(name, done.stats.generated_tokens_per_s)
        result.tokens.setdefault(name, []).append(done.stats.completion_tokens)

    def step_prompt() -> None:
        _fresh(engine)
        stats = _reply(engine, long_prompt, SamplingParams(max_tokens=1, seed=0)).stats
        result.add("eng_pp", stats.prompt_tokens_per_s)
        result.tokens.setdefault("eng_pp", []).append(stats.prompt_tokens_evaluated)

    steps = [
        step_llama_bench,
        step_bare,
        lambda: step_engine("eng_tg_greedy", engine, greedy),
        lambda: step_engine("eng_tg", engine, sampled),
        step_prompt,
    ]
    if alt is not None:
        steps.append(lambda: step_engine(alt_name, alt, sampled))
    for rnd in range(rounds):
        # a shared machine's load drifts: start each round at another column, so no column is always last
        for step in steps[rnd % len(steps) :] + steps[: rnd % len(steps)]:
            step()
        if alt is not None:
            # same seed, same samplers: top-k on the device or on the CPU must give the same reply
            result.same_reply.append(answers[alt_name] == answers["eng_tg"])
        for name in ("bare_tg", "eng_tg_greedy", "eng_tg", alt_name):
            if name in result.columns:
                result.ratios.setdefault(name, []).append(result.columns[name][-1] / lb["tg"])
        result.ratios.setdefault("eng_pp", []).append(result.columns["eng_pp"][-1] / lb["pp"])
        log(f"  round {rnd + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in result.columns.items()))
    engine.unload()
    if alt is not None:
        alt.unload()
    bare.close()
    return result


def loop_split(model: Path, *, threads: int, n_ctx: int = 4096, n_gen: int = 64, rounds: int = 3) -> dict[str, float]:
    """Median per-token times (ms) inside the engine's loop, immune to a drifting machine load: llama.cpp's
    decode of one token, its sampler on the result (greedy / default sampling, the 262,144-entry
    vocabulary), and the engine's text work per token (detokenizer, thought parser, events)."""
    import ctypes

    import llama_cpp

    from gemmadesk.core.engine.engine import _ReplyText
    from gemmadesk.core.engine.llama_adapter import Sampling

    engine = Engine()
    engine.load(DirectLoadSettings(model_path=str(model), n_ctx=n_ctx, n_threads=threads))
    native = engine._native_model()
    prompt = engine.tokenize_prompt(STORY)
    times: dict[str, list[float]] = {"decode": [], "sample_greedy": [], "sample_default": [], "text": []}
    one = (ctypes.c_int32 * 1)()
    batch = llama_cpp.llama_batch_get_one(one, 1)
    ctx = native._ctx
    for _ in range(rounds):
        for name, temp in (("sample_greedy", 0.0), ("sample_default", 1.0)):
            native.reset()
            chain = native._chains(Sampling(temp, 64, 0.95, 0.0, 1.0, 1))
            native.decode_prompt(prompt)
            reply = _ReplyText(native)
            for _i in range(n_gen):
                t0 = time.perf_counter()
                token = int(llama_cpp.llama_sampler_sample(chain, ctx, -1))
                t1 = time.perf_counter()
                one[0] = token
                llama_cpp.llama_decode(ctx, batch)
                llama_cpp.llama_synchronize(ctx)
                t2 = time.perf_counter()
                reply.push(token)
                t3 = time.perf_counter()
                times[name].append(t1 - t0)
                times["decode"].append(t2 - t1)
                times["text"].append(t3 - t2)
            llama_cpp.llama_sampler_free(chain)
    native.reset()
    engine.unload()
    return {k: statistics.median(v) * 1000 for k, v in times.items()}
