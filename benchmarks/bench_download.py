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
from dataclasses import dataclass, field
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
from tests.support.tiny_gguf import gguf_header  # noqa: E402

MiB = 1024 * 1024
LINE_BPS = 125_000_000  # 1 Gbit/s
RESULT = ROOT / "benchmarks" / "results" / "download.md"


def make_file(path: Path, size_mib: int) -> None:
    """A GGUF shaped like Gemma 4 E2B (what ``catalog_entry`` expects: the downloader checks the header)
    whose one tensor is random, incompressible bytes."""
    block = os.urandom(16 * MiB)  # one block repeated (with a counter) keeps it fast
    with path.open("wb") as fh:
        fh.write(gguf_header(tensor_bytes=size_mib * MiB))
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

    def __init__(self, src: Path, rate_bps: float | None = None) -> None:
        code = (
            "import sys, json\n"
            "from pathlib import Path\n"
            "from tests.support.hubserver import HubServer\n"
            f"hub = HubServer(rate_bps={rate_bps!r}).__enter__()\n"
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


@dataclass
class Comparison:
    """Alternating runs of the reference GET and GemmaDesk over one served file."""

    label: str
    size: int
    ref: list[float] = field(default_factory=list)
    ours: list[float] = field(default_factory=list)
    tails: list[float] = field(default_factory=list)

    @property
    def ref_mibs(self) -> float:
        return self.size / statistics.median(self.ref) / MiB

    @property
    def our_mibs(self) -> float:
        return self.size / statistics.median(self.ours) / MiB

    @property
    def ratio(self) -> float:
        return self.our_mibs / self.ref_mibs

    @property
    def best_ratio(self) -> float:  # the machine is shared: best-of-N shows capability without the noise
        return min(self.ref) / min(self.ours)


def compare(label: str, src: Path, tmpdir: Path, runs: int, rate_bps: float | None) -> Comparison:
    hub = RemoteHub(src, rate_bps)
    try:
        os.environ["HF_ENDPOINT"] = hub.endpoint
        url = f"{hub.endpoint}/bench/model/resolve/main/{src.name}"
        result = Comparison(label, hub.served.size)
        for run in range(runs):
            result.ref.append(plain_get(url, tmpdir / "plain.bin"))
            total, tail = gemmadesk_get(hub.served, tmpdir, run)
            result.ours.append(total)
            result.tails.append(tail)
            print(f"{label} run {run + 1}: plain {result.ref[-1]:.2f} s, GemmaDesk {total:.2f} s "
                  f"(after last byte {tail:.3f} s)", flush=True)
        print(f"{label}: plain {result.ref_mibs:.0f} MiB/s, GemmaDesk {result.our_mibs:.0f} MiB/s, "
              f"ratio {result.ratio:.2f} (best runs {result.best_ratio:.2f}; target >= 0.9)")
        return result
    finally:
        hub.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--line-mib", type=int, default=384, help="file size for the 1 Gbit/s line runs")
    parser.add_argument("--line-runs", type=int, default=3)
    parser.add_argument("--result", type=Path, default=RESULT, help="where to write the Markdown section")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gd-bench-") as tmp:
        tmpdir = Path(tmp)
        os.environ["HF_HOME"] = str(tmpdir / "hf-home")
        os.environ.setdefault("NO_PROXY", "127.0.0.1")
        src = tmpdir / "bench-model.gguf"
        make_file(src, args.size_mib)
        loopback = compare("loopback", src, tmpdir, args.runs, None)
        t0 = time.perf_counter()
        sha256_file(src)
        second_pass = time.perf_counter() - t0
        hub = RemoteHub(src)
        os.environ["HF_ENDPOINT"] = hub.endpoint
        rehash_s, rehash_bytes = resume_rehash(hub.served, tmpdir)
        hub.close()
        line_src = tmpdir / "bench-line.gguf"
        make_file(line_src, args.line_mib)
        line = compare("1 Gbit/s line", line_src, tmpdir, args.line_runs, LINE_BPS)
    tail_s = statistics.median(loopback.tails)
    print(f"after the last byte: {tail_s:.3f} s for {loopback.size / MiB:.0f} MiB (target < 1 s); "
          f"a second hashing pass would take {second_pass:.2f} s")
    print(f"resume: re-hashing a {rehash_bytes / MiB:.0f} MiB partial took {rehash_s:.2f} s")
    write_section(args, [loopback, line], tail_s, second_pass, rehash_s, rehash_bytes)
    return 0


def write_section(args: argparse.Namespace, results: list[Comparison], tail_s: float, second_pass: float,
                  rehash_s: float, rehash_bytes: int) -> None:
    def ok(good: bool) -> str:
        return "yes" if good else "**no**"

    rows = "\n".join(
        f"| {r.label} | {r.size / MiB:.0f} MiB | {len(r.ref)} | {r.ref_mibs:.0f} MiB/s "
        f"| {r.our_mibs:.0f} MiB/s "
        f"| {r.ratio:.2f} ({ok(r.ratio >= 0.9)}) | {r.best_ratio:.2f} |"
        for r in results
    )
    size = results[0].size
    text = f"""## Downloads (`bench_download.py`)

Command: `python3 benchmarks/bench_download.py --size-mib {args.size_mib} --runs {args.runs} --line-mib \
{args.line_mib} --line-runs {args.line_runs}` — {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC,
{platform.platform()}, {os.cpu_count()} CPUs (a shared machine: other work ran at the same time).

A random file served by the local test Hub (`tests/support/hubserver.py`, in its own process, 127.0.0.1),
fetched alternately by a plain streaming httpx2 GET written to disk (reference) and by GemmaDesk's
`download()` (huggingface_hub metadata, Range-capable transfer, sha256 on a helper thread while
writing, background flushes, fsync, atomic move, manifest). "loopback" is unthrottled: CPU-bound, the
worst case for hashing; "1 Gbit/s line" caps the server at 125 MB/s, a fast real connection.

| Link | File | Runs | Plain GET (median) | GemmaDesk (median) | Ratio (≥ 0.9) | Ratio, best runs |
|---|---|---|---|---|---|---|
{rows}

| Measure | Value | Target | Met |
|---|---|---|---|
| Last byte → installed, {size / MiB:.0f} MiB (digest + fsync + move + manifest), median | {tail_s:.3f} s \
| < 1 s | {ok(tail_s < 1.0)} |
| A separate second sha256 pass over the same file (avoided) | {second_pass:.2f} s | | |
| Resume: re-hash of a {rehash_bytes / MiB:.0f} MiB partial before continuing | {rehash_s:.2f} s | | |

On loopback the transfer is CPU-bound: hashing costs about {second_pass:.1f} s of CPU per
{size / MiB:.0f} MiB, and with the cores shared by the server process, the client and other jobs
there is no idle core to hide it in, so GemmaDesk falls short of the target there. At a real line
rate the hash thread keeps up and the ratio is what a user sees. Verification adds only the final
digest after the last byte because the data was hashed (and mostly flushed to disk) while it arrived.
"""
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(text, encoding="utf-8")
    print(f"wrote {args.result}")


if __name__ == "__main__":
    sys.exit(main())
