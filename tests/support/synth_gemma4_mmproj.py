"""Write synthetic Gemma 4 projector ("mmproj") GGUFs: random weights, the real tensor names, shapes,
types and hyper-parameter keys that llama.cpp's multimodal library (mtmd) reads.

Real Gemma 4 projectors cannot be downloaded here. What llama.cpp needs from one is read from the sources
vendored in llama-cpp-python 0.3.36 (``vendor/llama.cpp``):

- keys: ``tools/mtmd/clip-impl.h`` (``clip.*``) and ``clip.cpp`` ``load_hparams`` (what is required, what
  is hard-coded per projector type: Gemma 4 vision merges 3×3 patches, RoPE θ 100, 70…1120 tokens per
  image; Gemma 4 audio is 16 kHz, 128 mel bins, 30-second chunks);
- tensors: ``clip.cpp`` ``load_tensors`` and the graphs ``tools/mtmd/models/gemma4{v,uv,a,ua}.cpp``;
- names, shapes and types as the converter writes them: ``conversion/gemma.py``
  (``Gemma4VisionAudioModel``, ``Gemma4UnifiedVisionAudioModel``) through ``gguf-py``'s tensor map
  (HF ``model.vision_tower.encoder.layers.N.self_attn.q_proj.linear.weight`` → ``v.blk.N.attn_q.weight``);
  the converter forces F32 for audio convolutions, ``a.input_projection`` (its HF name contains
  ``_conv``) and the position table; the published 12B file holds its patch projection in F32;
- sizes from the published HF configs: E2B/E4B vision tower 768 wide, 16 layers, 12 heads, FFN 3072;
  26B/31B 1152 wide, 27 layers, 16 heads, FFN 4304; the E2B/E4B audio conformer 1024 wide, 12 layers,
  8 heads, output 1536; the 12B "unified" projectors are encoder-free (48-pixel patches → 3840, raw
  640-sample audio frames → 3840).

Projector types: ``gemma4v`` + ``gemma4a`` in one file (E2B, E4B: vision and audio), ``gemma4v`` only
(26B A4B, 31B), ``gemma4uv`` + ``gemma4ua`` (12B). The "real" sizes reproduce the published file sizes
within their metadata (see :data:`PUBLISHED_BYTES`): E2B 985,654,080 / E4B 990,372,672 / 12B 175,115,840.

"tiny" pairs with ``synth_gemma4``'s tiny text model (embedding 32): a 2-layer vision tower and a 2-layer
conformer, ~4 MB, encodes an image in milliseconds on a CPU. "tiny-unified" is the 12B layout at width
32. Random weights make garbage replies: the point is exercising the real mtmd path (preprocessing,
encoding, decoding image/audio embeddings into the KV cache), memory use and speed.

CLI: ``python -m tests.support.synth_gemma4_mmproj OUT.gguf --size E2B [--no-audio] [--seed 0]``
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CHUNK_BYTES = 64 << 20
F32, F16 = 0, 1  # GGML type ids
CLAMP = 1.0e4  # Gemma4ClippableLinear bounds (wide: random weights should not be clipped)


@dataclass(frozen=True)
class Vision:
    kind: str  # "gemma4v" (ViT tower) | "gemma4uv" (encoder-free, 12B)
    n_embd: int  # tower width (gemma4uv: mm_embed_dim)
    n_ff: int = 0
    n_layer: int = 0
    n_head: int = 0
    patch: int = 16  # the key clip.vision.patch_size; gemma4uv uses patch × 3 pixels per token
    pos_size: int = 10240  # position_embedding_size (gemma4uv: mm_posemb_size)


@dataclass(frozen=True)
class Audio:
    kind: str  # "gemma4a" (conformer, E2B/E4B) | "gemma4ua" (encoder-free, 12B)
    n_embd: int  # conformer width (gemma4ua: samples per frame, 640)
    n_layer: int = 0
    n_head: int = 0
    out_dims: int = 0  # output_proj_dims
    n_mel: int = 128
    sscp: tuple[int, int] = (128, 32)  # subsampling conv channels
    conv_kernel: int = 5


@dataclass(frozen=True)
class ProjectorShape:
    n_embd_text: int
    vision: Vision | None
    audio: Audio | None


_E_VISION = Vision("gemma4v", 768, 3072, 16, 12)
_E_AUDIO = Audio("gemma4a", 1024, 12, 8, 1536)
_BIG_VISION = Vision("gemma4v", 1152, 4304, 27, 16)

SIZES: dict[str, ProjectorShape] = {
    "tiny": ProjectorShape(32, Vision("gemma4v", 32, 64, 2, 2), Audio("gemma4a", 32, 2, 2, 48, sscp=(8, 4))),
    "tiny-unified": ProjectorShape(32, Vision("gemma4uv", 32, pos_size=1120), Audio("gemma4ua", 640)),
    "E2B": ProjectorShape(1536, _E_VISION, _E_AUDIO),
    "E4B": ProjectorShape(2560, _E_VISION, _E_AUDIO),
    "12B": ProjectorShape(3840, Vision("gemma4uv", 3840, pos_size=1120), Audio("gemma4ua", 640)),
    "26B-A4B": ProjectorShape(2816, _BIG_VISION, None),
    "31B": ProjectorShape(5376, _BIG_VISION, None),
}

# Sizes of the published projector files (Unsloth's mmproj-F16, HF tree API; gemma4-qat-facts.md §2).
PUBLISHED_BYTES = {"E2B": 985_654_080, "E4B": 990_372_672, "12B": 175_115_840}


def _linear(name: str, n_in: int, n_out: int, clamp: bool) -> Iterator[tuple[str, tuple[int, ...], int]]:
    """A Gemma4ClippableLinear: the weight (ggml ne = in, out) and, if clipped, its four F32 bounds."""
    yield f"{name}.weight", (n_in, n_out), F16
    if clamp:
        for bound in ("input_max", "input_min", "output_max", "output_min"):
            yield f"{name}.{bound}", (1,), F32


def _vision_tensors(v: Vision, n_embd_text: int) -> Iterator[tuple[str, tuple[int, ...], int]]:
    if v.kind == "gemma4uv":
        p = v.patch * 3  # the 3×3 pooling is folded into one 48-pixel patch
        yield "v.patch_embd.weight", (p * p * 3, v.n_embd), F32
        yield "v.patch_embd.bias", (v.n_embd,), F32
        for i, width in ((1, p * p * 3), (2, v.n_embd), (3, v.n_embd)):
            yield f"v.patch_norm.{i}.weight", (width,), F32
            yield f"v.patch_norm.{i}.bias", (width,), F32
        yield "v.position_embd.weight", (v.n_embd, v.pos_size, 2), F32
        yield "mm.input_projection.weight", (v.n_embd, n_embd_text), F16
        return
    d, hd = v.n_embd, v.n_embd // v.n_head
    yield "v.patch_embd.weight", (v.patch, v.patch, 3, d), F16
    yield "v.position_embd.weight", (d, v.pos_size, 2), F32
    for il in range(v.n_layer):
        b = f"v.blk.{il}"
        yield f"{b}.ln1.weight", (d,), F32
        for proj in ("attn_q", "attn_k", "attn_v"):
            yield from _linear(f"{b}.{proj}", d, d, True)
        yield f"{b}.attn_q_norm.weight", (hd,), F32
        yield f"{b}.attn_k_norm.weight", (hd,), F32
        yield from _linear(f"{b}.attn_out", d, d, True)
        yield f"{b}.attn_post_norm.weight", (d,), F32
        yield f"{b}.ln2.weight", (d,), F32
        yield from _linear(f"{b}.ffn_gate", d, v.n_ff, True)
        yield from _linear(f"{b}.ffn_up", d, v.n_ff, True)
        yield from _linear(f"{b}.ffn_down", v.n_ff, d, True)
        yield f"{b}.ffn_post_norm.weight", (d,), F32
        yield f"{b}.out_scale.weight", (1,), F32
    yield "mm.input_projection.weight", (d, n_embd_text), F16


def _audio_tensors(a: Audio, n_embd_text: int) -> Iterator[tuple[str, tuple[int, ...], int]]:
    if a.kind == "gemma4ua":
        yield "mm.a.input_projection.weight", (a.n_embd, n_embd_text), F16
        return
    d, hd = a.n_embd, a.n_embd // a.n_head
    c0, c1 = a.sscp
    freq = a.n_mel
    for _ in range(2):
        freq = (freq - 1) // 2 + 1  # two stride-2 convolutions with padding 1
    yield "a.conv1d.0.weight", (3, 3, 1, c0), F32
    yield "a.conv1d.0.norm.weight", (c0,), F32
    yield "a.conv1d.1.weight", (3, 3, c0, c1), F32
    yield "a.conv1d.1.norm.weight", (c1,), F32
    yield "a.input_projection.weight", (freq * c1, d), F32
    for il in range(a.n_layer):
        b = f"a.blk.{il}"
        yield f"{b}.ffn_norm.weight", (d,), F32
        yield from _linear(f"{b}.ffn_up", d, 4 * d, True)
        yield from _linear(f"{b}.ffn_down", 4 * d, d, True)
        yield f"{b}.ffn_post_norm.weight", (d,), F32
        yield f"{b}.attn_pre_norm.weight", (d,), F32
        for proj in ("attn_q", "attn_k", "attn_v"):
            yield from _linear(f"{b}.{proj}", d, d, True)
        yield f"{b}.attn_k_rel.weight", (d, d), F16
        yield f"{b}.per_dim_scale.weight", (hd,), F32
        yield from _linear(f"{b}.attn_out", d, d, True)
        yield f"{b}.attn_post_norm.weight", (d,), F32
        yield f"{b}.conv_norm.weight", (d,), F32
        yield from _linear(f"{b}.conv_pw1", d, 2 * d, True)
        yield f"{b}.conv_dw.weight", (a.conv_kernel, d), F32
        yield f"{b}.norm_conv.weight", (d,), F32
        yield from _linear(f"{b}.conv_pw2", d, d, True)
        yield f"{b}.ffn_norm_1.weight", (d,), F32
        yield from _linear(f"{b}.ffn_up_1", d, 4 * d, True)
        yield from _linear(f"{b}.ffn_down_1", 4 * d, d, True)
        yield f"{b}.ffn_post_norm_1.weight", (d,), F32
        yield f"{b}.ln2.weight", (d,), F32
    yield "a.pre_encode.out.weight", (d, a.out_dims), F16
    yield "a.pre_encode.out.bias", (a.out_dims,), F32
    yield "mm.a.input_projection.weight", (a.out_dims, n_embd_text), F16


def tensors(shape: ProjectorShape) -> list[tuple[str, tuple[int, ...], int]]:
    """(name, ggml ne, ggml type) of every tensor, in file order."""
    out = []
    if shape.vision:
        out += list(_vision_tensors(shape.vision, shape.n_embd_text))
    if shape.audio:
        out += list(_audio_tensors(shape.audio, shape.n_embd_text))
    return out


def _nbytes(ne: tuple[int, ...], ggml_type: int) -> int:
    return int(np.prod(ne, dtype=np.int64)) * (4 if ggml_type == F32 else 2)


def tensor_bytes(shape: ProjectorShape) -> int:
    """The bytes of all tensor data (no alignment padding, no metadata)."""
    return sum(_nbytes(ne, t) for _, ne, t in tensors(shape))


def _add_hparams(w: object, s: ProjectorShape, name: str) -> None:
    import gguf

    assert isinstance(w, gguf.GGUFWriter)
    w.add_name(f"synthetic-gemma-4-{name}-mmproj")
    w.add_type("mmproj")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    if s.vision:
        v = s.vision
        w.add_bool("clip.has_vision_encoder", True)
        w.add_string("clip.vision.projector_type", v.kind)
        w.add_uint32("clip.vision.projection_dim", s.n_embd_text)
        w.add_uint32("clip.vision.image_size", 224)  # unused by Gemma 4; the converter writes 224
        w.add_uint32("clip.vision.patch_size", v.patch)
        w.add_uint32("clip.vision.embedding_length", v.n_embd)
        w.add_uint32("clip.vision.feed_forward_length", v.n_ff)
        w.add_uint32("clip.vision.block_count", v.n_layer)
        w.add_uint32("clip.vision.attention.head_count", v.n_head)
        w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
        w.add_array("clip.vision.image_mean", [0.0, 0.0, 0.0])
        w.add_array("clip.vision.image_std", [1.0, 1.0, 1.0])
    if s.audio:
        a = s.audio
        w.add_bool("clip.has_audio_encoder", True)
        w.add_string("clip.audio.projector_type", a.kind)
        w.add_uint32("clip.audio.projection_dim", s.n_embd_text)
        w.add_uint32("clip.audio.embedding_length", a.n_embd)
        w.add_uint32("clip.audio.feed_forward_length", 4 * a.n_embd if a.n_layer else 0)
        w.add_uint32("clip.audio.block_count", a.n_layer)
        w.add_uint32("clip.audio.attention.head_count", a.n_head)
        w.add_uint32("clip.audio.num_mel_bins", a.n_mel)
        w.add_float32("clip.audio.attention.layer_norm_epsilon", 1e-6)


def _data(name: str, ne: tuple[int, ...], ggml_type: int, rng: np.random.Generator) -> Iterator[bytes]:
    n = int(np.prod(ne, dtype=np.int64))
    if name.endswith(("_max", "_min")):
        yield np.full(n, CLAMP if name.endswith("_max") else -CLAMP, dtype=np.float32).tobytes()
        return
    if "norm" in name or "scale" in name:  # RMS/Layer norms (Gemma 4 stores the effective weight), scalars
        value = 0.0 if name.endswith(".bias") else 1.0
        yield np.full(n, value, dtype=np.float32).tobytes()
        return
    if name.endswith(".bias"):
        yield np.zeros(n, dtype=np.float32).tobytes()
        return
    dtype = np.float32 if ggml_type == F32 else np.float16
    step = CHUNK_BYTES // 4
    for start in range(0, n, step):
        count = min(step, n - start)
        yield (rng.standard_normal(count, dtype=np.float32) * 0.02).astype(dtype).tobytes()


def write_gemma4_mmproj(
    path: str | Path,
    size: str = "tiny",
    seed: int = 0,
    vision: bool = True,
    audio: bool = True,
    n_embd_text: int | None = None,
    overrides: dict[str, tuple[int, ...] | None] | None = None,
) -> Path:
    """Write a synthetic Gemma 4 projector to ``path`` and return it.

    ``vision``/``audio`` False leave that encoder out (a vision-only E2B projector, say);
    ``n_embd_text`` overrides the text width it projects to (a projector made for another model);
    ``overrides`` gives some tensors another ggml shape, or drops them (None): damaged files for the
    hostile-input tests."""
    import gguf

    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}")
    shape = SIZES[size]
    shape = ProjectorShape(
        n_embd_text or shape.n_embd_text, shape.vision if vision else None, shape.audio if audio else None
    )
    if shape.vision is None and shape.audio is None:
        raise ValueError(f"the {size} projector has no encoder left to write")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(tmp, "clip")
    _add_hparams(writer, shape, size)
    plan = tensors(shape)
    for name, new in (overrides or {}).items():
        if new is None:
            plan = [entry for entry in plan if entry[0] != name]
        else:
            plan = [(n, new if n == name else ne, t) for n, ne, t in plan]
    for name, ne, ggml_type in plan:
        writer.add_tensor_info(
            name, tuple(reversed(ne)), np.dtype(np.float32), _nbytes(ne, ggml_type),
            raw_dtype=gguf.GGMLQuantizationType(ggml_type),
        )  # fmt: skip
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    assert writer.fout is not None
    out = writer.fout[0]
    for name, ne, ggml_type in plan:
        writer.write_padding(out, out.tell())
        for chunk in _data(name, ne, ggml_type, rng):
            out.write(chunk)
    writer.write_padding(out, out.tell())
    writer.close()
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", choices=list(SIZES), default="tiny")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-audio", action="store_true", help="leave the audio encoder out")
    parser.add_argument("--no-vision", action="store_true", help="leave the vision encoder out")
    args = parser.parse_args(argv)
    out = write_gemma4_mmproj(args.out, args.size, args.seed, not args.no_vision, not args.no_audio)
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
