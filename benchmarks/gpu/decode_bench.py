#!/usr/bin/env python3
"""Decode/prefill speed on the GPU: GemmaDesk's engine vs llama.cpp's llama-bench (issue 15).

Run by ``bash benchmarks/gpu/run_gpu.sh decode`` on the device machine, after build_llama.sh built
llama.cpp once (CUDA) and the llama_cpp package uses those very libraries. Writes JSON lines to
``OUT/decode_gpu.jsonl`` (one record per measurement; report.py turns them into Markdown):

1. ``bandwidth``: device-to-device copy through PyTorch (bytes read + written ÷ time), the memory
   ceiling; and each model's bytes of weights read per token, so tok/s can be set against the limit.
2. ``llama_bench``: llama-bench pp512 / tg128 for every synthetic size (Q4_0, all layers on the GPU,
   flash attention on, -r 3): the FIT engineer calibrates speed estimates with these.
3. ``compare``: benchmarks/decode_compare.py for E2B and 12B (engine vs llama-bench vs bare loop), each
   in a fresh process.
4. ``first_token``: time from "Load" to the first token, page cache cold (dropped) and warm: the
   engine (load + chat_stream, in-process, plus the whole child process) vs ``llama-completion -n 1``
   (whole process, its default warm-up included).

    python3 benchmarks/gpu/decode_bench.py --models DIR --bin DIR --out DIR [--budget-s 420]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

ALL_SIZES = ("E2B", "E4B", "12B", "26B-A4B", "31B")


def device_bandwidth() -> dict[str, Any]:
    try:
        import torch
    except ImportError:
        return {"error": "no torch"}
    if not torch.cuda.is_available():
        return {"error": "no CUDA device"}
    n = 2 << 30  # 2 GiB of bytes, copied device to device
    a = torch.empty(n, dtype=torch.uint8, device="cuda")
    a.random_(0, 255)
    b = torch.empty_like(a)
    for _ in range(3):
        b.copy_(a)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(10):
        start.record()
        b.copy_(a)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000)
    times.sort()
    t = times[len(times) // 2]
    del a, b
    torch.cuda.empty_cache()
    return {"copy_bytes": n, "copy_s": t, "gbps_read_write": 2 * n / t / 1e9, "device": torch.cuda.get_device_name()}


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def first_token_child(model: str, ngl: int) -> None:
    """In a fresh process: import, load, first token; prints one RESULT line."""
    t_start = time.perf_counter()
    import threading

    from gemmadesk.core.engine import ChatMessage, DirectLoadSettings, Engine, SamplingParams
    from gemmadesk.core.engine.llama_adapter import llama_module

    llama_module()
    t_import = time.perf_counter()
    engine = Engine()
    engine.load(DirectLoadSettings(model_path=model, n_ctx=8192, n_gpu_layers=ngl, flash_attn=True))
    t_loaded = time.perf_counter()
    first = None
    for _ev in engine.chat_stream([ChatMessage("user", "Hi")], SamplingParams(max_tokens=1, seed=0),
                                 threading.Event()):
        if first is None:  # the first event comes right after the first token
            first = time.perf_counter()
    assert first is not None
    print("RESULT " + json.dumps({"import_s": t_import - t_start, "load_s": t_loaded - t_import,
                                  "load_to_first_token_s": first - t_import}), flush=True)
    engine.unload()


def first_token(model: Path, bin_dir: Path, ngl: int, cold: bool) -> dict[str, Any]:
    from llama_ref import tool_env

    rec: dict[str, Any] = {"kind": "first_token", "model": model.stem, "cold": cold}
    if cold and not drop_caches():
        return {**rec, "error": "cannot drop the page cache here"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--first-token-child", str(model), "--ngl", str(ngl)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    rec["engine_process_s"] = time.perf_counter() - t0
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            rec.update(json.loads(line[7:]))
    if proc.returncode:
        rec["engine_error"] = proc.stderr[-800:]
    if cold:
        drop_caches()
    t0 = time.perf_counter()
    cmd = [str(bin_dir / "llama-completion"), "-m", str(model), "-p", "Hi", "-n", "1", "-no-cnv",
           "-ngl", str(ngl), "-fa", "on", "-c", "8192", "--temp", "0"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=tool_env(), timeout=300,
                          stdin=subprocess.DEVNULL)
    rec["llama_completion_process_s"] = time.perf_counter() - t0
    if proc.returncode:
        rec["llama_completion_error"] = proc.stderr[-800:]
    return rec


def compare_child(model: str, bin_dir: str, rounds: int) -> None:
    from decode_compare import compare

    from gemmadesk.core.engine import default_threads

    threads = default_threads()
    result = compare(Path(model), threads=threads, n_gpu_layers=-1, flash_attn=True, n_ctx=8192, rounds=rounds,
                     bin_dir=Path(bin_dir), alt_device_sampling="0", log=lambda s: print(s, file=sys.stderr))
    print("RESULT " + json.dumps({**result.summary(), "columns": result.columns, "threads": threads}), flush=True)


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=Path)
    ap.add_argument("--bin", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--budget-s", type=float, default=420)
    ap.add_argument("--compare", default="E2B,12B")
    ap.add_argument("--sizes", default=",".join(ALL_SIZES))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ngl", type=int, default=-1)
    ap.add_argument("--first-token", type=int, default=1, help="0: skip the load-to-first-token part")
    ap.add_argument("--first-token-child")
    ap.add_argument("--compare-child")
    args = ap.parse_args(argv)
    if args.first_token_child:
        first_token_child(args.first_token_child, args.ngl)
        return 0
    if args.compare_child:
        compare_child(args.compare_child, str(args.bin), args.rounds)
        return 0
    from decode_compare import bytes_per_token
    from llama_ref import llama_bench

    from gemmadesk.core.engine import default_threads

    deadline = time.monotonic() + args.budget_s
    args.out.mkdir(parents=True, exist_ok=True)
    sink = (args.out / "decode_gpu.jsonl").open("a")
    gpu = args.ngl != 0

    def emit(rec: dict[str, Any]) -> None:
        sink.write(json.dumps(rec) + "\n")
        sink.flush()
        print(json.dumps({k: v for k, v in rec.items() if k != "columns"}), flush=True)

    def left() -> float:
        return deadline - time.monotonic()

    sizes = [s for s in args.sizes.split(",") if (args.models / f"{s}.gguf").exists()]
    emit({"kind": "bandwidth", **(device_bandwidth() if gpu else {}), "cccl_include": os.environ.get("CCCL_INCLUDE"),
          "bytes_per_token": {s: bytes_per_token(args.models / f"{s}.gguf") for s in sizes}})
    for size in args.compare.split(","):
        path = args.models / f"{size}.gguf"
        if not path.exists() or left() < 90:
            continue
        proc = subprocess.run([sys.executable, __file__, "--compare-child", str(path), "--bin", str(args.bin),
                               "--rounds", str(args.rounds)], capture_output=True, text=True, cwd=ROOT,
                              timeout=max(left(), 60))
        rec: dict[str, Any] = {"kind": "compare", "size": size}
        for line in proc.stdout.splitlines():
            if line.startswith("RESULT "):
                rec.update(json.loads(line[7:]))
        if proc.returncode:
            rec["error"] = proc.stderr[-1500:]
        emit(rec)
    threads = default_threads()
    for size in sizes:
        if left() < 40:
            emit({"kind": "llama_bench", "size": size, "error": "budget exhausted"})
            continue
        try:
            lb = llama_bench(args.models / f"{size}.gguf", threads=threads, reps=3, n_gpu_layers=99 if gpu else 0,
                             flash_attn=True, bin_dir=args.bin)
            emit({"kind": "llama_bench", "size": size, "threads": threads, "ngl": 99 if gpu else 0, "fa": True,
                  "reps": 3, "pp512": lb["pp"], "pp512_sd": lb["pp_sd"], "tg128": lb["tg"], "tg128_sd": lb["tg_sd"]})
        except (RuntimeError, subprocess.SubprocessError) as exc:
            emit({"kind": "llama_bench", "size": size, "error": str(exc)[-800:]})
    for size in args.compare.split(",") if args.first_token else []:
        path = args.models / f"{size}.gguf"
        for cold in (True, False):
            if not path.exists() or left() < 45:
                break
            emit(first_token(path, args.bin, args.ngl, cold))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
