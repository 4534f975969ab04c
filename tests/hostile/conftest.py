"""Shared helpers for the hostile-input tests (issue 10): every attack must end with a clear message,
bounded time and memory, and nothing outside GemmaDesk's folders created, changed or deleted.

- ``decoy``: a folder *outside* GEMMADESK_HOME filled with files (and a symlink) that GemmaDesk must never
  touch; ``decoy.assert_untouched()`` compares a snapshot (path, type, size, mtime, sha256) before/after.
- ``run_cli(*args, timeout=, max_rss_mib=)``: runs ``python -m gemmadesk`` (the CLI) in a child process with an
  address-space limit and a wall-clock limit, returns (returncode, stdout, stderr, seconds, max_rss_mib).
"""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def _snapshot(root: Path) -> dict[str, tuple[str, int, int, str]]:
    out: dict[str, tuple[str, int, int, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            if p.is_symlink():
                out[str(p.relative_to(root))] = ("link", 0, st.st_mtime_ns, os.readlink(p))
            elif p.is_dir():
                out[str(p.relative_to(root))] = ("dir", 0, 0, "")
            else:
                digest = hashlib.sha256(p.read_bytes()).hexdigest()
                out[str(p.relative_to(root))] = ("file", st.st_size, st.st_mtime_ns, digest)
    return out


@dataclass
class Decoy:
    root: Path
    before: dict[str, tuple[str, int, int, str]]

    def assert_untouched(self) -> None:
        after = _snapshot(self.root)
        assert after == self.before, {
            "created": sorted(set(after) - set(self.before)),
            "deleted": sorted(set(self.before) - set(after)),
            "changed": sorted(k for k in set(after) & set(self.before) if after[k] != self.before[k]),
        }


@pytest.fixture
def decoy(tmp_path: Path) -> Decoy:
    """A user's folder beside (not inside) GEMMADESK_HOME, including a .gguf of their own and a symlink."""
    root = tmp_path / "users-own-files"
    (root / "OUTSIDE").mkdir(parents=True)
    (root / "OUTSIDE" / "f.gguf").write_bytes(b"GGUF user's own file, not GemmaDesk's")
    (root / "notes.txt").write_text("precious")
    (root / "link-to-notes.txt").symlink_to(root / "notes.txt")
    return Decoy(root, _snapshot(root))


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    max_rss_mib: float


def run_cli(*args: str, timeout: float = 60, max_rss_mib: int = 2048, env: dict[str, str] | None = None,
            stdin: str | None = None) -> CliResult:
    """``gemmadesk-cli ARGS`` in a child process, memory-capped (RLIMIT_AS) and time-capped."""

    def limit() -> None:
        cap = max_rss_mib * 2**20 + 2**30  # address space: the RSS cap plus room for mapped libraries
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "gemmadesk", *args], capture_output=True, text=True, timeout=timeout,
        cwd=REPO_ROOT, env={**os.environ, **(env or {})}, preexec_fn=limit, input=stdin,
    )  # fmt: skip
    seconds = time.monotonic() - started
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if rss <= before / 1024:  # ru_maxrss of children is a high-water mark across all children so far
        rss = 0.0
    return CliResult(proc.returncode, proc.stdout, proc.stderr, seconds, rss)
