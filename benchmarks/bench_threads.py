#!/usr/bin/env python3
"""Decode threads under background load: tokens/s with 1 … N threads, with and without busy neighbours.

A desktop always has other work. llama.cpp's threads meet at a barrier after every operation, so one
thread that the OS parks behind another process stalls all of them: on a 2-core machine with one core
busy, 2 threads decoded at a fraction of what 1 thread did. This measures it with busy-loop neighbour
processes (``while True: pass``, one per busy core) and reports, per model and load, the tokens/s of each
thread count, GemmaDesk's default (``hardware.decode_threads``) and the old default (all physical cores).

Runs alternate the thread counts (A/B/B/A) so slow drifts in the machine's load hit both alike.

    python3 benchmarks/bench_threads.py [--rounds 4] [--tokens 48] [--sizes E2B] [--neighbours 0,1]
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULT = ROOT / "benchmarks" / "results" / "threads.md"
LINE = re.compile(r"^(?P<name>.+), (?P<n>\d+) neighbour\(s\), (?P<t>\d+) thread\(s\): (?P<tps>[\d.]+) tok/s$")

from benchmarks.bench_speed import measure_once  # noqa: E402


def start_neighbours(n: int) -> list[subprocess.Popen[bytes]]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def stop_neighbours(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.kill()
        p.wait()


def main() -> int:
    import psutil

    from gemmadesk.core.hardware import decode_threads

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--sizes", default="E2B", help="synthetic Gemma 4 sizes besides the real Gemma 3 270M")
    ap.add_argument("--no-gemma3", action="store_true", help="only the synthetic sizes")
    ap.add_argument("--append", action="store_true", help="add the rows to the existing results table")
    ap.add_argument("--from-log", type=Path, help="rebuild the table from this script's printed lines (no runs)")
    ap.add_argument("--neighbours", default="0,1", help="busy-loop neighbour counts to run under")
    ap.add_argument("--keep", type=Path, help="keep the synthetic GGUFs in this folder (and reuse them)")
    args = ap.parse_args()
    cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    counts = list(range(1, cores + 1))
    policy, old = decode_threads(cores), cores
    from tests.support.assets import gemma3_gguf
    from tests.support.synth_gemma4 import write_gemma4_gguf

    results: list[tuple[str, int, dict[int, list[float]]]] = []
    load_before = os.getloadavg()
    if args.from_log:
        found: dict[tuple[str, int], dict[int, list[float]]] = {}
        for line in args.from_log.read_text(encoding="utf-8").splitlines():
            m = LINE.match(line)
            if m:
                speeds_of = found.setdefault((m["name"], int(m["n"])), {t: [] for t in counts})
                speeds_of.setdefault(int(m["t"]), []).append(float(m["tps"]))
        results = [(name, n, sp) for (name, n), sp in found.items() if all(sp.get(t) for t in counts)]
        models = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("GEMMADESK_BENCH_TMP")) as tmp:
        models = [] if args.no_gemma3 or args.from_log else [("Gemma 3 270M (real)", gemma3_gguf())]
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for size in [s for s in args.sizes.split(",") if s and not args.from_log]:
            path = folder / f"gemma4-{size}.gguf"
            if not path.exists():
                write_gemma4_gguf(path, size=size)
            models.append((f"Gemma 4 {size} (synthetic)", path))
        for name, path in models:
            for n in (int(x) for x in args.neighbours.split(",")):
                procs = start_neighbours(n)
                try:
                    speeds: dict[int, list[float]] = {t: [] for t in counts}
                    for r in range(args.rounds):
                        for t in counts if r % 2 == 0 else list(reversed(counts)):
                            tps = measure_once(path, t, args.tokens)["tok_s"]
                            speeds[t].append(tps)
                            print(f"{name}, {n} neighbour(s), {t} thread(s): {tps:.1f} tok/s", flush=True)
                finally:
                    stop_neighbours(procs)
                results.append((name, n, speeds))
    load_after = os.getloadavg()

    rows = []
    for name, n, speeds in results:
        med = {t: statistics.median(v) for t, v in speeds.items()}
        best = max(med.values())
        cells = " | ".join(f"{med[t]:.1f}" for t in counts)
        rows.append(f"| {name} | {n} | {cells} | {med[policy] / best:.2f} | {med[old] / best:.2f} |")
        rows.append("| (runs) | | " + " | ".join(", ".join(f"{x:.1f}" for x in speeds[t]) for t in counts) + " | | |")
    command = (f"`python3 benchmarks/bench_threads.py --rounds {args.rounds} --tokens {args.tokens} "
               f"--sizes {args.sizes}{' --no-gemma3' if args.no_gemma3 else ''} --neighbours {args.neighbours}` on "
               f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, load average {load_before[0]:.1f} before and "
               f"{load_after[0]:.1f} after")
    if args.from_log:
        command = (f"From the printed lines of `bench_threads.py --rounds {args.rounds} --tokens {args.tokens}` "
                   f"(the run was stopped before its last model), tabled with `--from-log` on "
                   f"{dt.datetime.now(dt.UTC):%Y-%m-%d} (load average {load_before[0]:.1f} at the end: other "
                   "engineers' jobs)")
    if args.append and RESULT.exists():
        text = RESULT.read_text(encoding="utf-8").rstrip("\n")
        head, _, table = text.partition("\n| model |")
        head = head.rstrip() + f"\n\nAlso: {command}."
        RESULT.write_text(head + "\n\n| model |" + table + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
        print("\n".join(rows))
        return 0
    lines = [
        "## Decode threads under background load (`bench_threads.py`)",
        "",
        f"{command}; {platform.platform()}, {cores} physical cores (the machine is shared with other engineers' "
        "jobs: \"0 neighbours\" still has their load).",
        "",
        "Tokens/s of `Engine.chat_stream` (medians of alternating runs); a neighbour is a busy-loop process "
        "keeping one core busy. *New default* is `hardware.decode_threads(cores)` (what the engine uses now), "
        "*old default* all physical cores.",
        "",
        "Why: llama.cpp's threads meet at a barrier after every operation of every token, and its worker threads "
        "spin while they wait. When another process holds one of the cores, the thread parked behind it holds "
        "up the rest, so every token waits for the scheduler: with 2 threads on 2 cores a desktop's background "
        "work (here: the other engineers' jobs, plus a busy-loop neighbour) costs far more than the second "
        "core adds. On an idle machine a second thread would add at most the second core's share (this shared "
        "machine was never idle, so that could not be measured here); one thread fewer than cores degrades "
        "gracefully instead. So the engine now decodes with all physical cores but one "
        "(`hardware.decode_threads`; a 2-core machine uses 1, 4 cores 3, 16 cores 15); decoding is bound by "
        "memory bandwidth, which fewer threads than cores already saturate on larger machines. A user can "
        "still set the count explicitly (`LoadSettings.n_threads`).",
        "",
        "| model | neighbours | " + " | ".join(f"{t} thread{'s' if t > 1 else ''}" for t in counts)
        + f" | new default ({policy}) ÷ best | old default ({old}) ÷ best |",
        "|---|---:|" + "---:|" * len(counts) + "---:|---:|",
    ]
    lines += rows
    lines.append("")
    RESULT.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
