"""Fixtures for the server tests: GemmaDesk's server on real models, reached with OpenAI's own client.

- ``served3``: the real Gemma 3 270M (no chat template: GemmaDesk's Gemma fallback) behind the server,
  with API key "test-key", for the whole module.
- ``gemma4_tiny``: the synthetic Gemma 4 GGUF (real tokenizer and chat template, random weights).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.support.serving import Served, serve_gguf
from tests.support.synth_gemma4 import write_gemma4_gguf

API_KEY = "test-key"


@pytest.fixture(scope="session")
def gemma4_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gemma4_gguf(tmp_path_factory.mktemp("gemma4") / "gemma4-tiny.gguf", "tiny", seed=0)


@pytest.fixture(scope="module")
def served3(gemma3_gguf: Path) -> Iterator[Served]:
    with serve_gguf(gemma3_gguf, "gemma3-270m", api_key=API_KEY) as served:
        yield served


@pytest.fixture
def client3(served3: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=served3.base_url, api_key=API_KEY, max_retries=0, timeout=60)
