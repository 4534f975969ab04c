"""Small, well-formed GGUF files for the download and store tests (no numpy, no ``gguf`` package).

GemmaDesk installs a download only if it is a complete GGUF with tensors, of the expected architecture
and layer count (``gemmadesk.core.model_check``), so the files a test Hub serves are real GGUF headers: a
few key/values (``general.architecture``, ``general.name``, ``<arch>.block_count``) and one ``I8`` tensor
whose bytes are random, so the payload is as large (and as incompressible) as a test needs. llama.cpp
could not run them (the tensors are not a model's); the real-load tests use ``gemma3_gguf`` and the
synthetic Gemma 4 files of ``synth_gemma4``.
"""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

ALIGNMENT = 32
_U32, _STRING, _U64 = 4, 8, 10
GGML_I8 = 24  # one byte per element


def _string(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def gguf_bytes(*, architecture: str | None = "gemma4", block_count: int | None = 35, name: str = "tiny test model",
               tensor_bytes: int = 4096, n_tensors: int = 1, seed: int | None = None,
               extra: dict[str, str | int] | None = None) -> bytes:
    """A GGUF v3 file as bytes: the given metadata and ``n_tensors`` random I8 tensors of ``tensor_bytes``."""
    head = gguf_header(architecture=architecture, block_count=block_count, name=name, tensor_bytes=tensor_bytes,
                       n_tensors=n_tensors, extra=extra)
    rng = random.Random(seed) if seed is not None else None
    body = bytearray()
    for _ in range(n_tensors):
        data = rng.randbytes(tensor_bytes) if rng is not None else os.urandom(tensor_bytes)
        body += data + b"\0" * (_aligned(tensor_bytes) - tensor_bytes)
    return head + bytes(body)


def gguf_header(*, architecture: str | None = "gemma4", block_count: int | None = 35, name: str = "tiny test model",
                tensor_bytes: int = 4096, n_tensors: int = 1, extra: dict[str, str | int] | None = None) -> bytes:
    """Only the header (padded to the data alignment) of :func:`gguf_bytes`: append ``n_tensors`` blocks of
    ``tensor_bytes`` (each padded to 32 bytes) to get a complete file, e.g. streamed for large files."""
    kv: list[tuple[str, str | int]] = []
    if architecture is not None:
        kv.append(("general.architecture", architecture))
    kv.append(("general.name", name))
    if block_count is not None and architecture:
        kv.append((f"{architecture}.block_count", block_count))
    kv += list((extra or {}).items())
    head = b"GGUF" + struct.pack("<IQQ", 3, n_tensors, len(kv))
    for key, value in kv:
        if isinstance(value, str):
            head += _string(key) + struct.pack("<I", _STRING) + _string(value)
        else:
            head += _string(key) + struct.pack("<I", _U32) + struct.pack("<I", value)
    for i in range(n_tensors):
        name_i = "token_embd.weight" if i == 0 else f"blk.{i - 1}.attn_q.weight"
        head += _string(name_i) + struct.pack("<I", 1) + struct.pack("<Q", tensor_bytes)
        head += struct.pack("<I", GGML_I8) + struct.pack("<Q", i * _aligned(tensor_bytes))
    return head + b"\0" * (_aligned(len(head)) - len(head))


def _aligned(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def write_gguf(path: Path, **kwargs: object) -> Path:
    """Write :func:`gguf_bytes` (same keyword arguments) to ``path``; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gguf_bytes(**kwargs))  # type: ignore[arg-type]
    return path


def projector_gguf(path: Path, tensor_bytes: int = 300_000) -> Path:
    """A vision projector (``clip``) GGUF, as an entry's mmproj file."""
    return write_gguf(path, architecture="clip", block_count=None, name="tiny projector", tensor_bytes=tensor_bytes)
