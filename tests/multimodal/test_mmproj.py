"""The synthetic projector writer against the published Gemma 4 files, and the projector header check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gemmadesk.core.mmproj import ProjectorFileError, projector_memory, read_projector
from tests.support.synth_gemma4_mmproj import PUBLISHED_BYTES, SIZES, tensor_bytes, write_gemma4_mmproj


@pytest.mark.parametrize("size", sorted(PUBLISHED_BYTES))
def test_real_size_layouts_match_the_published_projectors(size: str) -> None:
    """Names, shapes and types reproduce the published files' sizes (Unsloth's mmproj-F16, HF tree API);
    what is left is the files' own metadata and alignment padding (~110 KB for 1,360 tensors, ~2.6 KB
    for the 12B's 12). A wrong shape, type or tensor count would be off by far more."""
    metadata = PUBLISHED_BYTES[size] - tensor_bytes(SIZES[size])
    assert 0 < metadata < (150_000 if size != "12B" else 5_000)


@pytest.mark.parametrize(
    ("size", "kwargs", "vision", "audio"),
    [
        ("tiny", {}, "gemma4v", "gemma4a"),
        ("tiny", {"audio": False}, "gemma4v", None),
        ("tiny", {"vision": False}, None, "gemma4a"),
        ("tiny-unified", {}, "gemma4uv", "gemma4ua"),
    ],
)
def test_synthetic_projectors_pass_the_check(
    projectors: Callable[..., Path], size: str, kwargs: dict[str, bool], vision: str | None, audio: str | None
) -> None:
    info = read_projector(projectors(size, **kwargs))
    assert (info.vision_type, info.audio_type, info.n_embd_text) == (vision, audio, 32)
    assert info.data_bytes == tensor_bytes(SIZES[size]) if not kwargs else info.data_bytes > 0
    assert projector_memory(info, 280, flash_attn=True) > 0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"v.blk.1.ffn_down.weight": (64, 16)}, r"ffn_down\.weight has shape \[64, 16\], expected \[64, 32\]"),
        ({"v.blk.0.attn_q_norm.weight": (8,)}, "attn_q_norm"),
        ({"v.patch_embd.weight": (14, 14, 3, 32)}, "patch_embd"),
        ({"mm.input_projection.weight": None}, "mm.input_projection.weight is missing"),
        ({"a.blk.0.conv_dw.weight": (3, 32)}, r"conv_dw\.weight has shape \[3, 32\], expected \[5, 32\]"),
        ({"a.input_projection.weight": (100, 32)}, "a.input_projection"),
        ({"v.blk.0.attn_q.input_max": (2,)}, "must be one F32 number"),
        ({"mm.a.input_projection.weight": (48, 40)}, "mm.a.input_projection"),
    ],
)
def test_shapes_llama_cpp_would_abort_on_are_refused(
    tmp_path: Path, overrides: dict[str, tuple[int, ...] | None], message: str
) -> None:
    """clip.cpp builds the encoder graph with GGML_ASSERTs: a wrong shape would kill the app, not raise."""
    path = write_gemma4_mmproj(tmp_path / "bad.gguf", "tiny", overrides=overrides)
    with pytest.raises(ProjectorFileError, match=message) as info:
        read_projector(path)
    assert "Download the projector (mmproj) that belongs to this model again." in str(info.value)


def test_files_that_are_no_projector_are_refused(tmp_path: Path, projectors: Callable[..., Path]) -> None:
    from tests.support.synth_gemma4 import write_gemma4_gguf

    with pytest.raises(ProjectorFileError, match="does not exist"):
        read_projector(tmp_path / "missing.gguf")
    text = tmp_path / "notes.gguf"
    text.write_text("hello")
    with pytest.raises(ProjectorFileError, match="is not a projector"):
        read_projector(text)
    good = projectors("tiny").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(ProjectorFileError, match="incomplete .*download it again"):
        read_projector(cut)
    model = write_gemma4_gguf(tmp_path / "model.gguf", "tiny")
    with pytest.raises(ProjectorFileError, match="architecture is “gemma4”"):
        read_projector(model)


@pytest.mark.slow
@pytest.mark.parametrize(("size", "flash_attn"), [("tiny", False), ("tiny", True), ("tiny-unified", False)])
def test_encoder_memory_estimate_matches_what_clip_allocates(
    tiny_model: Path, projectors: Callable[..., Path], size: str, flash_attn: bool
) -> None:
    """The estimate against clip.cpp's own "compute buffer size" report when the engine loads it."""
    import re

    from gemmadesk.core.engine import DirectLoadSettings, Engine
    from gemmadesk.core.engine.llama_adapter import log_mark, log_since

    path = projectors(size)
    engine = Engine()
    mark = log_mark()
    engine.load(DirectLoadSettings(model_path=str(tiny_model), n_ctx=512, n_threads=2, flash_attn=flash_attn,
                                   mmproj_path=str(path)))
    try:
        lines = log_since(mark)
        assert engine.projector is not None
        budget = engine.projector.image_max_tokens
    finally:
        engine.unload()
    reported = [float(m.group(1)) for ln in lines if "reserve_compute_meta" in ln
                and (m := re.search(r"compute buffer size =\s*([0-9.]+) MiB", ln))]
    assert len(reported) == 2  # the vision and the audio encoder
    estimate = projector_memory(read_projector(path), budget, flash_attn) / 2**20
    assert 0.85 < estimate / sum(reported) < 1.3, (estimate, reported)
