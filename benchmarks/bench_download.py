#!/usr/bin/env python3
"""Download throughput and verification cost, against a plain streaming GET of the same file.

A ~1 GiB random file is served by the local test Hub (tests/support/hubserver.py) on 127.0.0.1. In the
same run, alternating, we time:

- reference: a plain streaming ``GET`` with httpx2 (the client huggingface_hub uses), written to disk;
- GemmaDesk: ``gemmadesk.core.downloads.download`` (metadata through huggingface_hub, Range-capable
  transfer, sha256 while writing, fsync, atomic move, manifest).

Reported: throughput ratio GemmaDesk / reference (target ≥ 0.9), the time from the last byte received to
``download()`` returning (verification + install; target < 1 s for 1 GiB), and, for comparison, what a
separate second hashing pass over the file would cost. Also the cost of resuming: re-hashing a half
partial before continuing.

    python3 benchmarks/bench_download.py [--size-mib 1024] [--runs 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx2  # noqa: E402

from gemmadesk.core.downloads import (  # noqa: E402
    DownloadControl,
    DownloadPaused,
    DownloadState,
    Progress,
    RetryPolicy,
    download,
)
from gemmadesk.core.store import ModelStore, sha256_file  # noqa: E402
from tests.support.hubserver import ServedFile, catalog_entry  # noqa: E402

MiB = 1024 * 1024
RESULT = ROOT / "benchmarks" / "results" / "download.md"


def make_file(path: Path, size_mib: int) -> None:
    block = os.urandom(16 * MiB)  # random (incompressible) content; one block repeated keeps it fast
    with path.open("wb") as fh:
        for i in range(size_mib // 16):
            fh.write(block[:8] + i.to_bytes(8, "little") + block[16:])


def plain_get(url: str, dest: Path) -> float:
    t0 = time.perf_counter()
    with httpx2.Client(timeout=60) as client, client.stream("GET", url) as resp, dest.open("wb") as fh:
        resp.raise_for_status()
        for chunk in resp.iter_raw():
            fh.write(chunk)
    elapsed = time.perf_counter() - t0
    dest.unlink()
    return elapsed


def gemmadesk_get(served: ServedFile, home: Path, run: int) -> tuple[float, float]:
    """(total seconds, seconds from the last byte to download() returning)."""
    os.environ["GEMMADESK_HOME"] = str(home / f"run{run}")
    store = ModelStore()
    entry = catalog_entry(served)
    last_byte = [0.0]

    def on_progress(p: Progress) -> None:
        if p.state is DownloadState.DOWNLOADING and p.bytes_done == p.bytes_total:
            last_byte[0] = time.perf_counter()

    t0 = time.perf_counter()
    model = download(entry, store, on_progress=on_progress)
    t1 = time.perf_counter()
    assert model.status == "ok"
    model.path.unlink()
    return t1 - t0, t1 - last_byte[0]


def resume_rehash(served: ServedFile, home: Path) -> tuple[float, int]:
    """Pause half-way, resume, and time the re-hash of the partial that precedes the transfer."""
    os.environ["GEMMADESK_HOME"] = str(home / "resume")
    store = ModelStore()
    entry = catalog_entry(served)
    control = DownloadControl()
    half = served.size // 2

    def pause_half(p: Progress) -> None:
        if p.state is DownloadState.DOWNLOADING and p.bytes_done >= half:
            control.pause()

    try:
        download(entry, store, on_progress=pause_half, control=control, retry=RetryPolicy())
    except DownloadPaused:
        pass
    marks: dict[str, float] = {}

    def on_progress(p: Progress) -> None:
        if p.state is DownloadState.VERIFYING and "start" not in marks:
            marks["start"] = time.perf_counter()
        if p.state is DownloadState.DOWNLOADING and "end" not in marks and "start" in marks:
            marks["end"] = time.perf_counter()
            marks["bytes"] = p.bytes_done

    model = download(entry, store, on_progress=on_progress)
    model.path.unlink()
    return marks["end"] - marks["start"], int(marks["bytes"])


class RemoteHub:
    """The test Hub in a child process, as a real Hub would be: it does not share our CPU time or GIL."""

    def __init__(self, src: Path) -> None:
        code = (
            "import sys, json\n"
            "from pathlib import Path\n"
            "from tests.support.hubserver import HubServer\n"
            "hub = HubServer().__enter__()\n"
            f"served = hub.add_file('bench/model', Path({str(src)!r}))\n"
            "print(json.dumps({'endpoint': hub.endpoint, 'size': served.size, 'sha256': served.sha256,"
            " 'commit': served.commit}), flush=True)\n"
            "sys.stdin.read()\n"
        )
        self.proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        info = json.loads(self.proc.stdout.readline())
        self.endpoint: str = info["endpoint"]
        self.served = ServedFile("bench/model", src.name, src, info["size"], info["sha256"], info["commit"])

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gd-bench-") as tmp:
        tmpdir = Path(tmp)
        src = tmpdir / "bench-model.gguf"
        make_file(src, args.size_mib)
        hub = RemoteHub(src)
        served = hub.served
        os.environ["HF_ENDPOINT"] = hub.endpoint
        os.environ["HF_HOME"] = str(tmpdir / "hf-home")
        os.environ.setdefault("NO_PROXY", "127.0.0.1")
        url = f"{hub.endpoint}/bench/model/resolve/main/{src.name}"
        ref, ours, after = [], [], []
        for run in range(args.runs):
            ref.append(plain_get(url, tmpdir / "plain.bin"))
            total, tail = gemmadesk_get(served, tmpdir, run)
            ours.append(total)
            after.append(tail)
            print(f"run {run + 1}: plain {ref[-1]:.2f} s, GemmaDesk {total:.2f} s (after last byte {tail:.3f} s)")
        t0 = time.perf_counter()
        sha256_file(src)
        second_pass = time.perf_counter() - t0
        rehash_s, rehash_bytes = resume_rehash(served, tmpdir)
        hub.close()
    size = served.size
    ref_mbs, our_mbs = size / statistics.median(ref) / MiB, size / statistics.median(ours) / MiB
    ratio = our_mbs / ref_mbs
    best_ratio = min(ref) / min(ours)  # the machine is shared: best-of-N shows capability without the noise
    tail_s = statistics.median(after)
    print(f"plain GET {ref_mbs:.0f} MiB/s, GemmaDesk {our_mbs:.0f} MiB/s, ratio {ratio:.2f} "
          f"(best-of-{args.runs} {best_ratio:.2f}; target >= 0.9)")
    print(f"after the last byte: {tail_s:.3f} s (target < 1 s); a second hashing pass would take {second_pass:.2f} s")
    print(f"resume: re-hashing a {rehash_bytes / MiB:.0f} MiB partial took {rehash_s:.2f} s")
    write_section(args, size, ref_mbs, our_mbs, (ratio, best_ratio), tail_s, second_pass, rehash_s, rehash_bytes)
    return 0


def write_section(args: argparse.Namespace, size: int, ref_mbs: float, our_mbs: float,
                  ratios: tuple[float, float], tail_s: float, second_pass: float, rehash_s: float,
                  rehash_bytes: int) -> None:
    ratio, best_ratio = ratios
    ok = lambda good: "yes" if good else "**no**"  # noqa: E731
    text = f"""## Downloads (`bench_download.py`)

Command: `python3 benchmarks/bench_download.py --size-mib {args.size_mib} --runs {args.runs}` —
{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {platform.platform()}, {os.cpu_count()} CPUs.

A {size / MiB:.0f} MiB random file served by the local test Hub (`tests/support/hubserver.py`, 127.0.0.1),
fetched alternately by a plain streaming httpx2 GET written to disk (reference) and by GemmaDesk's
`download()` (huggingface_hub metadata, Range-capable transfer, sha256 while writing, fsync, atomic
move, manifest). Medians of {args.runs} runs each.

| Measure | Value | Target | Met |
|---|---|---|---|
| Plain GET throughput (reference) | {ref_mbs:.0f} MiB/s | | |
| GemmaDesk throughput | {our_mbs:.0f} MiB/s | | |
| Ratio GemmaDesk / reference (medians) | {ratio:.2f} | ≥ 0.9 | {ok(ratio >= 0.9)} |
| Ratio of the best runs | {best_ratio:.2f} | ≥ 0.9 | {ok(best_ratio >= 0.9)} |
| Last byte → installed (verify + fsync + move + manifest) | {tail_s:.3f} s | < 1 s | {ok(tail_s < 1.0)} |
| A separate second sha256 pass (avoided) | {second_pass:.2f} s | | |
| Resume: re-hash of a {rehash_bytes / MiB:.0f} MiB partial before continuing | {rehash_s:.2f} s | | |

The hash is computed while the bytes arrive, so verifying costs only the final digest; the resume cost is
one sequential read of the partial (hashlib cannot save its state), far cheaper than fetching it again.
"""
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(text, encoding="utf-8")
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    sys.exit(main())
