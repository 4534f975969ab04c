#!/usr/bin/env python3
"""The PyInstaller bundle: its size on disk, and how fast it starts compared with the source install.

    python benchmarks/bench_bundle.py [--runs 5] [--no-build]

Builds dist/GemmaDesk with packaging/build.py (incremental, like a developer's rebuild) unless --no-build,
then measures:
- size on disk of the bundle, by component, against the 400 MB target for the CPU build;
- start-up, frozen vs ``python -m gemmadesk`` in the same run, alternating the two so that machine load
  hits both alike: time from process creation to the real main window's first paint (the self-test's
  ``window`` check reports it), and the whole ``--self-test`` without a model (window, hardware probe,
  llama.cpp loaded). Each run is a first start: a fresh, empty GEMMADESK_HOME. The page cache is warm
  (the files were just built); a first start after a reboot reads more from disk.

Writes benchmarks/results/bundle.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "bundle.md"
sys.path.insert(0, str(ROOT / "packaging"))

from build import bundle_dir, executable, tree_size  # noqa: E402  (packaging/build.py)

TARGET_BYTES = 400 * 10**6
WINDOW_RE = re.compile(r"main window painted (\d+\.\d+) s after the process started")


def components(bundle: Path) -> list[tuple[str, int]]:
    """Size of the biggest parts of the bundle, largest first."""
    internal = next((p for p in (bundle / "_internal", bundle / "Contents" / "Frameworks") if p.is_dir()), bundle)
    groups = {
        "Qt / PySide6": ("PySide6", "shiboken6", "libQt6", "libicu"),
        "llama.cpp": ("llama_cpp",),
        "numpy (+ OpenBLAS)": ("numpy",),
        "Python runtime": ("libpython", "python3", "base_library"),
        "huggingface_hub + hf_xet": ("huggingface_hub", "hf_xet"),
    }
    sizes = dict.fromkeys([*groups, "everything else"], 0)
    for p in internal.iterdir():
        size = tree_size(p) if p.is_dir() else (0 if p.is_symlink() else p.stat().st_size)
        group = next((g for g, prefixes in groups.items() if p.name.startswith(prefixes)), "everything else")
        sizes[group] += size
    return sorted(sizes.items(), key=lambda kv: -kv[1])


def run_once(cmd: list[str]) -> tuple[float, float]:
    """(seconds to the main window's first paint, seconds for the whole self-test) for one fresh start."""
    with tempfile.TemporaryDirectory(prefix="gd-bench-") as home:
        env = {**os.environ, "GEMMADESK_HOME": home, "QT_QPA_PLATFORM": "offscreen"}
        start = time.perf_counter()
        proc = subprocess.run([*cmd, "--self-test"], env=env, capture_output=True, text=True, timeout=300)
        total = time.perf_counter() - start
    match = WINDOW_RE.search(proc.stdout)
    if proc.returncode != 0 or not match:
        raise SystemExit(f"{' '.join(cmd)} --self-test failed:\n{proc.stdout}{proc.stderr}")
    return float(match.group(1)), total


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-build", action="store_true", help="measure the bundle already in dist/")
    args = parser.parse_args(argv)

    build_s = None
    if not args.no_build:
        start = time.perf_counter()
        subprocess.run([sys.executable, str(ROOT / "packaging" / "build.py"), "--quiet"], check=True, cwd=ROOT)
        build_s = time.perf_counter() - start
    bundle, exe = bundle_dir(), executable()
    if not exe.is_file():
        raise SystemExit(f"no bundle at {bundle}: run without --no-build")
    size = tree_size(bundle)

    variants = {"bundle": [str(exe)], "source": [sys.executable, "-m", "gemmadesk"]}
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(args.runs):
        for name, cmd in variants.items():
            samples[name].append(run_once(cmd))
    window = {n: statistics.median(s[0] for s in runs) for n, runs in samples.items()}
    total = {n: statistics.median(s[1] for s in runs) for n, runs in samples.items()}
    window_ratio, total_ratio = window["bundle"] / window["source"], total["bundle"] / total["source"]

    summary = (
        f"bundle {size / 1e6:.0f} MB ({size / TARGET_BYTES:.2f}x the 400 MB target); first paint "
        f"{window['bundle']:.2f} s frozen vs {window['source']:.2f} s source ({window_ratio:.2f}x); "
        f"self-test {total['bundle']:.2f} s vs {total['source']:.2f} s ({total_ratio:.2f}x)"
    )
    print(summary)
    rows = "\n".join(f"| {name} | {b / 1e6:.1f} MB |" for name, b in components(bundle))
    build_line = f"Incremental build with `packaging/build.py`: {build_s:.0f} s.\n" if build_s else ""
    md = f"""## Bundle (PyInstaller, CPU build)

`python3 benchmarks/bench_bundle.py --runs {args.runs}` on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC,
{platform.platform()}, {os.cpu_count()} CPUs.

**Size on disk: {size / 1e6:.0f} MB**, {size / TARGET_BYTES:.2f}x the 400 MB target for the CPU build.
{build_line}
| Part | Size |
|---|---|
{rows}

**Start-up, frozen vs source** (median of {args.runs} first starts each, alternated; fresh GEMMADESK_HOME,
Qt offscreen, warm page cache). *First paint* is the time from process creation to the first paint of the
real main window; *self-test* is the whole `--self-test` without a model (window, hardware probe,
llama.cpp loaded).

| | bundle | source (`python -m gemmadesk`) | bundle / source |
|---|---|---|---|
| first paint of the main window | {window["bundle"]:.2f} s | {window["source"]:.2f} s | {window_ratio:.2f}x |
| whole self-test | {total["bundle"]:.2f} s | {total["source"]:.2f} s | {total_ratio:.2f}x |

Raw first-paint times (s): bundle {", ".join(f"{s[0]:.2f}" for s in samples["bundle"])};
source {", ".join(f"{s[0]:.2f}" for s in samples["source"])}.
"""
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(md, encoding="utf-8")
    print(f"wrote {RESULT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
