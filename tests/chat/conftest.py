"""Fixtures for the chat-core tests: a started ModelHost (its worker on a thread), real models only.

- ``host``: a :class:`ModelHost` whose ``run_forever`` runs on a thread; shut down afterwards (the test
  fails if the worker does not end).
- ``host3``: the same with the real Gemma 3 270M loaded (n_ctx 1024, 2 threads).
- ``gemma4_tiny`` (from tests/engine): a synthetic Gemma 4 GGUF with the real vocabulary and template.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gemmadesk.core.chat import ModelHost
from gemmadesk.core.history import HistoryStore
from gemmadesk.core.types import LoadSettings
from tests.engine.conftest import gemma4_tiny  # noqa: F401  (a fixture, shared)


@pytest.fixture
def host() -> Iterator[ModelHost]:
    h = ModelHost()
    worker = threading.Thread(target=h.run_forever, name="test-host", daemon=True)
    worker.start()
    yield h
    assert h.shutdown(timeout=120)
    worker.join(10)
    assert not worker.is_alive()


def load(host: ModelHost, path: Path, model_id: str = "m", n_ctx: int = 1024) -> None:
    for _ in host.load(model_id, LoadSettings(model_path=str(path), n_ctx=n_ctx, n_threads=2)):
        pass


@pytest.fixture
def host3(host: ModelHost, gemma3_gguf: Path) -> ModelHost:
    load(host, gemma3_gguf, "gemma3-270m")
    return host


@pytest.fixture
def history(tmp_path: Path) -> Iterator[HistoryStore]:
    store = HistoryStore(tmp_path / "history.sqlite3")
    yield store
    store.close()
