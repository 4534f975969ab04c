#!/usr/bin/env python3
"""What the hostile-input defences cost (issue 10 items 7, 10, 11), each against a reference in the same run.

- GGUF header: ``GGUFFile.open`` (bounded, regular-file-only reader) vs the ``gguf`` package's
  ``GGUFReader`` on a synthetic Gemma 4 GGUF with the real 262,144-token vocabulary and 514,906 merges.
- Chat template: the real Gemma 4 template rendered with GemmaDesk's limits (deadline, memory ceiling,
  size checks) vs the same template in a plain ``ImmutableSandboxedEnvironment``.
- Prompt tokens: ``Engine.tokenize_prompt`` (renders, looks for special-token strings inside messages,
  tokenizes) vs rendering plus one ``llama.tokenize`` of the text (how it was done before).

    python3 benchmarks/bench_hostile.py [--runs 7]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULT = ROOT / "benchmarks" / "results" / "hostile.md"

import llama_cpp  # noqa: E402,F401  # native libraries before numpy (see gemmadesk/core/gguf_file.py)

from gemmadesk.core.engine import ChatMessage, DirectLoadSettings, Engine  # noqa: E402
from gemmadesk.core.engine.chatformat import prompt_format_for  # noqa: E402
from gemmadesk.core.gguf_file import GGUFFile  # noqa: E402
from tests.support.synth_gemma4 import write_gemma4_gguf  # noqa: E402


def median_s(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def conversation(turns: int) -> list[ChatMessage]:
    msgs = [ChatMessage("system", "You are a helpful assistant. Answer briefly.")]
    for i in range(turns):
        msgs.append(ChatMessage("user", f"Question {i}: what is {i} + {i}? Explain the steps in a sentence or two."))
        msgs.append(ChatMessage("assistant", f"{i} + {i} = {2 * i}. Adding a number to itself doubles it."))
    msgs.append(ChatMessage("user", "Thanks. One more: what is 7 times 6?"))
    return msgs


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        model = write_gemma4_gguf(Path(tmp) / "gemma4-tiny.gguf", "tiny", seed=0)

        import gguf

        ours = median_s(lambda: GGUFFile.open(model), args.runs)
        started = time.perf_counter()
        gguf.GGUFReader(model)
        theirs = time.perf_counter() - started
        rows += [("GGUF header, `gguf.GGUFReader` (reference, 1 run)", f"{theirs * 1000:,.0f} ms"),
                 ("GGUF header, `GGUFFile.open`", f"{ours * 1000:,.0f} ms"),
                 ("Ratio GGUFFile / GGUFReader (lower is better)", f"{ours / theirs:.3f}")]

        template = GGUFFile.open(model).chat_template
        assert template
        import jinja2
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        plain = ImmutableSandboxedEnvironment(loader=jinja2.BaseLoader(), trim_blocks=True, lstrip_blocks=True,
                                              extensions=["jinja2.ext.loopcontrols"]).from_string(template)
        fmt = prompt_format_for("gemma4", template, "<bos>", "<eos>")
        for turns in (2, 100):
            msgs = conversation(turns)
            kwargs = {"messages": [{"role": m.role, "content": m.content} for m in msgs], "bos_token": "<bos>",
                      "eos_token": "<eos>", "add_generation_prompt": True, "enable_thinking": False}
            assert plain.render(**kwargs) == fmt.render(msgs)
            base = median_s(lambda kwargs=kwargs: plain.render(**kwargs), args.runs)  # type: ignore[misc]
            limited = median_s(lambda msgs=msgs: fmt.render(msgs), args.runs)  # type: ignore[misc]
            rows += [(f"Gemma 4 template, {len(msgs)} messages, plain sandbox (reference)", f"{base * 1000:.2f} ms"),
                     (f"Gemma 4 template, {len(msgs)} messages, with limits", f"{limited * 1000:.2f} ms"),
                     ("Ratio limits / plain", f"{limited / base:.2f}")]

        engine = Engine()
        engine.load(DirectLoadSettings(model_path=str(model), n_ctx=8192, n_threads=1))
        llm = engine._llm
        for turns in (2, 100):
            msgs = conversation(turns)

            def before(msgs: list[ChatMessage] = msgs) -> object:
                return llm.tokenize(fmt.render(msgs).encode(), add_bos=False, special=True)

            engine._prompt_tokens = None  # a fresh model: no message scanned yet
            started = time.perf_counter()
            cold_tokens = engine.tokenize_prompt(msgs)
            cold = time.perf_counter() - started
            assert cold_tokens == [*before()] or cold_tokens[1:] == [*before()]
            base = median_s(before, args.runs)
            warm = median_s(lambda msgs=msgs: engine.tokenize_prompt(msgs), args.runs)  # type: ignore[misc]
            rows += [(f"Prompt tokens, {len(msgs)} messages ({len(cold_tokens):,} tokens): render + tokenize "
                      "(reference)", f"{base * 1000:.2f} ms"),
                     ("`Engine.tokenize_prompt`, first time (every message scanned)", f"{cold * 1000:.2f} ms"),
                     ("`Engine.tokenize_prompt`, next turn (messages cached)", f"{warm * 1000:.2f} ms"),
                     ("Ratio next turn / reference", f"{warm / base:.2f}")]
        engine.unload()

    now = dt.datetime.now(dt.UTC)
    lines = [
        "## Hostile-input defences (`bench_hostile.py`)", "",
        f"Command: `python3 benchmarks/bench_hostile.py --runs {args.runs}` — {now:%Y-%m-%d %H:%M} UTC, "
        f"{platform.platform()}, {os.cpu_count()} CPUs.", "",
        "Synthetic Gemma 4 GGUF (real vocabulary, merges and chat template; tests/support/synth_gemma4.py). "
        "Medians of the runs; the machine was shared with other engineers' test runs, so absolute times "
        "vary; read the ratios (reference and candidate measured back to back in the same run).", "",
        "| Measure | Value |", "|---|---|", *[f"| {a} | {b} |" for a, b in rows], "",
        "The template limits cost a tick in every loop iteration and sandbox hook (a clock read every 2,000 "
        "ticks) and size checks before operations that can multiply data; a conversation without special-token "
        "strings is tokenized in one call exactly as before, after one cached scan of each new message.",
    ]
    RESULT.parent.mkdir(exist_ok=True)
    RESULT.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
