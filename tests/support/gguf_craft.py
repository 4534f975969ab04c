"""Byte-level GGUF writing for the hostile-input tests: files the ``gguf`` package refuses to write.

- :func:`craft` builds a GGUF from raw pieces (any version, counts, value types, alignment, offsets), so
  a test can state exactly which rule a file breaks;
- :func:`with_chat_template` copies a real GGUF (the Gemma 3 270M, a synthetic Gemma 4) with its
  ``tokenizer.chat_template`` replaced or added, keeping the tensor data byte for byte, so llama.cpp loads
  it and the engine then renders the hostile template.
Written independently of gemmadesk's reader on purpose (the reader is what is under test).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path

U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
_FMT = {U8: "<B", I8: "<b", U16: "<H", I16: "<h", U32: "<I", I32: "<i", F32: "<f", BOOL: "<?", U64: "<Q", I64: "<q",
        F64: "<d"}  # fmt: skip


def s(text: str | bytes) -> bytes:
    """A GGUF string: u64 length + bytes."""
    raw = text.encode("utf-8") if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw


def kv(key: str | bytes, vtype: int, value: object) -> bytes:
    """One key/value pair; ``value`` is packed by type (STRING: str/bytes; ARRAY: (etype, items))."""
    return s(key) + struct.pack("<I", vtype) + val(vtype, value)


def val(vtype: int, value: object) -> bytes:
    if vtype == STRING:
        return s(value)  # type: ignore[arg-type]
    if vtype == ARRAY:
        pair: tuple[int, list[object]] = value  # type: ignore[assignment]
        etype, items = pair[0], list(pair[1])
        return struct.pack("<IQ", etype, len(items)) + b"".join(val(etype, i) for i in items)
    return struct.pack(_FMT[vtype], value)


def tensor_info(name: str | bytes, dims: Iterable[int], ggml_type: int = 0, offset: int = 0) -> bytes:
    dims = list(dims)
    return s(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims) + struct.pack(
        "<IQ", ggml_type, offset)


def craft(path: Path, kvs: Iterable[bytes] = (), tensors: Iterable[bytes] = (), *, version: int = 3,
          n_kv: int | None = None, n_tensors: int | None = None, data: bytes = b"", alignment: int = 32,
          tail: bytes = b"") -> Path:
    """Write a GGUF: header, ``kvs`` (from :func:`kv`), ``tensors`` (from :func:`tensor_info`), padding to
    ``alignment``, ``data``. ``n_kv``/``n_tensors`` override the counts written in the header."""
    kvs, tensors = list(kvs), list(tensors)
    head = b"GGUF" + struct.pack("<IQQ", version, len(tensors) if n_tensors is None else n_tensors,
                                 len(kvs) if n_kv is None else n_kv)
    body = head + b"".join(kvs) + b"".join(tensors) + tail
    if tensors or data:
        body += b"\0" * (-len(body) % alignment)
    path.write_bytes(body + data)
    return path


def minimal_model(path: Path, architecture: str = "llama", extra_kvs: Iterable[bytes] = ()) -> Path:
    """A small well-formed GGUF: an architecture, a block count and one f32 tensor of 8×4."""
    return craft(path, [kv("general.architecture", STRING, architecture), kv(f"{architecture}.block_count", U32, 1),
                        *extra_kvs],
                 [tensor_info("token_embd.weight", (8, 4), 0, 0)], data=b"\0" * 128)


# ----- copying a real GGUF with another chat template ---------------------------------------------------
def _skip(buf: bytes, vtype: int, pos: int) -> int:
    if vtype == STRING:
        return pos + 8 + int(struct.unpack_from("<Q", buf, pos)[0])
    if vtype == ARRAY:
        etype, count = struct.unpack_from("<IQ", buf, pos)
        pos += 12
        if etype in _FMT:
            return pos + struct.calcsize(_FMT[etype]) * count
        for _ in range(count):
            pos = _skip(buf, etype, pos)
        return pos
    return pos + struct.calcsize(_FMT[vtype])


def with_chat_template(src: Path, dst: Path, template: str | bytes) -> Path:
    """Copy ``src`` to ``dst`` with ``tokenizer.chat_template`` set to ``template`` (tensor data unchanged)."""
    with src.open("rb") as fh:
        head = fh.read(64 << 20)  # the whole header of the test models (the Gemma vocabulary is ~10 MB)
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", head, 4)
    pos, kvs, alignment = 24, [], 32
    for _ in range(n_kv):
        start = pos
        key_len = struct.unpack_from("<Q", head, pos)[0]
        key = head[pos + 8 : pos + 8 + key_len].decode("utf-8", "replace")
        vtype = struct.unpack_from("<I", head, pos + 8 + key_len)[0]
        pos = _skip(head, vtype, pos + 12 + key_len)
        if key == "general.alignment":
            alignment = struct.unpack_from("<I", head, pos - 4)[0]
        if key != "tokenizer.chat_template":
            kvs.append(head[start:pos])
    kvs.append(kv("tokenizer.chat_template", STRING, template))
    ti_start = pos
    for _ in range(n_tensors):
        name_len = struct.unpack_from("<Q", head, pos)[0]
        pos += 8 + name_len
        n_dims = struct.unpack_from("<I", head, pos)[0]
        pos += 4 + 8 * n_dims + 4 + 8
    infos = head[ti_start:pos]
    data_start = pos + (-pos % alignment)
    out = b"GGUF" + struct.pack("<IQQ", version, n_tensors, len(kvs)) + b"".join(kvs) + infos
    out += b"\0" * (-len(out) % alignment)
    with src.open("rb") as fin, dst.open("wb") as fout:
        fout.write(out)
        fin.seek(data_start)
        while block := fin.read(8 << 20):
            fout.write(block)
    return dst
