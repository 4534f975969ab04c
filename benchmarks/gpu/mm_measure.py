#!/usr/bin/env python3
"""GPU measurements for image input (issue 14), run on the NVIDIA machine after the CUDA build.

For E2B and 12B shapes (synthetic Gemma 4 text models from tests/support/synth_gemma4.py and synthetic
projectors with the real encoder shapes from tests/support/synth_gemma4_mmproj.py), each in a fresh
child process (so NVML's numbers belong to it alone):

1. load the model fully offloaded with its projector through GemmaDesk's Engine, encode one image, and
   compare GemmaDesk's estimate (``fit.estimate(... with_mmproj)`` + ``mmproj.projector_memory``) with
   llama.cpp's own buffer reports and with what NVML says the process added on the GPU;
2. time to encode one image (the projector's encoder alone);
3. time to first token on turn 2 with the image reused (KV prefix kept) vs re-encoded (KV cache and
   embeddings cleared: what llama-cpp-python's Gemma4ChatHandler does every turn), same process, same run.

    python3 benchmarks/gpu/mm_measure.py --models .gpu-models --out "$OUT" [--sizes E2B,12B] [--budget-s 300]

Writes ``mm_results.jsonl`` and ``multimodal-gpu.md`` (a section for docs/benchmarks.md) to --out. Models
are generated into --models when missing (``E2B.gguf``/``12B.gguf`` as run_gpu.sh names them, and
``E2B-mmproj.gguf``/``12B-mmproj.gguf``). Runs on a CPU-only machine too (NVML numbers then 0), as a dry run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from measure import MiB, nvml_used  # noqa: E402 - beside this script


def one(cfg: dict) -> dict:
    """In a child process: load, encode, measure."""
    import llama_cpp  # before anything that imports numpy (CUDA build crash otherwise; see measure.py)

    from gemmadesk.core.allocations import parse_buffers
    from gemmadesk.core.engine import Attachment, ChatMessage, DirectLoadSettings, Engine, ReplyDone, SamplingParams
    from gemmadesk.core.engine.llama_adapter import log_mark, log_since
    from gemmadesk.core.fit import FitOptions, estimate
    from gemmadesk.core.gguf_info import read_layout
    from gemmadesk.core.mmproj import projector_memory, read_projector

    gpu = bool(llama_cpp.llama_supports_gpu_offload())
    layout = read_layout(Path(cfg["model"]))
    info = read_projector(cfg["mmproj"])
    ngl = layout.n_layer + 1 if gpu else 0
    image = Path(cfg["image"])
    photo = Attachment("image", image, hashlib.sha256(image.read_bytes()).hexdigest(), "image/png")

    base = nvml_used()
    mark = log_mark()
    engine = Engine()
    t0 = time.perf_counter()
    report = engine.load(DirectLoadSettings(model_path=cfg["model"], n_ctx=cfg["ctx"], n_gpu_layers=ngl,
                                            flash_attn=True, mmproj_path=cfg["mmproj"]))
    load_s = time.perf_counter() - t0
    projector = engine.projector
    assert projector is not None and report.supports_images, report.notes
    after_load = nvml_used()
    lines = log_since(mark)  # now: the log keeps only its last lines (a ring buffer); clip.cpp reports the
    # encoders' compute buffers at load (its warm-up)

    def turn(messages: list[ChatMessage], tokens: int = 4) -> ReplyDone:
        params = SamplingParams(max_tokens=tokens, seed=1)
        return [e for e in engine.chat_stream(messages, params) if isinstance(e, ReplyDone)][-1]

    def clear(embeddings: bool) -> None:
        llm = engine._require()
        llm.reset()
        llm._ctx.kv_cache_clear()
        if embeddings:
            projector._media.clear()
            projector._cache_order.clear()

    first = [ChatMessage("system", "Describe pictures."), ChatMessage("user", "What is in this photo?", (photo,))]
    done1 = turn(first, tokens=16)
    after_image = nvml_used()
    encode_s = projector.encode_seconds
    second = [*first, ChatMessage("assistant", done1.answer), ChatMessage("user", "Which colours dominate?")]
    ttft: dict[str, list[float]] = {"reused": [], "re-encoded": []}
    evaluated: dict[str, int] = {}
    for _ in range(cfg["runs"]):
        for way in ("reused", "re-encoded"):
            clear(embeddings=True)
            if way == "reused":
                done1 = turn(first, tokens=16)
                second[-2] = ChatMessage("assistant", done1.answer)
            else:
                clear(embeddings=True)
            done = turn(second)
            ttft[way].append(done.stats.time_to_first_token_s)
            evaluated[way] = done.stats.prompt_tokens_evaluated
    audio: dict[str, object] = {}
    if report.supports_audio and cfg.get("audio"):  # E2B/E4B/12B shapes: one clip, encoded once
        clip = Path(cfg["audio"])
        voice = Attachment("audio", clip, hashlib.sha256(clip.read_bytes()).hexdigest(), "audio/wav")
        clear(embeddings=True)
        before_s, before_n = projector.encode_seconds, projector.encode_count
        done_a = turn([ChatMessage("user", "What is said in this recording?", (voice,))])
        audio = {"audio_clip_s": cfg.get("audio_seconds"),
                 "encode_audio_s": round(projector.encode_seconds - before_s, 3),
                 "audio_chunks_encoded": projector.encode_count - before_n,
                 "audio_prompt_tokens": done_a.stats.prompt_tokens,
                 "nvml_after_audio_mib": round((nvml_used() - base) / MiB, 1)}  # fmt: skip
    engine.unload()

    real = parse_buffers("\n".join(lines))
    clip_compute = [float(m.group(2)) for ln in lines if "reserve_compute_meta" in ln
                    and (m := re.search(r"(\S+) compute buffer size =\s*([0-9.]+) MiB", ln))]
    est = estimate(layout, FitOptions(n_ctx=cfg["ctx"], with_mmproj=True), ngl, flash_attn=True,
                   type_k="f16", type_v="f16", mmproj_bytes=info.data_bytes)
    extra = projector_memory(info, projector.image_max_tokens, flash_attn=True)
    return {
        **cfg,
        "gpu": gpu,
        "load_s": round(load_s, 2),
        "encode_one_image_s": round(encode_s, 3),
        "turn1_prompt_tokens": done1.stats.prompt_tokens,
        "est_gpu_mib_fit_today": round(est.gpu_bytes / MiB, 1),
        "est_projector_compute_mib": round(extra / MiB, 1),
        "est_gpu_mib_with_projector_compute": round((est.gpu_bytes + (extra if gpu else 0)) / MiB, 1),
        "llama_gpu_mib": round(real.gpu_total(), 1),
        "clip_compute_mib": clip_compute,
        "projector_weights_mib": round(info.data_bytes / MiB, 1),
        "nvml_after_load_mib": round((after_load - base) / MiB, 1),
        "nvml_after_image_mib": round((after_image - base) / MiB, 1),
        "ttft_turn2_reused_s": round(sorted(ttft["reused"])[len(ttft["reused"]) // 2], 3),
        "ttft_turn2_reencoded_s": round(sorted(ttft["re-encoded"])[len(ttft["re-encoded"]) // 2], 3),
        "evaluated_reused": evaluated["reused"],
        "evaluated_reencoded": evaluated["re-encoded"],
        "log_lines": len(lines),
        **audio,
    }


def ensure_models(models: Path, size: str) -> tuple[Path, Path]:
    from tests.support.synth_gemma4 import write_gemma4_gguf
    from tests.support.synth_gemma4_mmproj import write_gemma4_mmproj

    models.mkdir(parents=True, exist_ok=True)
    text, proj = models / f"{size}.gguf", models / f"{size}-mmproj.gguf"
    if not text.exists():
        write_gemma4_gguf(text, size, qtype="Q4_0")
    if not proj.exists():
        write_gemma4_mmproj(proj, size)
    return text, proj


def section(results: list[dict]) -> str:
    out = [
        "## Image input on the GPU: memory estimate vs NVML, encode time, turn-2 reuse",
        "",
        "`benchmarks/gpu/mm_measure.py` — synthetic Gemma 4 models with real shapes and synthetic projectors",
        "with the real encoder shapes; fully offloaded, flash attention on, one 896 × 896 PNG.",
        "",
        "| size | ctx | estimate today (MiB) | + encoder buffers | llama.cpp GPU | NVML after load | NVML after image |"
        " encode one image | TTFT turn 2 reused | re-encoded | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if "error" in r:
            out.append(f"| {r['size']} | error: {r['error'][:200]} |")
            continue
        ratio = r["ttft_turn2_reused_s"] / max(r["ttft_turn2_reencoded_s"], 1e-9)
        cells = [
            r["size"], r["ctx"], f"{r['est_gpu_mib_fit_today']:,.0f}",
            f"{r['est_gpu_mib_with_projector_compute']:,.0f}",
            f"{r['llama_gpu_mib']:,.0f}", f"{r['nvml_after_load_mib']:,.0f}", f"{r['nvml_after_image_mib']:,.0f}",
            f"{r['encode_one_image_s']:.3f} s", f"{r['ttft_turn2_reused_s']:.3f} s",
            f"{r['ttft_turn2_reencoded_s']:.3f} s", f"{ratio:.3f}×",
        ]
        out.append("| " + " | ".join(str(c) for c in cells) + " |")
    out += ["", "NVML includes the CUDA context (the planner's fixed per-GPU reserve covers it)."]
    return "\n".join(out) + "\n"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--one")
    ap.add_argument("--models", type=Path, default=ROOT / ".gpu-models")
    ap.add_argument("--out", type=Path, default=ROOT / "gpu-out")
    ap.add_argument("--sizes", default="E2B,12B")
    ap.add_argument("--ctx", type=int, default=8192)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--budget-s", type=float, default=300)
    args = ap.parse_args(argv)
    if args.one:
        print("RESULT " + json.dumps(one(json.loads(args.one))), flush=True)
        return 0
    deadline = time.monotonic() + args.budget_s
    args.out.mkdir(parents=True, exist_ok=True)
    from tests.support.media_files import png, wav

    image = args.models / "photo-896.png"
    args.models.mkdir(parents=True, exist_ok=True)
    if not image.exists():
        image.write_bytes(png(896, 896, seed=3))
    clip = args.models / "tone-10s.wav"
    if not clip.exists():
        clip.write_bytes(wav(10.0))
    results = []
    for size in args.sizes.split(","):
        if time.monotonic() > deadline - 30:
            results.append({"size": size, "error": "time budget exhausted"})
            continue
        text, proj = ensure_models(args.models, size)
        cfg = {"size": size, "model": str(text), "mmproj": str(proj), "image": str(image), "ctx": args.ctx,
               "runs": args.runs, "audio": str(clip), "audio_seconds": 10.0}
        try:
            proc = subprocess.run([sys.executable, "-X", "faulthandler", __file__, "--one", json.dumps(cfg)],
                                  capture_output=True, text=True, cwd=ROOT,
                                  timeout=max(deadline - time.monotonic(), 30))
            found = [json.loads(ln[7:]) for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            res = found[-1] if found else {**cfg, "error": f"exit {proc.returncode}: " + " | ".join(
                proc.stderr.strip().splitlines()[-10:])[:1500]}
        except subprocess.TimeoutExpired:
            res = {**cfg, "error": "timed out"}
        results.append(res)
        print(json.dumps(res), flush=True)
        with (args.out / "mm_results.jsonl").open("a") as fh:
            fh.write(json.dumps(res) + "\n")
    (args.out / "multimodal-gpu.md").write_text(section(results), encoding="utf-8")
    print(section(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
