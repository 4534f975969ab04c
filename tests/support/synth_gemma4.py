"""Write synthetic Gemma-4-architecture GGUFs: random weights, real shapes, real tokenizer and template.

Real Gemma 4 weights cannot be downloaded here, but llama.cpp's ``gemma4`` loader only needs the right
hyper-parameter keys and tensor names/shapes. These come from
``vendor/llama.cpp/src/models/gemma4.cpp`` (tensors), ``conversion/gemma.py`` (how the keys are written)
and ``llama-model.cpp`` (KV-sharing rule) of llama-cpp-python 0.3.36. The tokenizer and chat template are
copied from llama.cpp's ``models/ggml-vocab-gemma-4.gguf`` (the real 262,144-token Gemma 4 vocabulary),
so prompts tokenize and template-render exactly as with Google's files. Random weights make garbage
text: the point is exercising the gemma4 code path, memory use and speed.

Sizes: "tiny" (~21 MB, mostly the vocabulary: embedding width 32, 4 layers, with per-layer embeddings
and KV sharing like E2B) for CI, and the published shapes "E2B", "E4B", "12B", "26B-A4B", "31B" for
GPU measurements. Weights are streamed to disk: Q4_0 blocks are written directly from random bytes,
one slice at a time, so a 17 GB 31B file needs well under 1 GB of RAM.

CLI: ``python -m tests.support.synth_gemma4 OUT.gguf --size E2B [--qtype Q4_0|F16] [--seed 0]``
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

VOCAB_ENV = "GEMMADESK_GEMMA4_VOCAB"
VOCAB_NAME = "ggml-vocab-gemma-4.gguf"
_VOCAB_CANDIDATES = (
    Path(__file__).resolve().parents[2] / ".gpu" / VOCAB_NAME,  # carried to the GPU machine (git-ignored)
    Path("/tmp/llama-src/vendor/llama.cpp/models") / VOCAB_NAME,
    Path.home() / ".cache" / "gemmadesk-tests" / VOCAB_NAME,
)
CHUNK_BYTES = 64 << 20  # write random weights in slices of this size


@dataclass(frozen=True)
class Shape:
    n_embd: int
    n_layer: int
    n_head: int
    n_kv_swa: int
    n_kv_full: int
    head_swa: int
    head_full: int
    n_ff: int
    swa_every: int  # every Nth layer (1-based) is full attention
    n_swa: int
    n_ctx_train: int
    n_embd_per_layer: int = 0
    n_kv_shared: int = 0
    double_wide_mlp: bool = False
    k_eq_v: bool = False  # global layers have no V projection (12B/26B/31B)
    n_expert: int = 0
    n_expert_used: int = 0
    n_ff_exp: int = 0


SIZES: dict[str, Shape] = {
    "tiny": Shape(32, 4, 2, 1, 1, 32, 64, 64, 2, 64, 8192, n_embd_per_layer=8, n_kv_shared=2,
                  double_wide_mlp=True),
    "E2B": Shape(1536, 35, 8, 1, 1, 256, 512, 6144, 5, 512, 131072, n_embd_per_layer=256, n_kv_shared=20,
                 double_wide_mlp=True),
    "E4B": Shape(2560, 42, 8, 2, 2, 256, 512, 10240, 6, 512, 131072, n_embd_per_layer=256, n_kv_shared=18),
    "12B": Shape(3840, 48, 16, 8, 1, 256, 512, 15360, 6, 1024, 262144, k_eq_v=True),
    "26B-A4B": Shape(2816, 30, 16, 8, 2, 256, 512, 2112, 6, 1024, 262144, k_eq_v=True, n_expert=128,
                     n_expert_used=8, n_ff_exp=704),
    "31B": Shape(5376, 60, 32, 16, 4, 256, 512, 21504, 6, 1024, 262144, k_eq_v=True),
}  # fmt: skip


def find_vocab() -> Path:
    """The Gemma 4 vocabulary GGUF: $GEMMADESK_GEMMA4_VOCAB, the repo's git-ignored .gpu/ folder, the
    unpacked llama-cpp-python sdist, or the test cache. It is in the sdist:
    ``pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36``."""
    env = os.environ.get(VOCAB_ENV)
    for candidate in ([Path(env)] if env else []) + list(_VOCAB_CANDIDATES):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{VOCAB_NAME} not found; set {VOCAB_ENV} to its path (it is in llama-cpp-python's sdist, "
        "vendor/llama.cpp/models/)"
    )


def _is_swa(shape: Shape, il: int) -> bool:
    return (il + 1) % shape.swa_every != 0


def _tensors(s: Shape) -> Iterator[tuple[str, tuple[int, ...], bool]]:
    """(name, ggml ne shape, is_weight_matrix) in the order llama.cpp's gemma4 loader reads them."""
    n_kv_from = s.n_layer - s.n_kv_shared
    yield "rope_freqs.weight", (s.head_full // 2,), False
    yield "token_embd.weight", (s.n_embd, 262144), True
    if s.n_embd_per_layer:
        yield "per_layer_token_embd.weight", (s.n_embd_per_layer * s.n_layer, 262144), True
        yield "per_layer_model_proj.weight", (s.n_embd, s.n_embd_per_layer * s.n_layer), True
        yield "per_layer_proj_norm.weight", (s.n_embd_per_layer,), False
    yield "output_norm.weight", (s.n_embd,), False
    for il in range(s.n_layer):
        swa = _is_swa(s, il)
        head = s.head_swa if swa else s.head_full
        n_kv = s.n_kv_swa if swa else s.n_kv_full
        has_kv = il < n_kv_from
        p = f"blk.{il}."
        yield p + "attn_norm.weight", (s.n_embd,), False
        yield p + "attn_q.weight", (s.n_embd, head * s.n_head), True
        if has_kv:
            yield p + "attn_k.weight", (s.n_embd, head * n_kv), True
            if swa or not s.k_eq_v:
                yield p + "attn_v.weight", (s.n_embd, head * n_kv), True
        yield p + "attn_output.weight", (head * s.n_head, s.n_embd), True
        yield p + "attn_q_norm.weight", (head,), False
        if has_kv:
            yield p + "attn_k_norm.weight", (head,), False
        yield p + "post_attention_norm.weight", (s.n_embd,), False
        yield p + "layer_output_scale.weight", (1,), False
        n_ff = s.n_ff * 2 if s.double_wide_mlp and not has_kv else s.n_ff
        yield p + "ffn_norm.weight", (s.n_embd,), False
        yield p + "ffn_gate.weight", (s.n_embd, n_ff), True
        yield p + "ffn_up.weight", (s.n_embd, n_ff), True
        yield p + "ffn_down.weight", (n_ff, s.n_embd), True
        yield p + "post_ffw_norm.weight", (s.n_embd,), False
        if s.n_expert:
            yield p + "ffn_gate_inp.weight", (s.n_embd, s.n_expert), False
            yield p + "ffn_gate_inp.scale", (s.n_embd,), False
            yield p + "pre_ffw_norm_2.weight", (s.n_embd,), False
            yield p + "post_ffw_norm_1.weight", (s.n_embd,), False
            yield p + "post_ffw_norm_2.weight", (s.n_embd,), False
            yield p + "ffn_gate_up_exps.weight", (s.n_embd, s.n_ff_exp * 2, s.n_expert), True
            yield p + "ffn_down_exps.weight", (s.n_ff_exp, s.n_embd, s.n_expert), True
        if s.n_embd_per_layer:
            yield p + "inp_gate.weight", (s.n_embd, s.n_embd_per_layer), True
            yield p + "proj.weight", (s.n_embd_per_layer, s.n_embd), True
            yield p + "post_norm.weight", (s.n_embd,), False


def _add_hparams(w: object, s: Shape, name: str, qtype: str) -> None:
    import gguf

    assert isinstance(w, gguf.GGUFWriter)
    swa = [_is_swa(s, il) for il in range(s.n_layer)]
    w.add_name(f"synthetic-gemma-4-{name}-{qtype}")
    w.add_type("model")
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_0 if qtype == "Q4_0" else gguf.LlamaFileType.MOSTLY_F16)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_block_count(s.n_layer)
    w.add_context_length(s.n_ctx_train)
    w.add_embedding_length(s.n_embd)
    n_kv_from = s.n_layer - s.n_kv_shared
    if s.double_wide_mlp:
        w.add_feed_forward_length([s.n_ff if il < n_kv_from else s.n_ff * 2 for il in range(s.n_layer)])
    else:
        w.add_feed_forward_length(s.n_ff)
    w.add_head_count(s.n_head)
    w.add_head_count_kv([s.n_kv_swa if is_swa else s.n_kv_full for is_swa in swa])
    w.add_rope_freq_base(1_000_000.0)
    w.add_float32("gemma4.rope.freq_base_swa", 10_000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_key_length(s.head_full)
    w.add_value_length(s.head_full)
    w.add_key_length_swa(s.head_swa)
    w.add_value_length_swa(s.head_swa)
    w.add_final_logit_softcapping(30.0)
    w.add_sliding_window(s.n_swa)
    w.add_shared_kv_layers(s.n_kv_shared)
    w.add_embedding_length_per_layer_input(s.n_embd_per_layer)
    w.add_sliding_window_pattern(swa)
    w.add_rope_dimension_count(s.head_full)
    w.add_rope_dimension_count_swa(s.head_swa)
    if s.n_expert:
        w.add_expert_count(s.n_expert)
        w.add_expert_used_count(s.n_expert_used)
        w.add_expert_feed_forward_length(s.n_ff_exp)


_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def _tokenizer_kv_bytes(vocab: Path) -> tuple[int, bytes]:
    """(count, raw bytes) of the vocabulary file's ``tokenizer.*`` key/values, copied verbatim.

    Byte copying keeps the 262k tokens and 515k merges exact and takes milliseconds (gguf's reader needs
    tens of seconds to decode them)."""
    buf = vocab.read_bytes()
    if buf[:4] != b"GGUF":
        raise ValueError(f"{vocab} is not a GGUF file")
    n_kv = struct.unpack_from("<Q", buf, 16)[0]
    pos = 24

    def skip(vtype: int, pos: int) -> int:
        if vtype == 8:
            return pos + 8 + int(struct.unpack_from("<Q", buf, pos)[0])
        if vtype == 9:
            etype, count = (int(v) for v in struct.unpack_from("<IQ", buf, pos))
            pos += 12
            if etype in _SCALAR_SIZES:
                return pos + _SCALAR_SIZES[etype] * count
            for _ in range(count):
                pos = skip(etype, pos)
            return pos
        return pos + _SCALAR_SIZES[vtype]

    count, out = 0, bytearray()
    for _ in range(n_kv):
        start = pos
        key_len = struct.unpack_from("<Q", buf, pos)[0]
        key = buf[pos + 8 : pos + 8 + key_len].decode()
        pos += 8 + key_len
        vtype = struct.unpack_from("<I", buf, pos)[0]
        pos = skip(vtype, pos + 4)
        if key.startswith("tokenizer."):
            count += 1
            out += buf[start:pos]
    return count, bytes(out)


def _dtype_for(is_matrix: bool, ne: tuple[int, ...], qtype: str) -> int:
    from gguf import GGMLQuantizationType as T

    if not is_matrix:
        return int(T.F32)
    if qtype == "Q4_0" and ne[0] % 32 == 0:
        return int(T.Q4_0)
    return int(T.F16)


def _nbytes(ne: tuple[int, ...], ggml_type: int) -> int:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    block, size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    return int(np.prod(ne, dtype=np.int64)) // block * size


def _random_data(name: str, ne: tuple[int, ...], ggml_type: int, rng: np.random.Generator) -> Iterator[bytes]:
    """The tensor's bytes, in slices. Norms are 1 (Gemma 4 norms are not shifted), ``rope_freqs`` is the
    proportional-RoPE factor list, Q4_0 blocks get random nibbles and a small fp16 scale."""
    from gguf import GGMLQuantizationType as T

    n = int(np.prod(ne, dtype=np.int64))
    if name == "rope_freqs.weight":
        n_rot = int(ne[0] * 0.25)
        yield np.array([1.0] * n_rot + [1e30] * (ne[0] - n_rot), dtype=np.float32).tobytes()
        return
    if ggml_type == T.F32:
        value = 1.0 if "norm" in name or "scale" in name else 0.0
        yield np.full(n, value, dtype=np.float32).tobytes()
        return
    if ggml_type == T.F16:
        for start in range(0, n, CHUNK_BYTES // 2):
            count = min(CHUNK_BYTES // 2, n - start)
            yield (rng.standard_normal(count, dtype=np.float32) * 0.02).astype(np.float16).tobytes()
        return
    blocks = n // 32
    scale = np.frombuffer(np.float16(0.02 / 8).tobytes(), dtype=np.uint8)
    per_chunk = CHUNK_BYTES // 18
    for start in range(0, blocks, per_chunk):
        count = min(per_chunk, blocks - start)
        data = rng.integers(0, 256, size=(count, 18), dtype=np.uint8)
        data[:, 0:2] = scale
        yield data.tobytes()


def write_gemma4_gguf(
    path: str | Path,
    size: str = "tiny",
    qtype: str = "Q4_0",
    seed: int = 0,
    n_ctx_train: int | None = None,
    vocab_path: str | Path | None = None,
    n_layer: int | None = None,
) -> Path:
    """Write a synthetic Gemma 4 GGUF to ``path`` and return it.

    ``n_layer`` keeps a size's layer shapes but writes fewer layers (a multiple of its attention
    pattern; KV sharing scaled down), to check a large layout cheaply."""
    import gguf

    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}")
    if qtype not in ("Q4_0", "F16"):
        raise ValueError("qtype must be Q4_0 or F16")
    shape = SIZES[size]
    if n_ctx_train is not None:
        shape = replace(shape, n_ctx_train=n_ctx_train)
    if n_layer is not None:
        if n_layer % shape.swa_every or (shape.n_kv_shared and n_layer < 2 * shape.swa_every):
            raise ValueError(f"n_layer must be a multiple of {shape.swa_every} (twice that with KV sharing)")
        shared = n_layer - n_layer // 2 // shape.swa_every * shape.swa_every if shape.n_kv_shared else 0
        shape = replace(shape, n_layer=n_layer, n_kv_shared=shared)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(tmp, "gemma4")
    _add_hparams(writer, shape, size, qtype)
    n_tok_kv, tok_kv = _tokenizer_kv_bytes(Path(vocab_path) if vocab_path else find_vocab())
    plan = [(name, ne, _dtype_for(is_matrix, ne, qtype)) for name, ne, is_matrix in _tensors(shape)]
    for name, ne, ggml_type in plan:
        writer.add_tensor_info(
            name, tuple(reversed(ne)), np.dtype(np.float32), _nbytes(ne, ggml_type),
            raw_dtype=gguf.GGMLQuantizationType(ggml_type),
        )  # fmt: skip
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    assert writer.fout is not None
    out = writer.fout[0]
    out.write(tok_kv)  # appended after the writer's own key/values; the count is fixed below
    writer.write_ti_data_to_file()
    for name, ne, ggml_type in plan:
        writer.write_padding(out, out.tell())
        for chunk in _random_data(name, ne, ggml_type, rng):
            out.write(chunk)
    writer.write_padding(out, out.tell())
    out.seek(16)
    out.write(struct.pack("<Q", len(writer.kv_data[0]) + n_tok_kv))
    writer.close()
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", choices=list(SIZES), default="tiny")
    parser.add_argument("--qtype", choices=("Q4_0", "F16"), default="Q4_0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-ctx-train", type=int, default=None)
    parser.add_argument("--vocab", type=Path, default=None, help=f"path to {VOCAB_NAME}")
    parser.add_argument("--n-layer", type=int, default=None, help="fewer layers of the same shapes")
    args = parser.parse_args(argv)
    out = write_gemma4_gguf(args.out, args.size, args.qtype, args.seed, args.n_ctx_train, args.vocab, args.n_layer)
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
