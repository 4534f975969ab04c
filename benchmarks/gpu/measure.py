#!/usr/bin/env python3
"""GPU validation of the fit estimator and the engine (run on an NVIDIA machine; see run_gpu.sh).

For each synthetic Gemma-4-architecture GGUF (real shapes, random Q4_0 weights, made by
tests/support/synth_gemma4.py) and each context length / flash-attention / KV-type combination, a
fresh child process loads the model fully offloaded and records:

* GemmaDesk's estimate of GPU memory (``fit.estimate(...).gpu_bytes``),
* what llama.cpp reports it allocated on the GPU (its "CUDA0 ... buffer size" log lines),
* what NVML says the process added on the device (includes the CUDA context, which the planner
  covers with its fixed per-GPU reserve).

It also loads each model under a pretend VRAM limit (partial-offload plan) and checks that the
planned layer count loads and uses what was predicted, and compares decode speed through
GemmaDesk's Engine with a bare llama-cpp-python loop on the same model in the same run.

    python3 benchmarks/gpu/measure.py --models DIR --out DIR [--sizes E2B,E4B,12B] [--budget-s 420]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

MiB = 2**20


def nvml_used() -> int:
    """Bytes in use on GPU 0 (0 where there is no NVML: a dry run on a CPU machine). Also mm_measure.py's."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no NVIDIA driver (or no nvidia-ml-py): a dry run
        return 0
    try:
        return int(pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(0)).used)
    finally:
        pynvml.nvmlShutdown()


def one(cfg: dict) -> dict:
    """Runs in a child process: load once, measure memory (and optionally speed)."""
    import llama_cpp  # first: numpy (pulled in by the gguf package) loaded earlier crashes libggml-cuda

    from gemmadesk.core.allocations import capture_llama_log, parse_buffers
    from gemmadesk.core.fit import FitOptions, estimate
    from gemmadesk.core.gguf_info import read_layout

    path = cfg["path"]
    layout = read_layout(Path(path))
    ngl = cfg.get("ngl", layout.n_layer + 1)
    fa = cfg["fa"]
    type_k = cfg["kv"]
    type_v = cfg["kv"] if fa else "f16"
    est = estimate(layout, FitOptions(n_ctx=cfg["ctx"], kv_type=cfg["kv"]), ngl, flash_attn=fa,
                   type_k=type_k, type_v=type_v)
    from llama_cpp import Llama

    from gemmadesk.core.engine.engine import _ggml_type  # the engine's own type mapping

    before = nvml_used()
    t0 = time.perf_counter()
    with capture_llama_log() as lines:
        llm = Llama(path, n_gpu_layers=ngl, n_ctx=cfg["ctx"], swa_full=False, flash_attn=fa,
                    type_k=_ggml_type(type_k, llama_cpp), type_v=_ggml_type(type_v, llama_cpp),
                    n_batch=512, n_ubatch=512, verbose=False)
    load_s = time.perf_counter() - t0
    tokens = llm.tokenize(b"The quick brown fox jumps over the lazy dog. " * 8)
    llm.eval(tokens)
    after = nvml_used()
    real = parse_buffers("".join(lines))
    result = {
        **cfg,
        "load_s": round(load_s, 2),
        "est_gpu_mib": round(est.gpu_bytes / MiB, 1),
        "est_kv_mib": round(est.kv_gpu / MiB, 1),
        "est_compute_mib": round(est.compute_gpu / MiB, 1),
        "est_weights_mib": round(est.weights_gpu / MiB, 1),
        "llama_gpu_mib": round(real.gpu_total(), 1),
        "llama_kv_mib": round(sum(v for (d, k), v in real.buffers.items() if k == "KV" and not d.startswith("CPU")), 1),
        "llama_compute_mib": round(sum(v for (d, k), v in real.buffers.items()
                                       if k == "compute" and not d.startswith("CPU")), 1),
        "llama_model_mib": round(sum(v for (d, k), v in real.buffers.items()
                                     if k == "model" and not d.startswith("CPU")), 1),
        "nvml_delta_mib": round((after - before) / MiB, 1),
        "buffers": {f"{d}/{k}": v for (d, k), v in real.buffers.items()},
    }
    if cfg.get("speed"):
        n = 128
        prompt = llm.tokenize(b"Write a long story about a lighthouse keeper.")
        llm.reset()
        t0 = time.perf_counter()
        count = 0
        for _tok in llm.generate(prompt, temp=0.0, top_k=1):
            count += 1
            if count == 1:
                t_first = time.perf_counter()
            if count >= n:
                break
        bare_tps = (count - 1) / (time.perf_counter() - t_first)
        del llm
        import threading

        from gemmadesk.core.engine import ChatMessage, Engine, LoadSettings, ReplyDone, SamplingParams

        engine = Engine()
        engine.load(LoadSettings(model_path=path, n_ctx=cfg["ctx"], n_gpu_layers=ngl, flash_attn=fa,
                                       type_k=type_k, type_v=type_v))
        stats = None
        for ev in engine.chat_stream([ChatMessage("user", "Write a long story about a lighthouse keeper.")],
                                     SamplingParams(temperature=0.0, top_k=1, max_tokens=n, seed=0),
                                     threading.Event()):
            if isinstance(ev, ReplyDone):
                stats = ev.stats
        engine.unload()
        assert stats is not None
        tps = stats.generated_tokens_per_s
        result.update(bare_tps=round(bare_tps, 1), engine_tps=round(tps, 1),
                      engine_tokens=stats.completion_tokens, speed_ratio=round(tps / bare_tps, 3))
    return result


def run_child(cfg: dict, timeout: float) -> dict:
    proc = subprocess.run([sys.executable, "-X", "faulthandler", __file__, "--one", json.dumps(cfg)],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    for line in proc.stdout.splitlines()[::-1]:
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {**cfg, "error": f"exit {proc.returncode}: " + " | ".join(proc.stderr.strip().splitlines()[-12:])[:1500]}


def pretend_plan(path: str, vram_gib: float, ctx: int) -> dict:
    from gemmadesk.core.fit import FitOptions, plan_layout
    from gemmadesk.core.gguf_info import read_layout
    from gemmadesk.core.hardware import GPU, Hardware

    gpu = GPU("pretend", "nvidia", "discrete", int(vram_gib * 2**30), int(vram_gib * 2**30), "test", 0, True, "CUDA")
    hw = Hardware("Linux", "x86_64", "cpu", 16, 16, 128 * 2**30, 120 * 2**30, (gpu,))
    plan = plan_layout(read_layout(Path(path)), hw, FitOptions(n_ctx=ctx))
    return {"verdict": plan.verdict.value, "ngl": plan.n_gpu_layers,
            "plan_gpu_mib": round(plan.estimate.gpu_bytes / MiB, 1), "flash_attn": plan.flash_attn}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--one")
    ap.add_argument("--models", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--sizes", default="E2B,E4B,12B,26B-A4B,31B")
    ap.add_argument("--ctx", default="4096,16384,65536")
    ap.add_argument("--budget-s", type=float, default=420)
    args = ap.parse_args(argv)
    if args.one:
        print("RESULT " + json.dumps(one(json.loads(args.one))), flush=True)
        return 0
    deadline = time.monotonic() + args.budget_s
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "gpu_results.jsonl"
    sizes = [s for s in args.sizes.split(",") if (args.models / f"{s}.gguf").exists()]
    ctxs = [int(c) for c in args.ctx.split(",")]
    plan: list[dict] = []
    for size in sizes:  # first pass: one config per model incl. speed; then the grid; then partial offload
        plan.append({"size": size, "ctx": 4096, "fa": size != "E4B", "kv": "f16", "speed": True})
    for size in sizes:
        for ctx in ctxs:
            for fa in (True, False):
                for kv in ("f16", "q8_0") if fa else ("f16",):
                    if ctx == 4096 and kv == "f16" and fa == (size != "E4B"):
                        continue
                    plan.append({"size": size, "ctx": ctx, "fa": fa, "kv": kv})
    for size in sizes:
        plan.append({"size": size, "ctx": 8192, "fa": size != "E4B", "kv": "f16", "pretend_vram_gib": 8})
    with results_file.open("a") as fh:
        for cfg in plan:
            if time.monotonic() > deadline - 20:
                print("budget exhausted; stopping", flush=True)
                break
            cfg["path"] = str(args.models / f"{cfg['size']}.gguf")
            if "pretend_vram_gib" in cfg:
                p = pretend_plan(cfg["path"], cfg["pretend_vram_gib"], cfg["ctx"])
                cfg.update(ngl=p["ngl"], plan_verdict=p["verdict"], fa=p["flash_attn"])
            res = run_child(cfg, timeout=max(deadline - time.monotonic(), 30))
            fh.write(json.dumps(res) + "\n")
            fh.flush()
            print(json.dumps({k: v for k, v in res.items() if k not in ("buffers", "path")}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
