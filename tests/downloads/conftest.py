"""Fixtures for the download and store tests: a real local Hub server and small served files."""

from __future__ import annotations

from pathlib import Path

import pytest

from gemmadesk.core.downloads import Progress, RetryPolicy
from gemmadesk.core.store import ModelStore
from tests.support.tiny_gguf import write_gguf

# Short waits so retry tests finish quickly; the stall timeout stays generous for a loaded machine.
FAST_RETRY = RetryPolicy(max_failures=5, base_wait_s=0.05, max_wait_s=0.2, stall_timeout_s=5.0,
                         connect_timeout_s=10.0)


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    """A 3 MiB GGUF shaped like Gemma 4 E2B (architecture and layer count; one tensor of random bytes, so
    several 1 MiB chunks that faults can hit the middle of). What ``hub.entry_for`` entries expect."""
    return write_gguf(tmp_path / "served" / "tiny-q4_0.gguf", tensor_bytes=3 * 1024 * 1024 + 12345)


@pytest.fixture
def store() -> ModelStore:
    return ModelStore()


class Events(list[Progress]):
    """Collects progress events; ``states`` is the sequence of distinct states seen."""

    def __call__(self, p: Progress) -> None:
        self.append(p)

    @property
    def states(self) -> list[str]:
        out: list[str] = []
        for p in self:
            if not out or out[-1] != p.state.value:
                out.append(p.state.value)
        return out


@pytest.fixture
def events() -> Events:
    return Events()
