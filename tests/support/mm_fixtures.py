"""Fixtures for the image/audio tests (imported by tests/multimodal/conftest.py and
tests/hostile/test_multimodal.py): real llama.cpp, real mtmd, synthetic Gemma 4 weights.

- ``tiny_model``: the tiny synthetic Gemma 4 text model (real tokenizer and chat template), once per session.
- ``projectors``: synthetic projectors for it (tests/support/synth_gemma4_mmproj.py), written on first use:
  ``projectors("tiny")`` (vision + audio, E2B layout), ``projectors("tiny-unified")`` (12B layout),
  ``projectors("tiny", audio=False)`` (vision only, like 26B/31B), ``projectors("tiny", n_embd_text=64)``
  (made for another model).
- ``load_engine(mmproj=..., n_ctx=...)``: an Engine with the tiny model (and that projector) loaded,
  unloaded at the end of the test.
- ``attach(data, name)``: store a file with the real AttachmentStore and return its Attachment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gemmadesk.core.attachments import AttachmentStore
from gemmadesk.core.engine import Attachment, DirectLoadSettings, Engine
from tests.support.synth_gemma4 import write_gemma4_gguf
from tests.support.synth_gemma4_mmproj import write_gemma4_mmproj


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gemma4_gguf(tmp_path_factory.mktemp("mm-model") / "gemma4-tiny.gguf", "tiny", seed=0)


@pytest.fixture(scope="session")
def projectors(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    folder = tmp_path_factory.mktemp("mmproj")
    made: dict[str, Path] = {}

    def make(size: str = "tiny", **kwargs: object) -> Path:
        key = size + "".join(f"-{k}={v}" for k, v in sorted(kwargs.items()))
        if key not in made:
            made[key] = write_gemma4_mmproj(folder / f"{key}.gguf", size, **kwargs)  # type: ignore[arg-type]
        return made[key]

    return make


@pytest.fixture
def load_engine(tiny_model: Path) -> Iterator[Callable[..., Engine]]:
    engines: list[Engine] = []

    def load(mmproj: Path | None = None, n_ctx: int = 2048, model: Path | None = None) -> Engine:
        engine = Engine()
        engine.load(DirectLoadSettings(model_path=str(model or tiny_model), n_ctx=n_ctx, n_threads=2,
                                       mmproj_path=str(mmproj) if mmproj else None))
        engines.append(engine)
        return engine

    yield load
    for engine in engines:
        engine.unload()


@pytest.fixture
def store(tmp_path: Path) -> AttachmentStore:
    return AttachmentStore(root=tmp_path / "gemmadesk-home" / "data" / "attachments")


@pytest.fixture
def attach(tmp_path: Path, store: AttachmentStore) -> Callable[[bytes, str], Attachment]:
    incoming = tmp_path / "picked-by-user"

    def put(data: bytes, name: str) -> Attachment:
        incoming.mkdir(exist_ok=True)
        source = incoming / name
        source.write_bytes(data)
        return store.put(source)

    return put
