#!/usr/bin/env python3
"""Image chat on the CPU: time to first token on turn 2 with the image's KV prefix reused, against the
same turn re-encoded from scratch (what llama-cpp-python's ``Gemma4ChatHandler`` does every turn), in the
same run; plus the projector's memory (llama.cpp's report vs GemmaDesk's estimate).

Models: a synthetic Gemma 4 with E2B's layer shapes but fewer layers (``--text-layers``, to keep the
text side cheap on a 2-core machine) and a synthetic projector with E2B's real vision tower and audio
conformer (tests/support/synth_gemma4_mmproj.py; random weights, real shapes, so encoding costs what
the real one does). Three ways to get turn 2's first token:

- **reused**: the engine as used: the KV cache still holds turn 1, only the new text is evaluated;
- **re-decoded**: KV cache cleared, image embeddings still cached: the prompt is evaluated again but the
  vision encoder does not run (what happens after an edit before the image);
- **re-encoded**: KV cache and embedding cache cleared: the image is encoded again (the handler's way).

    python3 benchmarks/bench_multimodal.py [--size E2B] [--text-layers 10] [--runs 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULT = ROOT / "benchmarks" / "results" / "multimodal.md"

import llama_cpp  # noqa: E402,F401  (llama.cpp's native libraries before numpy)

from gemmadesk.core.engine import (  # noqa: E402
    Attachment,
    ChatMessage,
    DirectLoadSettings,
    Engine,
    ReplyDone,
    SamplingParams,
)
from gemmadesk.core.engine.llama_adapter import log_mark, log_since  # noqa: E402
from gemmadesk.core.mmproj import projector_memory, read_projector  # noqa: E402
from tests.support.assets import cache_dir  # noqa: E402
from tests.support.media_files import png  # noqa: E402
from tests.support.synth_gemma4 import write_gemma4_gguf  # noqa: E402
from tests.support.synth_gemma4_mmproj import write_gemma4_mmproj  # noqa: E402

MiB = 2**20


def models(size: str, text_layers: int) -> tuple[Path, Path]:
    folder = cache_dir() / "multimodal-bench"
    text = folder / f"gemma4-{size}-{text_layers}l.gguf"
    proj = folder / f"gemma4-{size}-mmproj.gguf"
    if not text.exists():
        write_gemma4_gguf(text, size, n_layer=text_layers)
    if not proj.exists():
        write_gemma4_mmproj(proj, size)
    return text, proj


def ttft(engine: Engine, messages: list[ChatMessage], tokens: int = 4) -> ReplyDone:
    params = SamplingParams(max_tokens=tokens, seed=1)
    return [e for e in engine.chat_stream(messages, params) if isinstance(e, ReplyDone)][-1]


def clear_kv(engine: Engine) -> None:
    llm = engine._require()
    llm.reset()
    llm._ctx.kv_cache_clear()


def clear_embeddings(engine: Engine) -> None:
    projector = engine.projector
    assert projector is not None
    projector._media.clear()
    projector._cache_order.clear()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--size", default="E2B")
    ap.add_argument("--text-layers", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--image", type=int, default=896, help="side of the square test image (pixels)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    text, proj = models(args.size, args.text_layers)
    image = cache_dir() / "multimodal-bench" / f"photo-{args.image}.png"
    if not image.exists():
        image.write_bytes(png(args.image, args.image, seed=3))
    photo = Attachment("image", image, hashlib.sha256(image.read_bytes()).hexdigest(), "image/png")

    engine = Engine()
    mark = log_mark()
    t0 = time.perf_counter()
    report = engine.load(DirectLoadSettings(model_path=str(text), n_ctx=4096, n_threads=args.threads,
                                            flash_attn=True, mmproj_path=str(proj)))
    load_s = time.perf_counter() - t0
    buffers = [float(m.group(1)) for line in log_since(mark) if "reserve_compute_meta" in line
               and (m := re.search(r"CPU compute buffer size =\s*([0-9.]+) MiB", line))]
    assert report.supports_images, report.notes
    projector = engine.projector
    assert projector is not None
    info = read_projector(proj)
    estimate = projector_memory(info, projector.image_max_tokens, flash_attn=True)

    rows: dict[str, list[float]] = {"reused": [], "re-decoded": [], "re-encoded": []}
    evaluated: dict[str, int] = {}
    turn1_s: list[float] = []
    for run in range(args.runs):
        system = ChatMessage("system", f"Describe pictures. Run {run}.")
        first = [system, ChatMessage("user", "What is in this photo?", (photo,))]
        clear_kv(engine)
        if run == 0:
            clear_embeddings(engine)
        done1 = ttft(engine, first, tokens=16)
        turn1_s.append(done1.stats.time_to_first_token_s)
        second = [*first, ChatMessage("assistant", done1.answer), ChatMessage("user", "Which colours dominate?")]
        for way in ("reused", "re-decoded", "re-encoded"):
            if way != "reused":
                clear_kv(engine)
            if way == "re-encoded":
                clear_embeddings(engine)
            done = ttft(engine, second)
            rows[way].append(done.stats.time_to_first_token_s)
            evaluated[way] = done.stats.prompt_tokens_evaluated
    engine.unload()

    med = {k: statistics.median(v) for k, v in rows.items()}
    image_tokens = done.stats.prompt_tokens  # of the last turn-2 prompt
    lines = [
        "## Image chat: turn 2 with the image reused vs re-encoded (CPU)",
        "",
        f"`benchmarks/bench_multimodal.py` — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
        f"{os.cpu_count()} cores shared with other work (ratios, not absolute times, are what carries over).",
        f"Synthetic Gemma 4 with {args.size} layer shapes ({args.text_layers} text layers), synthetic {args.size} "
        f"projector (real vision tower shape: {info.vision_layers} layers × {info.vision_embd}), "
        f"{args.threads} threads, flash attention on, a {args.image} × {args.image} PNG "
        f"(image budget {projector.image_max_tokens} tokens); turn-2 prompt {image_tokens} tokens; "
        f"median of {args.runs} runs.",
        "",
        "| turn 2, first token after | time to first token | prompt tokens evaluated | vs re-encoded |",
        "|---|---|---|---|",
    ]
    for way in ("reused", "re-decoded", "re-encoded"):
        lines.append(f"| {way} | {med[way]:.2f} s | {evaluated[way]} | {med[way] / med['re-encoded']:.3f}× |")
    lines += [
        "",
        "Turn 1 (whole prompt evaluated; median, so with the embeddings cached from the previous run): "
        f"{statistics.median(turn1_s):.2f} s. Projector load with the model: {load_s:.1f} s.",
        "",
        f"Projector memory (CPU): file {info.file_bytes / MiB:,.0f} MiB; llama.cpp's compute buffers "
        f"{' + '.join(f'{b:.1f}' for b in buffers)} MiB (vision, audio; sized by clip.cpp's warm-up); "
        f"GemmaDesk's estimate of those buffers {estimate / MiB:.1f} MiB "
        f"({estimate / MiB / max(sum(buffers), 1e-9):.2f}× llama.cpp's).",
    ]
    text_out = "\n".join(lines) + "\n"
    RESULT.parent.mkdir(exist_ok=True)
    RESULT.write_text(text_out, encoding="utf-8")
    print(text_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
