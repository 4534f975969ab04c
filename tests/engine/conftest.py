"""Fixtures for the engine tests: real models only.

- ``gemma3_gguf`` (tests/conftest.py): the real Gemma 3 270M base model (no chat template).
- ``gemma4_tiny``: a synthetic Gemma-4-architecture GGUF (random weights, the real Gemma 4 tokenizer
  and chat template) written by tests/support/synth_gemma4.py, once per session.
- ``engine3`` / ``engine4``: an Engine with one of them loaded (n_ctx 1024), unloaded afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gemmadesk.core.engine import Engine, LoadSettings
from tests.support.synth_gemma4 import write_gemma4_gguf


@pytest.fixture(scope="session")
def gemma4_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gemma4_gguf(tmp_path_factory.mktemp("gemma4") / "gemma4-tiny.gguf", "tiny", seed=0)


def _loaded(path: Path, n_ctx: int = 1024) -> Iterator[Engine]:
    engine = Engine()
    engine.load(LoadSettings(model_path=str(path), n_ctx=n_ctx, n_threads=2))
    yield engine
    engine.unload()


@pytest.fixture
def engine3(gemma3_gguf: Path) -> Iterator[Engine]:
    yield from _loaded(gemma3_gguf)


@pytest.fixture
def engine4(gemma4_tiny: Path) -> Iterator[Engine]:
    yield from _loaded(gemma4_tiny)
