#!/usr/bin/env python3
"""llama.cpp's own tools, built from the very sources llama-cpp-python vendors, as the benchmarks' reference.

The engine is measured against ``llama-bench`` (and ``llama-completion``, the classic one-shot
``llama-cli``) compiled from ``vendor/llama.cpp`` of the installed llama-cpp-python version's sdist, so
the ratio compares the same llama.cpp. By default the tools run against the *installed* package's
shared libraries (``llama_cpp/lib`` first on ``LD_LIBRARY_PATH``; the binaries use RUNPATH, which that
overrides), so the very same ggml kernels run in both columns and only the driving loop differs.

    python3 benchmarks/llama_ref.py build             # CPU build into the cache folder (once, minutes)
    python3 benchmarks/llama_ref.py bench MODEL.gguf  # llama-bench pp512/tg128 as JSON

The sdist comes from pip's cache (``pip download --no-binary :all:``); the build goes to
``$GEMMADESK_BENCH_CACHE`` (default ``~/.cache/gemmadesk-bench``). The GPU scripts build the same way
with CUDA flags (benchmarks/gpu/build_llama.sh).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

TARGETS = ("llama-bench", "llama-completion")
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_CURL=OFF",
)


def llama_version() -> str:
    return importlib.metadata.version("llama-cpp-python")


def cache_dir() -> Path:
    root = os.environ.get("GEMMADESK_BENCH_CACHE") or str(Path.home() / ".cache" / "gemmadesk-bench")
    return Path(root) / f"llama.cpp-{llama_version()}"


def installed_lib_dir() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("llama_cpp")
    if spec is None or spec.origin is None:
        raise RuntimeError("llama_cpp is not installed")
    return Path(spec.origin).parent / "lib"


def fetch_sources(dest: Path) -> Path:
    """``dest/llama.cpp``: the vendored llama.cpp of the installed llama-cpp-python (without models/.git)."""
    src = dest / "llama.cpp"
    if (src / "CMakeLists.txt").exists():
        return src
    dl = dest / "sdist"
    dl.mkdir(parents=True, exist_ok=True)
    version = llama_version()
    found = sorted(dl.glob(f"llama_cpp_python-{version}.tar.gz"))
    if not found:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             f"llama-cpp-python=={version}", "-d", str(dl)],
            check=True,
        )
        found = sorted(dl.glob(f"llama_cpp_python-{version}.tar.gz"))
    prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
    skip = (prefix + "models/", prefix + ".git", prefix + "docs/", prefix + "tools/ui/")
    tmp = dest / "llama.cpp.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    with tarfile.open(found[0]) as tar:
        members = []
        for m in tar.getmembers():
            if not m.name.startswith(prefix) or m.name.startswith(skip) or not (m.isfile() or m.isdir()):
                continue
            m.name = m.name[len(prefix):]
            members.append(m)
        tar.extractall(tmp, members=members, filter="data")
    tmp.rename(src)
    return src


def build(extra_flags: tuple[str, ...] = (), jobs: int | None = None, targets: tuple[str, ...] = TARGETS) -> Path:
    """Build the tools (once); returns the folder holding the binaries."""
    root = cache_dir()
    src = fetch_sources(root)
    out = root / ("build-" + ("gpu" if any("CUDA" in f for f in extra_flags) else "cpu"))
    bin_dir = out / "bin"
    if all((bin_dir / t).exists() for t in targets):
        return bin_dir
    gen = ["-G", "Ninja"] if shutil.which("ninja") else []
    subprocess.run(["cmake", "-S", str(src), "-B", str(out), *gen, *CMAKE_FLAGS, *extra_flags], check=True,
                   stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", str(out), "--target", *targets, "-j", str(jobs or os.cpu_count() or 2)],
                   check=True, stdout=subprocess.DEVNULL)
    return bin_dir


def tool_env(own_libs: bool = False) -> dict[str, str]:
    """Environment for running a built tool: the installed package's libraries unless ``own_libs``."""
    env = dict(os.environ)
    if not own_libs:
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(installed_lib_dir()), env.get("LD_LIBRARY_PATH")]))
    return env


def llama_bench(
    model: Path | str,
    *,
    threads: int,
    n_prompt: int = 512,
    n_gen: int = 128,
    reps: int = 3,
    n_gpu_layers: int = 0,
    flash_attn: bool = False,
    extra: tuple[str, ...] = (),
    bin_dir: Path | None = None,
    own_libs: bool = False,
) -> dict[str, float]:
    """Mean tok/s of llama-bench's ``pp<n_prompt>`` and ``tg<n_gen>`` tests (keys ``pp``, ``tg``)."""
    exe = (bin_dir or build()) / "llama-bench"
    cmd = [str(exe), "-m", str(model), "-t", str(threads), "-p", str(n_prompt), "-n", str(n_gen),
           "-r", str(reps), "-ngl", str(n_gpu_layers), "-fa", "1" if flash_attn else "0", "-o", "json", *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=tool_env(own_libs), check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"llama-bench failed ({proc.returncode}): {proc.stderr[-2000:]}")
    rows: list[dict[str, Any]] = json.loads(proc.stdout)
    result: dict[str, float] = {}
    for row in rows:
        key = "pp" if row.get("n_gen", 0) == 0 else "tg"
        result[key] = float(row["avg_ts"])
        result[key + "_sd"] = float(row.get("stddev_ts", 0.0))
    return result


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--cmake", nargs="*", default=[])
    b.add_argument("-j", type=int)
    r = sub.add_parser("bench")
    r.add_argument("model")
    r.add_argument("-t", "--threads", type=int, default=1)
    r.add_argument("-r", "--reps", type=int, default=3)
    args = ap.parse_args(argv)
    if args.cmd == "build":
        print(build(tuple(args.cmake), args.j))
    else:
        print(json.dumps(llama_bench(args.model, threads=args.threads, reps=args.reps)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
