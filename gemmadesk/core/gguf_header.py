"""A fast GGUF header reader: key/values and the tensor table, without reading any weights.

The ``gguf`` package's ``GGUFReader`` decodes every array element into Python objects, which takes
15+ seconds for the 262,144-token Gemma vocabulary. This reader keeps scalars, short strings and short
scalar arrays (per-layer hyper-parameters), records only the *length* of long arrays (the vocabulary),
and skips everything else, so a header reads in milliseconds. It also says where the tensor data must
end, so a truncated download is recognised before llama.cpp tries to load it.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GGUF_MAGIC = b"GGUF"
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
MAX_KEPT_ARRAY = 4096  # per-layer arrays are kept; the vocabulary (262k entries) only has its length kept
_SKIPPED_STRINGS_PREFIX = "tokenizer.ggml."  # merges and friends: never needed here


class GGUFHeaderError(ValueError):
    """The file is not a readable GGUF. ``kind`` is "missing", "not_gguf", "truncated" or "corrupt"."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dims: tuple[int, ...]
    ggml_type: int
    offset: int
    n_bytes: int


@dataclass(frozen=True)
class GGUFHeader:
    path: Path
    version: int
    file_bytes: int
    data_end: int  # where the last tensor ends: the minimum length of a complete file
    metadata: dict[str, Any] = field(default_factory=dict)
    array_lengths: dict[str, int] = field(default_factory=dict)  # every array key -> its length
    tensors: tuple[TensorInfo, ...] = ()

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    def arch(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(f"{self.architecture}.{key}", default)


class _Cursor:
    def __init__(self, buf: mmap.mmap, path: Path) -> None:
        self.buf, self.pos, self.path = buf, 0, path

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise GGUFHeaderError(f"{self.path.name} is truncated: its header ends early", "truncated")
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def raw_string(self, keep: bool = True) -> bytes:
        length = int(self.unpack("<Q"))
        if self.pos + length > len(self.buf):
            raise GGUFHeaderError(f"{self.path.name} is truncated: a header string runs past the end", "truncated")
        raw = bytes(self.buf[self.pos : self.pos + length]) if keep else b""
        self.pos += length
        return raw

    def value(self, vtype: int, keep: bool) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            raw = self.raw_string(keep)  # always advances, even when the value is not kept
            return raw.decode("utf-8", "replace") if keep else None
        raise GGUFHeaderError(f"{self.path.name} is damaged: unknown value type {vtype}", "corrupt")

    def array(self, keep: bool) -> tuple[int, list[Any] | None]:
        etype, count = int(self.unpack("<I")), int(self.unpack("<Q"))
        keep = keep and count <= MAX_KEPT_ARRAY and etype != _ARRAY
        if not keep and etype in _SCALARS:
            self.pos += struct.calcsize(_SCALARS[etype]) * count
            if self.pos > len(self.buf):
                raise GGUFHeaderError(f"{self.path.name} is truncated: its header ends early", "truncated")
            return count, None
        items = []
        for _ in range(count):
            if etype == _ARRAY:
                self.array(False)
                continue
            items.append(self.value(etype, keep))
        return count, items if keep else None


# ggml type id -> (elements per block, bytes per block), as in ggml's type traits (and gguf.constants).
# Kept here rather than imported from the ``gguf`` package, because that imports numpy, and numpy
# loaded before llama.cpp's CUDA library crashed the CUDA backend on our GPU test machine (segfault in
# libggml-cuda at model load). Reading a header must never change what a later model load does.
GGML_BLOCK_SIZES: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 40),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
    23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2),
    34: (256, 54), 35: (256, 66), 39: (32, 17), 40: (64, 36), 41: (128, 18),
}  # fmt: skip


def _tensor_nbytes(dims: tuple[int, ...], ggml_type: int, path: Path) -> int:
    try:
        block, type_size = GGML_BLOCK_SIZES[ggml_type]
    except KeyError as exc:
        raise GGUFHeaderError(f"{path.name} is damaged or too new: unknown tensor type {ggml_type}", "corrupt") from exc
    count = 1
    for d in dims:
        count *= d
    return count // block * type_size


def read_header(path: str | Path, *, check_complete: bool = True) -> GGUFHeader:
    """Parse a GGUF header. Raises :class:`GGUFHeaderError` (with a message a person can act on)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        handle = path.open("rb")
    except FileNotFoundError as exc:
        raise GGUFHeaderError(f"{path} does not exist", "missing") from exc
    except OSError as exc:
        raise GGUFHeaderError(f"{path} cannot be read: {exc.strerror or exc}", "missing") from exc
    with handle:
        if size < 24:
            raise GGUFHeaderError(f"{path.name} is not a GGUF model file (only {size} bytes)", "not_gguf")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            if buf[:4] != GGUF_MAGIC:
                raise GGUFHeaderError(
                    f"{path.name} is not a GGUF model file (it does not start with the GGUF signature)", "not_gguf")
            cur = _Cursor(buf, path)
            cur.pos = 4
            header = _parse(cur, path, size)
    if check_complete and header.tensors and size < header.data_end:
        raise GGUFHeaderError(
            f"{path.name} is truncated: {size:,} of {header.data_end:,} bytes (an interrupted download?)", "truncated")
    return header


def _parse(cur: _Cursor, path: Path, size: int) -> GGUFHeader:
    version = int(cur.unpack("<I"))
    if version not in (2, 3):
        raise GGUFHeaderError(f"{path.name} is damaged or too new: GGUF version {version}", "corrupt")
    n_tensors, n_kv = int(cur.unpack("<Q")), int(cur.unpack("<Q"))
    if n_tensors > 1_000_000 or n_kv > 1_000_000:
        raise GGUFHeaderError(f"{path.name} is damaged: implausible header counts", "corrupt")
    meta: dict[str, Any] = {}
    lengths: dict[str, int] = {}
    for _ in range(n_kv):
        key = cur.raw_string().decode("utf-8", "replace")
        vtype = int(cur.unpack("<I"))
        keep = not key.startswith(_SKIPPED_STRINGS_PREFIX)
        if vtype == _ARRAY:
            count, items = cur.array(keep)
            lengths[key] = count
            if items is not None:
                meta[key] = items
        else:
            value = cur.value(vtype, keep or vtype in _SCALARS)
            if value is not None:
                meta[key] = value
    tensors = []
    data_rel_end = 0
    for _ in range(n_tensors):
        name = cur.raw_string().decode("utf-8", "replace")
        n_dims = int(cur.unpack("<I"))
        dims = tuple(int(cur.unpack("<Q")) for _ in range(n_dims))
        ggml_type, offset = int(cur.unpack("<I")), int(cur.unpack("<Q"))
        nbytes = _tensor_nbytes(dims, ggml_type, path)
        tensors.append(TensorInfo(name, dims, ggml_type, offset, nbytes))
        data_rel_end = max(data_rel_end, offset + nbytes)
    alignment = int(meta.get("general.alignment", 32)) or 32
    data_start = (cur.pos + alignment - 1) // alignment * alignment
    return GGUFHeader(path, version, size, data_start + data_rel_end, meta, lengths, tuple(tensors))
