"""Read what the memory estimate needs from a GGUF file's header (:mod:`gguf_file`, no weights read).

A :class:`ModelLayout` says how many bytes each part of the model has (per repeating layer, the input
tables that llama.cpp always keeps in host memory, the output layer) plus the attention geometry per layer
(which layers attend globally, which within a window, which own a KV cache, their KV heads and head
sizes). For catalog models that are not downloaded yet, :func:`layout_from_catalog` builds the same
structure from the catalog's architecture data and the file size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gemmadesk.core.catalog import Architecture
from gemmadesk.core.gguf_file import GGUFError, GGUFFile, shown

__all__ = ["GGUFError", "LayerAttention", "ModelLayout", "layout_from_catalog", "read_layout"]

_BLK = re.compile(r"^blk\.(\d+)\.")
_OUTPUT_TENSORS = ("output.weight", "output_norm.weight")
_MAX_LAYERS = 4096  # no real model has more; bounds the per-layer lists a header can ask for


@dataclass(frozen=True)
class LayerAttention:
    is_swa: bool  # attends within the sliding window
    owns_kv: bool  # False for layers that reuse an earlier layer's KV (E2B/E4B)
    n_head_kv: int
    head_dim_k: int
    head_dim_v: int


@dataclass(frozen=True)
class ModelLayout:
    architecture: str  # general.architecture, e.g. "gemma4"
    name: str
    file_size: int
    n_layer: int
    n_embd: int
    n_head: int
    n_vocab: int
    n_ctx_train: int
    sliding_window: int
    n_ff: int  # feed-forward width that is active per token (MoE: used experts + shared)
    layers: tuple[LayerAttention, ...]
    layer_bytes: tuple[int, ...]  # weights of each repeating layer
    input_bytes: int  # token embeddings, per-layer embeddings: kept in host memory by llama.cpp
    output_bytes: int  # output projection (tied embeddings are duplicated onto the output device)
    output_tied: bool = False  # output reuses token_embd: in RAM it is the same mmapped bytes
    chat_template: str | None = None
    from_header: bool = True  # False when estimated from catalog data
    n_expert: int = 0  # mixture of experts: routed experts per layer (26B A4B: 128) ...
    n_expert_used: int = 0  # ... of which each token uses this many (26B A4B: 8)
    layer_expert_bytes: tuple[int, ...] = ()  # the routed experts' share of each layer's bytes

    @property
    def weight_bytes(self) -> int:
        return sum(self.layer_bytes) + self.input_bytes + self.output_bytes

    def active_layer_bytes(self, i: int) -> int:
        """Weight bytes of layer ``i`` that one decoded token reads: everything except the experts it does
        not use (a mixture-of-experts layer reads only ``n_expert_used`` of its ``n_expert`` experts)."""
        experts = self.layer_expert_bytes[i] if i < len(self.layer_expert_bytes) else 0
        if not experts or self.n_expert <= 0:
            return self.layer_bytes[i]
        used = min(max(self.n_expert_used, 0), self.n_expert)
        return self.layer_bytes[i] - experts + experts * used // self.n_expert


def _num(value: Any, default: int) -> int:
    """A header value as a non-negative int; ``default`` for strings, NaN, negatives and other nonsense."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or not 0 <= value < 2**62:
        return default
    return int(value)


def _per_layer(value: Any, n: int, default: int) -> list[int]:
    if isinstance(value, list) and value:
        values = [_num(v, default) for v in value]
        return values if len(values) == n else (values + [values[-1]] * n)[:n]
    return [_num(value, default)] * n


def _largest(value: Any, default: int) -> int:
    if isinstance(value, list):
        return max((_num(v, 0) for v in value), default=default) or default
    return _num(value, default)


def read_layout(path: Path) -> ModelLayout:
    """Read a GGUF header. Raises :class:`GGUFError` with a clear message for non-GGUF/corrupt files."""
    path = Path(path)
    header = GGUFFile.open(path)
    meta = header.metadata
    arch = header.architecture or "unknown"

    def hp(key: str, default: Any = None) -> Any:
        return meta.get(f"{arch}.{key}", default)

    n_layer = _num(hp("block_count", 0), 0)
    if not 0 < n_layer <= _MAX_LAYERS:
        raise GGUFError(f"“{shown(path.name)}” has no usable {shown(arch, 40)}.block_count in its header, so it is "
                        "not a model llama.cpp can load: choose another file.", "unloadable", "no block_count")
    n_embd = _num(hp("embedding_length", 0), 0)
    n_head = max(_largest(hp("attention.head_count", 1), 1), 1)
    kv_heads = _per_layer(hp("attention.head_count_kv"), n_layer, n_head)
    key_len = _num(hp("attention.key_length"), n_embd // n_head)
    val_len = _num(hp("attention.value_length"), key_len)
    key_swa = _num(hp("attention.key_length_swa"), key_len)
    val_swa = _num(hp("attention.value_length_swa"), val_len)
    window = _num(hp("attention.sliding_window"), 0)
    pattern = hp("attention.sliding_window_pattern")
    if isinstance(pattern, list) and len(pattern) == n_layer:
        swa = [bool(x) for x in pattern]
    elif window and arch in ("gemma3", "gemma2"):
        period = _num(pattern, 0) or 6
        swa = [(i + 1) % period != 0 for i in range(n_layer)]  # gemma3: 5 local, then 1 global
    else:
        swa = [bool(window) and arch != "gemma4"] * n_layer
    shared = _num(hp("attention.shared_kv_layers"), 0)
    layers = tuple(
        LayerAttention(
            is_swa=swa[i],
            owns_kv=i < n_layer - shared,
            n_head_kv=kv_heads[i],
            head_dim_k=key_swa if swa[i] else key_len,
            head_dim_v=val_swa if swa[i] else val_len,
        )
        for i in range(n_layer)
    )
    layer_bytes = [0] * n_layer
    expert_bytes = [0] * n_layer
    input_bytes = output_bytes = token_embd_bytes = 0
    n_vocab = 0
    has_output = False
    for t in header.tensors:
        m = _BLK.match(t.name)
        if m and int(m.group(1)) < n_layer:
            layer_bytes[int(m.group(1))] += t.n_bytes
            if "_exps." in t.name:  # ffn_{gate,up,down,gate_up}_exps: the routed experts
                expert_bytes[int(m.group(1))] += t.n_bytes
        elif t.name in _OUTPUT_TENSORS:
            output_bytes += t.n_bytes
            has_output = has_output or t.name == "output.weight"
        else:
            input_bytes += t.n_bytes
        if t.name == "token_embd.weight":
            n_vocab = max(t.dims) if t.dims else 0
            token_embd_bytes = t.n_bytes
    if not has_output:
        output_bytes += token_embd_bytes  # tied embeddings: llama.cpp duplicates them onto the output device
    n_vocab = header.array_lengths.get("tokenizer.ggml.tokens", n_vocab)
    n_ff = _largest(hp("feed_forward_length"), 4 * n_embd)
    n_used = _num(hp("expert_used_count"), 0)
    n_expert = _num(hp("expert_count"), 0)
    if n_used:
        n_ff += n_used * _num(hp("expert_feed_forward_length"), 0)
    return ModelLayout(
        architecture=arch,
        name=header.name,
        file_size=header.file_bytes,
        n_layer=n_layer,
        n_embd=n_embd,
        n_head=n_head,
        n_vocab=int(n_vocab),
        n_ctx_train=_num(hp("context_length"), 0),
        sliding_window=window,
        n_ff=n_ff,
        layers=layers,
        layer_bytes=tuple(layer_bytes),
        input_bytes=input_bytes,
        output_bytes=output_bytes,
        output_tied=not has_output,
        chat_template=header.chat_template,
        n_expert=n_expert,
        n_expert_used=n_used,
        layer_expert_bytes=tuple(expert_bytes) if any(expert_bytes) else (),
    )


_EXPERT_FF = 704  # expert feed-forward width of 26B A4B (gemma4.expert_feed_forward_length)

# Bytes per weight of the types used for token / per-layer embeddings in the catalog files: Q6_K in
# Google's Q4_0 files; Q4_K in Unsloth's UD-Q4_K_XL (a measured E4B UD-Q4_K_XL load kept 2,494 MiB of its
# 4,020 MiB file on the GPU, leaving 0.57 bytes per per-layer-embedding weight in RAM; gemma4-qat-facts 3c).
_EMBED_BPW = {"Q4_0": 6.5625 / 8, "UD-Q4_K_XL": 4.5 / 8, "UD-Q2_K_XL": 4.5 / 8}


def layout_from_catalog(arch: Architecture, file_size: int, fmt: str = "Q4_0") -> ModelLayout:
    """Estimate a layout when the GGUF is not on disk: embeddings sized from the architecture (Q6_K, as
    in Google's files), the rest of the file split evenly across the repeating layers."""
    n = arch.n_layer
    layers = []
    for i in range(n):
        is_swa = (i + 1) % arch.swa_period != 0
        layers.append(
            LayerAttention(
                is_swa=is_swa,
                owns_kv=i < arch.kv_layers_global + arch.kv_layers_swa,
                n_head_kv=arch.n_head_kv_swa if is_swa else arch.n_head_kv_global,
                head_dim_k=arch.head_dim_swa if is_swa else arch.head_dim_global,
                head_dim_v=arch.head_dim_swa if is_swa else arch.head_dim_global,
            )
        )
    bpw = _EMBED_BPW.get(fmt, 6.5625 / 8)
    token_embd = int(arch.n_vocab * arch.n_embd * bpw)
    ple = int(arch.n_vocab * arch.ple_dim * n * bpw) if arch.ple_dim else 0
    input_bytes = token_embd + ple
    output_bytes = token_embd  # tied embeddings, duplicated onto the output device
    rest = max(file_size - token_embd - ple, 0)
    per_layer = rest // n
    n_ff = arch.n_ff + (arch.n_expert_used * _EXPERT_FF if arch.n_expert_used else 0)
    # Routed experts: gate, up and down projections of every expert, in Q4_0 (26B A4B: 12.8 of 14.4 GB).
    experts = min(int(3 * arch.n_embd * _EXPERT_FF * arch.n_expert * 18 / 32), per_layer) if arch.n_expert else 0
    return ModelLayout(
        architecture="gemma4",
        name="",
        file_size=file_size,
        n_layer=n,
        n_embd=arch.n_embd,
        n_head=arch.n_head,
        n_vocab=arch.n_vocab,
        n_ctx_train=arch.n_ctx_train,
        sliding_window=arch.sliding_window,
        n_ff=n_ff,
        layers=tuple(layers),
        layer_bytes=tuple([per_layer] * n),
        input_bytes=input_bytes,
        output_bytes=output_bytes,
        output_tied=True,
        from_header=False,
        n_expert=arch.n_expert,
        n_expert_used=arch.n_expert_used,
        layer_expert_bytes=tuple([experts] * n) if experts else (),
    )

