#!/usr/bin/env python3
"""Run every benchmark (benchmarks/bench_*.py) and collect their sections into docs/benchmarks.md.

Convention: each ``bench_NAME.py`` is a script that measures something against a reference in the same
run (a ratio), prints a summary, and writes its Markdown section to ``benchmarks/results/NAME.md``.
Sections made elsewhere (the GPU runs in benchmarks/gpu/) are kept in results/ too and collected here.

    python3 bootstrap.py bench            # all benchmarks
    python3 bootstrap.py bench download   # only bench_download.py
    python3 bootstrap.py bench --collect  # run nothing; rebuild docs/benchmarks.md from results/
"""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
DOC = ROOT / "docs" / "benchmarks.md"


def main(argv: list[str]) -> int:
    RESULTS.mkdir(exist_ok=True)
    scripts = sorted(HERE.glob("bench_*.py"))
    if "--collect" in argv:
        scripts, argv = [], []
    if argv:
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in argv]
    failed = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        proc = subprocess.run([sys.executable, str(script)], cwd=ROOT)
        if proc.returncode:
            failed.append(script.name)
    sections = [p.read_text(encoding="utf-8").strip() for p in sorted(RESULTS.glob("*.md"))]
    header = (
        "# GemmaDesk benchmarks\n\n"
        "Produced by `python3 bootstrap.py bench` (each section says which script and when). Every number is\n"
        "measured against a reference in the same run, so ratios hold across machines better than absolute\n"
        "times. The CPU sections ran on the development machine (2 cores, 24 GiB, no GPU) unless they say\n"
        "otherwise; the GPU sections ran on NVIDIA H100 and H200 machines through `benchmarks/gpu/`.\n\n"
        f"Last collected: {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {platform.platform()}.\n"
    )
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(header + "\n" + "\n\n".join(sections) + "\n", encoding="utf-8")
    print(f"wrote {DOC}")
    if failed:
        print("failed:", ", ".join(failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
