"""Bad model files give a clear EngineError and leave the engine usable."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import gguf
import numpy as np
import psutil
import pytest

from gemmadesk.core.engine import (
    ChatMessage,
    Engine,
    EngineError,
    LoadSettings,
    ModelFileError,
    ModelTooLargeError,
    SamplingParams,
    UnsupportedModelError,
)
from gemmadesk.core.engine.engine import _layer_tries, _resolve_attention
from gemmadesk.core.engine.gguf_meta import GGUFInfo
from gemmadesk.core.types import KvType


def _load(engine: Engine, path: Path) -> None:
    engine.load(LoadSettings(model_path=str(path), n_ctx=256))


def _still_works(engine: Engine, good: Path) -> None:
    _load(engine, good)
    events = list(engine.chat_stream([ChatMessage("user", "Hi")], SamplingParams(max_tokens=2)))
    assert events[-1].stats.completion_tokens >= 1  # type: ignore[union-attr]
    engine.unload()


def test_truncated_gguf(gemma3_gguf: Path, tmp_path: Path) -> None:
    bad = tmp_path / "half.gguf"
    with gemma3_gguf.open("rb") as src, bad.open("wb") as dst:
        dst.write(src.read(gemma3_gguf.stat().st_size // 2))
    engine = Engine()
    with pytest.raises(ModelFileError, match="incomplete") as err:
        _load(engine, bad)
    assert "half.gguf" in str(err.value)
    assert "download it again" in str(err.value)
    _still_works(engine, gemma3_gguf)


def test_truncated_inside_the_header(gemma3_gguf: Path, tmp_path: Path) -> None:
    bad = tmp_path / "stub.gguf"
    bad.write_bytes(gemma3_gguf.read_bytes()[:4096])
    with pytest.raises(ModelFileError, match="incomplete"):
        _load(Engine(), bad)


def test_random_bytes_are_not_a_gguf(tmp_path: Path) -> None:
    bad = tmp_path / "model.gguf"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8).tobytes())
    with pytest.raises(ModelFileError, match="not a GGUF"):
        _load(Engine(), bad)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="does not exist"):
        _load(Engine(), tmp_path / "nope.gguf")


def test_unknown_architecture(gemma3_gguf: Path, tmp_path: Path) -> None:
    path = tmp_path / "alien.gguf"
    writer = gguf.GGUFWriter(path, "frobnicator")
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((8, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    engine = Engine()
    with pytest.raises(UnsupportedModelError, match="frobnicator") as err:
        _load(engine, path)
    assert "does not support" in str(err.value)
    _still_works(engine, gemma3_gguf)


def test_file_larger_than_memory(tmp_path: Path) -> None:
    """A real (sparse) GGUF whose tensor table says it is larger than this machine's RAM."""
    ram = psutil.virtual_memory().total
    n_rows = ram // (4 * 4096) + 1024
    path = tmp_path / "huge.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_tensor_info("token_embd.weight", (n_rows, 4096), np.dtype(np.float32), n_rows * 4096 * 4)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    writer.close()
    with path.open("r+b") as fh:
        fh.truncate(path.stat().st_size + 32 + n_rows * 4096 * 4)  # sparse: no disk used
    with pytest.raises(ModelTooLargeError, match="GiB"):
        _load(Engine(), path)


def test_a_bad_file_does_not_unload_the_current_model(gemma3_gguf: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_text("hello, I am text")
    engine = Engine()
    _load(engine, gemma3_gguf)
    with pytest.raises(EngineError):
        _load(engine, bad)
    assert engine.is_loaded
    assert engine.report is not None
    assert engine.report.model_path == str(gemma3_gguf)
    engine.unload()


def test_unreadable_copy_is_reported(gemma3_gguf: Path, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root reads any file; use a directory instead, which cannot be opened as a model either.
        target = tmp_path / "dir.gguf"
        target.mkdir()
    else:
        target = tmp_path / "locked.gguf"
        shutil.copy(gemma3_gguf, target)
        target.chmod(0)
    with pytest.raises(ModelFileError, match="cannot be read|not a GGUF"):
        _load(Engine(), target)


def test_gpu_retry_plan() -> None:
    assert _layer_tries(0, 35) == [0]
    assert _layer_tries(36, 35) == [36, 18, 0]
    assert _layer_tries(-1, 35) == [-1, 18, 0]
    assert _layer_tries(1, 35) == [1, 0]


def test_quantized_v_cache_without_flash_attention_falls_back_to_f16(gemma3_gguf: Path) -> None:
    engine = Engine()
    report = engine.load(
        LoadSettings(model_path=str(gemma3_gguf), n_ctx=256, flash_attn=False, type_k=KvType.Q8_0, type_v=KvType.Q8_0)
    )
    engine.unload()
    assert (report.type_k, report.type_v) == ("q8_0", "f16")
    assert any("needs flash attention" in note for note in report.notes)


def test_e4b_gets_flash_attention_off_on_the_gpu(tmp_path: Path) -> None:
    e4b = GGUFInfo(
        tmp_path / "e4b.gguf", 3, 0, 0, 0, {"general.architecture": "gemma4", "gemma4.embedding_length": 2560}
    )  # (path, version, file_bytes, data_start, data_end, metadata)
    on_gpu = LoadSettings(model_path="x", n_gpu_layers=43, flash_attn=True, type_k=KvType.Q8_0, type_v=KvType.Q8_0)
    flash, type_k, type_v, notes = _resolve_attention(e4b, on_gpu, 43)
    assert (flash, type_k, type_v) == (False, "q8_0", "f16")
    assert len(notes) == 2
    on_cpu = LoadSettings(model_path="x", n_gpu_layers=0, flash_attn=True, type_k=KvType.Q8_0, type_v=KvType.Q8_0)
    assert _resolve_attention(e4b, on_cpu, 0) == (True, "q8_0", "q8_0", [])
