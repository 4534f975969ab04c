"""Read and check a GGUF file's header without llama.cpp, so bad files get a clear message.

llama.cpp only says "failed to load model" for a truncated file, a text file renamed .gguf or an unknown
architecture. Reading the header ourselves (magic, version, key/values, tensor table) lets the engine
name the actual problem, and check that the file is as long as its tensor table says before loading.
Arrays (the 262k-token vocabulary) are skipped, not decoded, so this takes milliseconds.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gemmadesk.core.engine.errors import ModelFileError

GGUF_MAGIC = b"GGUF"
_SCALAR_FORMATS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9
# Keys whose string values we keep; everything else is skipped (only scalars are always kept).
_KEPT_STRINGS = ("general.architecture", "general.name", "tokenizer.chat_template", "tokenizer.ggml.model")


@dataclass(frozen=True)
class GGUFInfo:
    path: Path
    version: int
    file_bytes: int
    data_end: int  # the offset where the last tensor ends: the minimum correct file length
    n_tensors: int
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    @property
    def name(self) -> str:
        return str(self.metadata.get("general.name", "") or self.path.stem)

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return str(value) if value else None

    def arch_int(self, key: str, default: int = 0) -> int:
        value = self.metadata.get(f"{self.architecture}.{key}", default)
        return int(value) if isinstance(value, int | float) else default


class _Cursor:
    def __init__(self, buf: mmap.mmap | bytes, path: Path) -> None:
        self.buf = buf
        self.pos = 0
        self.path = path

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.buf):
            raise _truncated(self.path, "its header ends early")
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += size
        return value

    def string(self) -> bytes:
        length = int(self.unpack("<Q"))
        if self.pos + length > len(self.buf):
            raise _truncated(self.path, "a header string runs past the end of the file")
        raw = bytes(self.buf[self.pos : self.pos + length])
        self.pos += length
        return raw

    def skip_value(self, vtype: int) -> None:
        if vtype == _STRING:
            length = int(self.unpack("<Q"))
            self.pos += length
        elif vtype == _ARRAY:
            etype, count = int(self.unpack("<I")), int(self.unpack("<Q"))
            if etype in _SCALAR_FORMATS:
                self.pos += struct.calcsize(_SCALAR_FORMATS[etype]) * count
            else:
                for _ in range(count):
                    self.skip_value(etype)
        elif vtype in _SCALAR_FORMATS:
            self.pos += struct.calcsize(_SCALAR_FORMATS[vtype])
        else:
            raise _corrupt(self.path, f"unknown metadata value type {vtype}")
        if self.pos > len(self.buf):
            raise _truncated(self.path, "its header ends early")


def _truncated(path: Path, why: str) -> ModelFileError:
    return ModelFileError(
        f"“{path.name}” is incomplete ({why}). The download was probably interrupted: download it again.",
        detail=str(path),
    )


def _corrupt(path: Path, why: str) -> ModelFileError:
    return ModelFileError(f"“{path.name}” is damaged ({why}). Download it again.", detail=str(path))


def _tensor_nbytes(dims: list[int], ggml_type: int, path: Path) -> int:
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    try:
        block, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
    except (ValueError, KeyError) as exc:
        raise _corrupt(path, f"unknown tensor type {ggml_type}") from exc
    count = 1
    for d in dims:
        count *= d
    return count // block * type_size


def read_gguf_info(path: str | Path) -> GGUFInfo:
    """Parse the header and tensor table; raise :class:`ModelFileError` with a clear message if bad."""
    path = Path(path)
    try:
        size = path.stat().st_size
        handle = path.open("rb")
    except FileNotFoundError as exc:
        raise ModelFileError(f"The model file “{path}” does not exist.", detail=str(exc)) from exc
    except OSError as exc:
        raise ModelFileError(f"The model file “{path}” cannot be read: {exc.strerror}.", detail=str(exc)) from exc
    if size < 24:
        raise ModelFileError(f"“{path.name}” is not a GGUF model file (it is only {size} bytes).")
    with handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        if buf[:4] != GGUF_MAGIC:
            raise ModelFileError(
                f"“{path.name}” is not a GGUF model file. GemmaDesk runs .gguf files made for llama.cpp.",
                detail=f"magic bytes {bytes(buf[:4])!r}",
            )
        cursor = _Cursor(buf, path)
        cursor.pos = len(GGUF_MAGIC)
        return _parse(cursor, path, size)


def _parse(cur: _Cursor, path: Path, size: int) -> GGUFInfo:
    version = int(cur.unpack("<I"))
    if version not in (2, 3):
        raise _corrupt(path, f"unsupported GGUF version {version}")
    n_tensors, n_kv = int(cur.unpack("<Q")), int(cur.unpack("<Q"))
    if n_tensors > 1_000_000 or n_kv > 1_000_000:
        raise _corrupt(path, "implausible header counts")
    meta: dict[str, Any] = {}
    for _ in range(n_kv):
        key = cur.string().decode("utf-8", "replace")
        vtype = int(cur.unpack("<I"))
        if vtype in _SCALAR_FORMATS:
            meta[key] = cur.unpack(_SCALAR_FORMATS[vtype])
        elif vtype == _STRING and (key in _KEPT_STRINGS or not key.startswith("tokenizer.")):
            meta[key] = cur.string().decode("utf-8", "replace")
        else:
            cur.skip_value(vtype)
    data_rel_end = 0
    for _ in range(n_tensors):
        cur.string()
        n_dims = int(cur.unpack("<I"))
        dims = [int(cur.unpack("<Q")) for _ in range(n_dims)]
        ggml_type, offset = int(cur.unpack("<I")), int(cur.unpack("<Q"))
        data_rel_end = max(data_rel_end, offset + _tensor_nbytes(dims, ggml_type, path))
    alignment = int(meta.get("general.alignment", 32)) or 32
    data_start = (cur.pos + alignment - 1) // alignment * alignment
    data_end = data_start + data_rel_end
    if n_tensors and size < data_end:
        raise _truncated(path, f"{size:,} of {data_end:,} bytes")
    return GGUFInfo(path, version, size, data_end, n_tensors, meta)
