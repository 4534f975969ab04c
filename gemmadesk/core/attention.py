"""The attention/KV-cache policy: one function that both the planner (``fit``) and the engine use.

Rules (llama.cpp and Gemma 4 impose them; deciding them in one place keeps the fit list's estimate and
what the engine really loads in agreement):

- ``auto`` turns flash attention on (it shrinks compute buffers at long context) unless the model's
  catalog entry says its default is off;
- Gemma 4 E4B (``gemma4`` with a 2560-wide embedding) never gets flash attention on a GPU: llama.cpp's
  CUDA flash-attention kernel crashes on it;
- a quantized V cache needs flash attention: without it, V stays f16 (K keeps the requested type).
"""

from __future__ import annotations

from dataclasses import dataclass

from gemmadesk.core.types import FlashAttnMode, KvType

E4B_CRASH_NOTE = "Flash attention is off for Gemma 4 E4B on the GPU: it crashes llama.cpp's CUDA kernels."
DEFAULT_OFF_NOTE = "Flash attention is off by default for this model (its catalog entry says so)."


def v_cache_note(asked: KvType) -> str:
    return f"The V cache stays f16 ({asked} was asked for): a quantized V cache needs flash attention."


@dataclass(frozen=True)
class AttentionChoice:
    flash_attn: bool
    type_k: KvType
    type_v: KvType
    notes: tuple[str, ...] = ()


def flash_attn_crashes_on_gpu(architecture: str, embedding_length: int) -> bool:
    """Gemma 4 E4B: llama.cpp's CUDA flash-attention kernel crashes on its shapes."""
    return architecture == "gemma4" and embedding_length == 2560


def choose_attention(
    mode: FlashAttnMode | str | bool,
    type_k: KvType | str,
    type_v: KvType | str,
    *,
    crashes_on_gpu: bool,
    on_gpu: bool,
    default_off: bool = False,
) -> AttentionChoice:
    """Flash attention and KV types after the rules above.

    ``mode``: the user's choice (a bool is an explicit on/off, as in ``LoadSettings``); ``on_gpu``: some
    layers may run on a GPU; ``default_off``: the catalog's default for ``auto``. Raises ValueError for
    an unknown KV type."""
    if isinstance(mode, bool):
        mode = FlashAttnMode.ON if mode else FlashAttnMode.OFF
    elif mode not in set(FlashAttnMode):
        raise ValueError(f"unknown flash attention setting {mode!r}; use one of {', '.join(FlashAttnMode)}")
    for kind in (type_k, type_v):
        if kind not in set(KvType):
            raise ValueError(f"unknown KV cache type {kind!r}; use one of {', '.join(KvType)}")
    mode, k, v = FlashAttnMode(mode), KvType(type_k), KvType(type_v)
    notes: list[str] = []
    flash = mode is FlashAttnMode.ON or (mode is FlashAttnMode.AUTO and not default_off)
    if mode is FlashAttnMode.AUTO and default_off:
        notes.append(DEFAULT_OFF_NOTE)
    if flash and on_gpu and crashes_on_gpu:
        flash = False
        notes.append(E4B_CRASH_NOTE)
    if v is not KvType.F16 and not flash:
        notes.append(v_cache_note(v))
        v = KvType.F16
    return AttentionChoice(flash, k, v, tuple(notes))


def attention_settings(kv_type: str, flash_attn: str) -> tuple[KvType, FlashAttnMode, list[str]]:
    """The user's settings (plain strings in settings.json) as enums; an unknown value falls back to the
    default, with the problem in words."""
    problems: list[str] = []
    kv, fa = KvType.F16, FlashAttnMode.AUTO
    if kv_type in set(KvType):
        kv = KvType(kv_type)
    else:
        problems.append(f"the KV cache type {kv_type!r} is not one of {', '.join(KvType)}; using f16")
    if flash_attn in set(FlashAttnMode):
        fa = FlashAttnMode(flash_attn)
    else:
        problems.append(f"the flash attention setting {flash_attn!r} is not one of {', '.join(FlashAttnMode)}; "
                        "using auto")  # fmt: skip
    return kv, fa, problems
