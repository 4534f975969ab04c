"""Gemma 4 projector ("mmproj") files: what one holds, checked before llama.cpp loads it.

llama.cpp's multimodal library (mtmd, ``tools/mtmd/clip.cpp``) throws a catchable error for a missing
tensor, but a tensor of the wrong *shape* trips a ``GGML_ASSERT`` while it builds the encoder graph,
which aborts the whole process. So :func:`read_projector` reads the GGUF header (milliseconds, no
weights) and checks every tensor the Gemma 4 graphs use (``tools/mtmd/models/gemma4{v,uv,a,ua}.cpp``)
against the hyper-parameters, the way clip.cpp will combine them. Anything else is refused with one
sentence (:class:`ProjectorFileError`).

Projector types (llama-cpp-python 0.3.36's vendored llama.cpp):

- ``gemma4v``: the vision tower of E2B, E4B (768 wide, 16 layers), 26B A4B and 31B (1152 wide, 27 layers);
- ``gemma4uv``: the encoder-free vision embedder of the 12B (48-pixel patches, one linear layer);
- ``gemma4a``: the audio conformer of E2B and E4B (1024 wide, 12 layers, 128 mel bins);
- ``gemma4ua``: the encoder-free audio embedder of the 12B (raw 640-sample frames).

:func:`projector_memory` estimates what loading one costs beyond its file (the encoder's compute buffer
for the largest image it will be given), for the fit estimate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gemmadesk.core.gguf_file import GGUFError, GGUFFile, TensorInfo

VISION_TYPES = ("gemma4v", "gemma4uv")
AUDIO_TYPES = ("gemma4a", "gemma4ua")
UA_FRAME = 640  # gemma4ua: samples per token, hard-coded in clip.cpp
MERGE = 3  # Gemma 4 vision pools 3 × 3 patches into one token (clip.cpp default, key scale_factor)
DEFAULT_IMAGE_MAX_TOKENS = 280  # Gemma 4's default image budget (70/140/280/560/1120 are the trained ones)
TOKENS_PER_AUDIO_SECOND = 25
WARMUP_IMAGE_TOKENS = 256  # clip.cpp sizes the vision compute buffer with a 256-token image at load
MAX_DIM = 65_536


class ProjectorFileError(ValueError):
    """The file is not a Gemma 4 projector llama.cpp can load; ``str()`` is one sentence."""


@dataclass(frozen=True)
class ProjectorInfo:
    path: Path
    file_bytes: int
    data_bytes: int  # all tensor data: what the weights take once loaded
    n_embd_text: int  # the text model width the embeddings are made for
    vision_type: str | None
    audio_type: str | None
    vision_embd: int = 0
    vision_layers: int = 0
    vision_heads: int = 0
    vision_ff: int = 0
    patch_size: int = 0  # pixels per patch as the encoder sees them (gemma4uv: 48)
    audio_embd: int = 0
    audio_layers: int = 0
    audio_mel: int = 0
    audio_conv0: int = 0  # channels of the first subsampling convolution

    @property
    def vision(self) -> bool:
        return self.vision_type is not None

    @property
    def audio(self) -> bool:
        return self.audio_type is not None


class _Checker:
    def __init__(self, header: GGUFFile, name: str) -> None:
        self.h, self.name = header, name
        self.tensors: dict[str, TensorInfo] = {t.name: t for t in header.tensors}

    def fail(self, why: str) -> ProjectorFileError:
        return ProjectorFileError(
            f"“{self.name}” is not a Gemma 4 projector this version of llama.cpp can load ({why}). "
            "Download the projector (mmproj) that belongs to this model again."
        )

    def int_key(self, key: str, lo: int = 1, hi: int = MAX_DIM, default: int | None = None) -> int:
        value: Any = self.h.metadata.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{key} is missing")
        if not lo <= value <= hi:
            raise self.fail(f"{key} = {value} is out of range")
        return value

    def shape(self, name: str, *dims: int, required: bool = True) -> TensorInfo | None:
        t = self.tensors.get(name)
        if t is None:
            if required:
                raise self.fail(f"tensor {name} is missing")
            return None
        got = tuple(t.dims) + (1,) * (len(dims) - len(t.dims))
        want = tuple(dims) + (1,) * (len(t.dims) - len(dims))
        if got != want:
            raise self.fail(f"tensor {name} has shape {list(t.dims)}, expected {list(dims)}")
        return t

    def dims(self, name: str) -> tuple[int, ...]:
        t = self.tensors.get(name)
        if t is None:
            raise self.fail(f"tensor {name} is missing")
        return tuple(t.dims)

    def clamps(self) -> None:
        for t in self.h.tensors:
            if t.name.endswith((".input_max", ".input_min", ".output_max", ".output_min")) and (
                t.ggml_type != 0 or max(t.dims, default=1) != 1
            ):
                raise self.fail(f"{t.name} must be one F32 number")


def _vision(c: _Checker, kind: str, n_text: int) -> dict[str, int]:
    d = c.int_key("clip.vision.embedding_length")
    patch = c.int_key("clip.vision.patch_size", 1, 64)
    merge = c.int_key("clip.vision.projector.scale_factor", 1, 8, default=MERGE)
    mean = c.h.array_lengths.get("clip.vision.image_mean", 0)
    std = c.h.array_lengths.get("clip.vision.image_std", 0)
    if mean < 3 or std < 3:
        raise c.fail("image_mean/image_std are missing")
    pos = c.dims("v.position_embd.weight")
    if len(pos) != 3 or pos[0] != d or pos[2] != 2 or pos[1] < 1:
        raise c.fail(f"tensor v.position_embd.weight has shape {list(pos)}, expected [{d}, N, 2]")
    c.shape("mm.input_projection.weight", d, n_text)
    if kind == "gemma4uv":
        p = patch * merge
        c.shape("v.patch_embd.weight", p * p * 3, d)
        c.shape("v.patch_embd.bias", d)
        for i, width in ((1, p * p * 3), (2, d), (3, d)):
            c.shape(f"v.patch_norm.{i}.weight", width)
            c.shape(f"v.patch_norm.{i}.bias", width)
        return {"vision_embd": d, "patch_size": p}
    n_layer = c.int_key("clip.vision.block_count", 1, 256)
    n_head = c.int_key("clip.vision.attention.head_count", 1, 256)
    ff = c.int_key("clip.vision.feed_forward_length")
    if d % n_head or (d // n_head) % 4:
        raise c.fail(f"{n_head} heads do not divide the width {d} into RoPE-able heads")
    hd = d // n_head
    c.shape("v.patch_embd.weight", patch, patch, 3, d)
    for il in range(n_layer):
        b = f"v.blk.{il}"
        for proj in ("attn_q", "attn_out"):
            c.shape(f"{b}.{proj}.weight", d, d)
        for proj in ("attn_k", "attn_v"):
            kv = c.dims(f"{b}.{proj}.weight")
            if len(kv) != 2 or kv[0] != d or kv[1] % hd or kv[1] > d or d // hd % (kv[1] // hd or 1):
                raise c.fail(f"tensor {b}.{proj}.weight has shape {list(kv)}")
        c.shape(f"{b}.ffn_gate.weight", d, ff, required=False)
        c.shape(f"{b}.ffn_up.weight", d, ff)
        c.shape(f"{b}.ffn_down.weight", ff, d)
        for norm in ("ln1", "ln2", "attn_post_norm", "ffn_post_norm"):
            c.shape(f"{b}.{norm}.weight", d, required=False)
        for norm in ("attn_q_norm", "attn_k_norm"):
            c.shape(f"{b}.{norm}.weight", hd, required=False)
        c.shape(f"{b}.out_scale.weight", 1, required=False)
    return {"vision_embd": d, "vision_layers": n_layer, "vision_heads": n_head, "vision_ff": ff, "patch_size": patch}


def _audio(c: _Checker, kind: str, n_text: int) -> dict[str, int]:
    if kind == "gemma4ua":
        c.int_key("clip.audio.num_mel_bins", 1, MAX_DIM)  # clip.cpp requires the key, then uses 640
        c.shape("mm.a.input_projection.weight", UA_FRAME, n_text)
        return {"audio_embd": UA_FRAME}
    n_mel = c.int_key("clip.audio.num_mel_bins", 1, 256)
    n_layer = c.int_key("clip.audio.block_count", 1, 256)
    n_head = c.int_key("clip.audio.attention.head_count", 1, 256)
    conv0, conv1 = c.dims("a.conv1d.0.weight"), c.dims("a.conv1d.1.weight")
    if len(conv0) != 4 or conv0[:3] != (3, 3, 1) or len(conv1) != 4 or conv1[:3] != (3, 3, conv0[3]):
        raise c.fail("the subsampling convolutions are not 3 × 3")
    c0, c1 = conv0[3], conv1[3]
    c.shape("a.conv1d.0.norm.weight", c0, required=False)
    c.shape("a.conv1d.1.norm.weight", c1, required=False)
    freq = n_mel
    for _ in range(2):
        freq = (freq - 1) // 2 + 1
    inp = c.dims("a.input_projection.weight")
    if len(inp) != 2 or inp[0] != freq * c1:
        raise c.fail(f"tensor a.input_projection.weight has shape {list(inp)}, expected [{freq * c1}, N]")
    d = inp[1]
    if d % n_head:
        raise c.fail(f"{n_head} heads do not divide the width {d}")
    hd = d // n_head
    for il in range(n_layer):
        b = f"a.blk.{il}"
        for suffix in ("", "_1"):
            up = c.dims(f"{b}.ffn_up{suffix}.weight")
            if len(up) != 2 or up[0] != d:
                raise c.fail(f"tensor {b}.ffn_up{suffix}.weight has shape {list(up)}")
            c.shape(f"{b}.ffn_down{suffix}.weight", up[1], d)
            c.shape(f"{b}.ffn_norm{suffix}.weight", d)
            c.shape(f"{b}.ffn_post_norm{suffix}.weight", d, required=False)
        for proj in ("attn_q", "attn_k", "attn_v", "attn_out"):
            c.shape(f"{b}.{proj}.weight", d, d)
        c.shape(f"{b}.attn_k_rel.weight", d, d, required=False)
        c.shape(f"{b}.per_dim_scale.weight", hd, required=False)
        c.shape(f"{b}.per_dim_k_scale.weight", hd, required=False)
        for norm in ("attn_pre_norm", "attn_post_norm", "conv_norm", "norm_conv", "ln2"):
            c.shape(f"{b}.{norm}.weight", d, required=False)
        c.shape(f"{b}.conv_pw1.weight", d, 2 * d)
        dw = c.dims(f"{b}.conv_dw.weight")
        if len(dw) != 2 or dw[1] != d or dw[0] != 5:  # the graph left-pads by 4: a 5-tap causal kernel
            raise c.fail(f"tensor {b}.conv_dw.weight has shape {list(dw)}, expected [5, {d}]")
        c.shape(f"{b}.conv_pw2.weight", d, d)
    out = c.dims("a.pre_encode.out.weight") if "a.pre_encode.out.weight" in c.tensors else (d, d)
    if len(out) != 2 or out[0] != d:
        raise c.fail(f"tensor a.pre_encode.out.weight has shape {list(out)}")
    c.shape("a.pre_encode.out.bias", out[1], required=False)
    c.shape("mm.a.input_projection.weight", out[1], n_text)
    return {"audio_embd": d, "audio_layers": n_layer, "audio_mel": n_mel, "audio_conv0": c0}


def read_projector(path: str | Path) -> ProjectorInfo:
    """Read and check a projector file; raise :class:`ProjectorFileError` with one sentence if it is not
    a complete Gemma 4 projector that llama.cpp's graphs can be built from."""
    path = Path(path)
    try:
        header = GGUFFile.open(path)
    except GGUFError as exc:
        if exc.kind in ("missing", "not_file"):
            raise ProjectorFileError(f"The projector file “{path}” does not exist or cannot be read.") from None
        if exc.kind == "truncated":
            raise ProjectorFileError(
                f"The projector “{path.name}” is incomplete ({exc.detail}); download it again."
            ) from None
        raise ProjectorFileError(f"“{path.name}” is not a projector (mmproj) GGUF file ({exc.detail}).") from None
    c = _Checker(header, path.name)
    if header.architecture != "clip":
        raise c.fail(f"its architecture is “{header.architecture}”, not a projector's “clip”")
    meta = header.metadata
    legacy = meta.get("clip.projector_type")
    vtype = meta.get("clip.vision.projector_type", legacy) if meta.get("clip.has_vision_encoder") else None
    atype = meta.get("clip.audio.projector_type", legacy) if meta.get("clip.has_audio_encoder") else None
    if vtype is None and atype is None:
        raise c.fail("it has neither a vision nor an audio encoder")
    if vtype is not None and vtype not in VISION_TYPES:
        raise c.fail(f"its vision projector type is “{vtype}”")
    if atype is not None and atype not in AUDIO_TYPES:
        raise c.fail(f"its audio projector type is “{atype}”")
    n_text = c.int_key("clip.vision.projection_dim" if vtype else "clip.audio.projection_dim")
    c.clamps()
    fields: dict[str, int] = {}
    if vtype:
        fields |= _vision(c, str(vtype), n_text)
    if atype:
        fields |= _audio(c, str(atype), n_text)
    return ProjectorInfo(
        path=path,
        file_bytes=header.file_bytes,
        data_bytes=sum(t.n_bytes for t in header.tensors),
        n_embd_text=n_text,
        vision_type=str(vtype) if vtype else None,
        audio_type=str(atype) if atype else None,
        **fields,
    )


def projector_memory(info: ProjectorInfo, image_max_tokens: int, flash_attn: bool) -> int:
    """Bytes a loaded projector needs besides its weights: the encoders' compute buffers, which clip.cpp
    sizes at load with a warm-up input (a 256-token image, 30 s of audio) and ggml grows for a larger
    image. Modelled on the peaks of the Gemma 4 graphs; checked against clip.cpp's own "compute buffer
    size" report on the CPU (docs/multimodal.md: within 7 % for E2B/12B shapes, on the safe side)."""
    total = 0
    tokens = max(image_max_tokens, WARMUP_IMAGE_TOKENS)
    if info.vision_type == "gemma4uv":
        total += tokens * 4 * 2 * info.patch_size * info.patch_size * 3
    elif info.vision_type == "gemma4v":
        patches = tokens * MERGE * MERGE
        d, ff, heads = info.vision_embd, info.vision_ff, info.vision_heads
        pixels = patches * info.patch_size * info.patch_size * 3 * 4
        peak = patches * 4 * (7 * d + 2 * ff)
        if not flash_attn:
            peak = max(peak, heads * patches * patches * 4 + patches * 4 * 4 * d)
        total += pixels + peak + tokens * 4 * info.n_embd_text
    frames = 3000  # 30 s of 10 ms mel frames: the longest chunk mtmd hands the encoder
    if info.audio_type == "gemma4a":
        mel = 2 * frames * info.audio_mel * 4
        subsampling = 2 * info.audio_conv0 * (frames // 2) * (info.audio_mel // 2) * 4
        total += mel + subsampling + (frames // 4) * 4 * 3 * info.audio_embd
    elif info.audio_type == "gemma4ua":
        total += frames * 4 * (2 * UA_FRAME + info.n_embd_text)
    return total


def _published(n_text: int, vision: str, audio: str | None, big: bool = False) -> ProjectorInfo:
    if vision == "gemma4uv":
        v = {"vision_embd": 3840, "patch_size": 48}
    elif big:
        v = {"vision_embd": 1152, "vision_layers": 27, "vision_heads": 16, "vision_ff": 4304, "patch_size": 16}
    else:
        v = {"vision_embd": 768, "vision_layers": 16, "vision_heads": 12, "vision_ff": 3072, "patch_size": 16}
    a = {}
    if audio == "gemma4a":
        a = {"audio_embd": 1024, "audio_layers": 12, "audio_mel": 128, "audio_conv0": 128}
    elif audio == "gemma4ua":
        a = {"audio_embd": UA_FRAME}
    return ProjectorInfo(Path(), 0, 0, n_text, vision, audio, **v, **a)


# The encoder shapes of Google's Gemma 4 projectors (from the published HF configs), so a fit estimate
# can count the encoders' buffers before the projector is downloaded.
PUBLISHED_SHAPES: dict[str, ProjectorInfo] = {
    "E2B": _published(1536, "gemma4v", "gemma4a"),
    "E4B": _published(2560, "gemma4v", "gemma4a"),
    "12B": _published(3840, "gemma4uv", "gemma4ua"),
    "26B-A4B": _published(2816, "gemma4v", None, big=True),
    "31B": _published(5376, "gemma4v", None, big=True),
}
