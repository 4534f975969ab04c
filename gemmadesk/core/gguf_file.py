"""The one GGUF reader: :class:`GGUFFile` (metadata, tensor table, architecture, sizes) and :class:`GGUFError`.

Every part of GemmaDesk that looks inside a GGUF file (the memory-fit planner, the engine's pre-load
check, the model store's import and rescan) opens it here, once, and gets either a :class:`GGUFFile` or a
:class:`GGUFError` whose ``str()`` is one sentence a person can act on (``kind`` says which case).

Why hand-written: the ``gguf`` package's ``GGUFReader`` decodes every array element into Python objects
(15+ seconds for the 262,144-token Gemma vocabulary) and imports numpy, and numpy loaded before llama.cpp's
CUDA library crashed model loads on our GPU machine. This reader keeps scalars, strings and short arrays
(per-layer hyper-parameters), records only the *length* of long arrays (the vocabulary) and skips the
``tokenizer.ggml.*`` payloads, so a header reads in milliseconds.

Every file is hostile until checked. The reader:
- opens only regular files (a FIFO, device or folder named ``*.gguf`` is refused before anything blocks);
- reads with plain ``read()`` calls, never ``mmap`` (a file truncated while mapped would crash the process);
- bounds every count and length by the bytes left in the file and by fixed caps, so no value allocates
  more than the file holds, and loops are iterative (nested arrays are refused, as llama.cpp does);
- applies llama.cpp's own header rules (``ggml/src/gguf.cpp`` in llama-cpp-python 0.3.36): duplicate or
  empty keys, ``general.alignment`` not a power-of-two u32, nested arrays, tensor names of 64+ bytes,
  more than 4 dimensions, negative or overflowing shapes, unknown tensor types, rows not a multiple of the
  block size, and tensor data out of place are all "damaged"; data past the end of the file is
  "incomplete" (``check_complete``).
:meth:`GGUFFile.check_loadable` adds what llama.cpp needs to load a *model*: tensors, an architecture it
knows (:data:`KNOWN_ARCHITECTURES`), not a vision projector.
"""

from __future__ import annotations

import os
import stat
import struct
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

GGUF_MAGIC = b"GGUF"
ErrorKind = Literal["missing", "not_file", "not_gguf", "truncated", "corrupt", "unloadable"]

# Value types (gguf.h). 9 is ARRAY.
_SCALARS: dict[int, struct.Struct] = {
    t: struct.Struct(f) for t, f in {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
                                    10: "<Q", 11: "<q", 12: "<d"}.items()
}  # fmt: skip
_STRING, _ARRAY, _UINT32 = 8, 9, 4
_U32, _U64, _I64 = struct.Struct("<I"), struct.Struct("<Q"), struct.Struct("<q")

MAX_KEPT_ARRAY = 4096  # arrays up to this length are kept (per-layer values); longer ones: length only
MAX_KEPT_STRING = 1 << 20  # a longer string value is not kept (see GGUFFile.oversized)
MAX_KEPT_TOTAL = 32 << 20  # all kept strings together; beyond this, values are not kept (oversized)
MAX_KEY_BYTES = 65536
MAX_KV = 100_000  # real files have about 50; each costs a dict entry
MAX_TENSORS = 1_000_000
MAX_STRING_ARRAY = 1 << 22  # elements of one string array (the largest real vocabularies: ~0.5 M)
MAX_OFFSET = 1 << 53  # 8 PiB: no real file has data this far out
GGML_MAX_NAME = 64
GGML_MAX_DIMS = 4
_INT64_MAX = (1 << 63) - 1
_CHUNK = 1 << 20
_SKIPPED_PREFIX = "tokenizer.ggml."  # vocabulary, scores, merges: never needed here (lengths are kept)

# ggml type id -> (elements per block, bytes per block), as in ggml's type traits (and gguf.constants).
GGML_BLOCK_SIZES: dict[int, tuple[int, int]] = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 40),
    10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
    16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
    23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2),
    34: (256, 54), 35: (256, 66), 39: (32, 17), 40: (64, 36), 41: (128, 18),
}  # fmt: skip

# The model architectures llama.cpp in llama-cpp-python 0.3.36 knows (LLM_ARCH_NAMES in
# vendor/llama.cpp/src/llama-arch.cpp, without "clip", which is a projector, and "(unknown)").
# llama-cpp-python is pinned (==0.3.36); tests/core/test_gguf_file.py checks the list against the library.
_LLAMA_CPP_ARCHITECTURES = """
llama llama4 deci falcon grok gpt2 gptj gptneox mpt baichuan starcoder refact bert modern-bert nomic-bert
nomic-bert-moe neo-bert jina-bert-v2 jina-bert-v3 eurobert bloom stablelm qwen qwen2 qwen2moe qwen2vl qwen3
qwen3moe qwen3next qwen3vl qwen3vlmoe qwen35 qwen35moe qwen4exp phi2 phi3 phimoe plamo plamo2 plamo3 codeshell
orion internlm2 minicpm minicpm3 gemma gemma2 gemma3 gemma3n gemma4 gemma4-assistant gemma-embedding
starcoder2 mamba mamba2 maple jamba falcon-h1 xverse command-r cohere2 cohere2moe dbrx olmo olmo2 olmoe
muse-glimmer openelm arctic deepseek deepseek2 deepseek2-ocr deepseek32 deepseek4 chatglm glm4 glm4moe glm-dsa
bitnet t5 t5encoder jais jais2 nemotron nemotron_h nemotron_h_moe exaone exaone4 exaone-moe rwkv6 rwkv6qwen2
rwkv7 arwkv7 granite granitemoe granitehybrid graniteswitch granite_swa chameleon wavtokenizer-dec plm
bailingmoe bailingmoe2 bailingmoe3 dots1 dots3note arcee afmoe laguna ernie4_5 ernie4_5-moe hunyuan-moe
hunyuan-dense hunyuan_vl hy_v3 hy_v4 smollm3 gpt-oss lfm2 lfm2moe dream smallthinker llada llada-moe seed_oss
grovemoe apertus minimax-01 hrm_text minimax-m2 minimax-m3 cogvlm rnd1 pangu-embedded mistral3 eagle3 dflash
mistral4 paddleocr mimo2 step35 spark2_5 llama-embed maincoder kimi-linear kimi-k3 glm5-next talkie mellum
nanbeige qwen3tts pockettts
"""
KNOWN_ARCHITECTURES = frozenset(_LLAMA_CPP_ARCHITECTURES.split())


def shown(text: str, limit: int = 120) -> str:
    """``text`` safe to show in one line of a terminal or a label: control and format characters (ANSI
    escapes, newlines, bidi overrides) become "?", and long text is cut with "…"."""
    clean = "".join("?" if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in text[: limit + 1])
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"


class GGUFError(ValueError):
    """A GGUF file GemmaDesk cannot use. ``str()`` is one sentence for the user, with the next step.

    ``kind``: "missing" (does not exist or cannot be read), "not_file" (a folder, FIFO or device),
    "not_gguf", "truncated" (incomplete download), "corrupt" (damaged header), "unloadable" (a valid
    GGUF that is not a model llama.cpp can load: see :meth:`GGUFFile.check_loadable`).
    ``detail`` holds the technical reason."""

    def __init__(self, message: str, kind: ErrorKind, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.kind: ErrorKind = kind
        self.detail = detail or message


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dims: tuple[int, ...]
    ggml_type: int
    offset: int  # relative to the start of the data section
    n_bytes: int


@dataclass(frozen=True)
class GGUFFile:
    """A parsed GGUF header. Build it with :meth:`open`."""

    path: Path
    version: int
    file_bytes: int
    data_start: int  # where the tensor data section begins
    data_end: int  # where the last tensor ends: the minimum length of a complete file
    metadata: Mapping[str, Any] = field(default_factory=dict)
    array_lengths: Mapping[str, int] = field(default_factory=dict)  # every array key -> its length
    tensors: tuple[TensorInfo, ...] = ()
    oversized: frozenset[str] = frozenset()  # string keys whose value was too large to keep

    @classmethod
    def open(cls, path: str | Path, *, check_complete: bool = True) -> GGUFFile:
        """Read the header and tensor table. ``check_complete``: also refuse a file shorter than its
        tensor table says (an interrupted download). Raises :class:`GGUFError`."""
        return _read(Path(path), check_complete)

    # ----- what callers ask ------------------------------------------------------------------------
    @property
    def architecture(self) -> str:
        """``general.architecture`` ("" when missing or not a string)."""
        value = self.metadata.get("general.architecture", "")
        return value if isinstance(value, str) else ""

    @property
    def name(self) -> str:
        """``general.name`` made safe to show (or the file name)."""
        value = self.metadata.get("general.name")
        return shown(value) if isinstance(value, str) and value.strip() else shown(self.path.stem)

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return value if isinstance(value, str) and value else None

    @property
    def n_tensors(self) -> int:
        return len(self.tensors)

    def arch(self, key: str, default: Any = None) -> Any:
        """The architecture-specific value ``<architecture>.<key>``."""
        return self.metadata.get(f"{self.architecture}.{key}", default)

    def arch_int(self, key: str, default: int = 0) -> int:
        """``<architecture>.<key>`` as an int; ``default`` when missing or not a number."""
        value = self.arch(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return default
        return int(value) if value == value and abs(value) < 2**63 else default  # NaN, inf

    def check_loadable(self) -> None:
        """Raise :class:`GGUFError` ("unloadable") unless this is a model llama.cpp can load: it has
        tensors, says its architecture, the architecture is one this llama.cpp knows, and it is not a
        vision projector."""
        name = shown(self.path.name)
        arch = self.architecture
        if arch == "clip":
            raise GGUFError(f"“{name}” is a vision projector (mmproj), not a model: use the main .gguf file "
                            "of the model.", "unloadable", "general.architecture is clip")
        if not self.tensors:
            raise GGUFError(f"“{name}” contains no model weights (its tensor table is empty), so it cannot be "
                            "loaded as a model: choose the model's full .gguf file.", "unloadable", "no tensors")
        if not arch:
            raise GGUFError(f"“{name}” does not say which model architecture it is (no general.architecture), "
                            "so llama.cpp cannot load it: choose another file.", "unloadable", "no architecture")
        if arch not in KNOWN_ARCHITECTURES:
            raise GGUFError(f"“{name}” uses the model architecture “{shown(arch, 60)}”, which this version of "
                            "llama.cpp does not support: update GemmaDesk or choose another model.",
                            "unloadable", f"unknown architecture {arch!r}")


# ----- errors worded once ---------------------------------------------------------------------------------
def _truncated(path: Path, what: str) -> GGUFError:
    return GGUFError(f"“{shown(path.name)}” is incomplete (truncated: {what}; probably an interrupted download): "
                     "download it again.", "truncated", what)


def _corrupt(path: Path, what: str) -> GGUFError:
    return GGUFError(f"“{shown(path.name)}” is damaged ({what}): download it again or choose another file.",
                     "corrupt", what)


_NOT_REGULAR = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"))  # fmt: skip


def open_regular(path: Path) -> IO[bytes]:
    """Open ``path`` for reading only if it is a regular file, without ever blocking on a FIFO (opened
    non-blocking, then checked with ``fstat`` on the open handle, so it cannot be swapped in between).
    Raises :class:`GGUFError` ("missing" / "not_file")."""
    nonblock = getattr(os, "O_NONBLOCK", 0)  # POSIX: a FIFO opens at once instead of waiting for a writer
    flags = os.O_RDONLY | nonblock | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise GGUFError(f"The model file “{shown(str(path), 300)}” does not exist: check the path, or download "
                        "the model again.", "missing") from None
    except IsADirectoryError:
        raise GGUFError(f"“{shown(path.name)}” is a folder, not a GGUF model file: choose the .gguf file "
                        "itself.", "not_file") from None
    except OSError as exc:
        raise GGUFError(f"The model file “{shown(str(path), 300)}” cannot be read ({exc.strerror or exc}): check "
                        "that it exists and that you may read it.", "missing", str(exc)) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            what = next((text for test, text in _NOT_REGULAR if test(mode)), "not a regular file")
            raise GGUFError(f"“{shown(path.name)}” is {what}, not a GGUF model file: choose a regular .gguf "
                            "file.", "not_file", f"st_mode {mode:o}")
        if nonblock:
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise


# ----- reading ----------------------------------------------------------------------------------------------
class _Reader:
    """Sequential reads over a window of the file; skipping moves the position without reading."""

    __slots__ = ("fh", "size", "path", "pos", "buf", "start")

    def __init__(self, fh: IO[bytes], size: int, path: Path) -> None:
        self.fh, self.size, self.path = fh, size, path
        self.pos, self.buf, self.start = 0, b"", 0

    def _fill(self, n: int) -> int:
        """Make ``buf`` hold ``n`` bytes at ``pos``; return their offset in ``buf``."""
        if self.pos + n > self.size:
            raise _truncated(self.path, "its header is cut off")
        self.fh.seek(self.pos)
        want = max(n, min(_CHUNK, self.size - self.pos))
        data = self.fh.read(want)
        while len(data) < n:  # unbuffered reads may return less
            more = self.fh.read(want - len(data))
            if not more:
                raise _truncated(self.path, "the file got shorter while it was read")
            data += more
        self.buf, self.start = data, self.pos
        return 0

    def unpack(self, st: struct.Struct) -> Any:
        off = self.pos - self.start
        if off < 0 or off + st.size > len(self.buf):
            off = self._fill(st.size)
        self.pos += st.size
        return st.unpack_from(self.buf, off)[0]

    def take(self, n: int) -> bytes:
        off = self.pos - self.start
        if off < 0 or off + n > len(self.buf):
            off = self._fill(n)
        self.pos += n
        return self.buf[off : off + n]

    def skip(self, n: int) -> None:
        if self.pos + n > self.size:
            raise _truncated(self.path, "its header is cut off")
        self.pos += n

    def left(self) -> int:
        return self.size - self.pos

    def skip_strings(self, count: int) -> None:
        """Skip ``count`` length-prefixed strings (the vocabulary) without building any of them. The hot
        loop of the reader: a length past the end is caught at the next refill or at the end."""
        size, buf, start, pos = self.size, self.buf, self.start, self.pos
        end = start + len(buf)
        unpack_from = _U64.unpack_from
        for _ in range(count):
            if pos + 8 > end:
                self.pos = pos
                self._fill(8)
                buf, start = self.buf, self.start
                end = start + len(buf)
            pos += 8 + unpack_from(buf, pos - start)[0]
        self.pos = pos
        if pos > size:
            raise _truncated(self.path, "its header is cut off")


class _Budget:
    __slots__ = ("left",)

    def __init__(self) -> None:
        self.left = MAX_KEPT_TOTAL


def _string(r: _Reader, keep: bool, budget: _Budget) -> str | None:
    length = int(r.unpack(_U64))
    if length > r.left():
        raise _truncated(r.path, "a header string runs past the end of the file")
    if not keep or length > MAX_KEPT_STRING or length > budget.left:
        r.skip(length)
        return None
    budget.left -= length
    return r.take(length).decode("utf-8", "replace")


def _array(r: _Reader, key: str, keep: bool, budget: _Budget) -> tuple[int, list[Any] | None, bool]:
    """(count, items or None, complete): items only for short arrays; ``complete`` False if a string
    element was too large to keep."""
    etype, count = int(r.unpack(_U32)), int(r.unpack(_U64))
    if etype == _ARRAY:
        raise _corrupt(r.path, f"the key “{shown(key, 60)}” holds nested arrays, which llama.cpp cannot read")
    if etype in _SCALARS:
        st = _SCALARS[etype]
        if count * st.size > r.left():
            raise _truncated(r.path, f"the array “{shown(key, 60)}” runs past the end of the file")
        if not keep or count > MAX_KEPT_ARRAY:
            r.skip(count * st.size)
            return count, None, True
        raw = r.take(count * st.size)
        return count, [v for (v,) in st.iter_unpack(raw)], True
    if etype != _STRING:
        raise _corrupt(r.path, f"the key “{shown(key, 60)}” has the unknown value type {etype}")
    if count * 8 > r.left():
        raise _truncated(r.path, f"the array “{shown(key, 60)}” runs past the end of the file")
    if count > MAX_STRING_ARRAY:
        raise _corrupt(r.path, f"the array “{shown(key, 60)}” has an implausible {count:,} strings")
    if not keep or count > MAX_KEPT_ARRAY:
        r.skip_strings(count)
        return count, None, True
    items = [_string(r, True, budget) for _ in range(count)]
    if any(item is None for item in items):
        return count, None, False
    return count, items, True


def _read(path: Path, check_complete: bool) -> GGUFFile:
    with open_regular(path) as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < 24:
            raise GGUFError(f"“{shown(path.name)}” is not a GGUF model file (it has only {size} bytes): choose a "
                            ".gguf file made for llama.cpp.", "not_gguf")
        r = _Reader(fh, size, path)
        if r.take(4) != GGUF_MAGIC:
            raise GGUFError(f"“{shown(path.name)}” is not a GGUF model file (it does not start with the GGUF "
                            "signature): choose a .gguf file made for llama.cpp.", "not_gguf")
        header = _parse(r)
    if check_complete and header.tensors and size < header.data_end:
        raise _truncated(path, f"it has {size:,} of {header.data_end:,} bytes")
    return header


def _parse(r: _Reader) -> GGUFFile:
    path = r.path
    version = int(r.unpack(_U32))
    if version not in (2, 3):
        if version and version & 0xFFFF == 0:
            raise _corrupt(path, f"GGUF version {version:#x}: a big-endian file, which llama.cpp cannot read here")
        raise _corrupt(path, f"GGUF version {version}, which this llama.cpp does not read")
    n_tensors, n_kv = int(r.unpack(_I64)), int(r.unpack(_I64))
    if not 0 <= n_tensors <= MAX_TENSORS or not 0 <= n_kv <= MAX_KV:
        raise _corrupt(path, f"implausible header counts ({n_tensors:,} tensors, {n_kv:,} keys)")
    if n_kv * 13 + n_tensors * 24 > r.left():  # the smallest possible entries would not fit
        raise _truncated(path, f"its header lists {n_tensors:,} tensors and {n_kv:,} keys that do not fit in it")
    meta: dict[str, Any] = {}
    lengths: dict[str, int] = {}
    oversized: set[str] = set()
    seen: set[str] = set()
    vtypes: dict[str, int] = {}
    budget = _Budget()
    for _ in range(n_kv):
        key_len = int(r.unpack(_U64))
        if key_len == 0 or key_len > MAX_KEY_BYTES:
            raise _corrupt(path, "a metadata key is empty or implausibly long")
        if key_len > r.left():
            raise _truncated(path, "a header string runs past the end of the file")
        key = r.take(key_len).decode("utf-8", "replace")
        if key in seen:
            raise _corrupt(path, f"the key “{shown(key, 60)}” appears twice")
        seen.add(key)
        vtype = int(r.unpack(_U32))
        vtypes[key] = vtype
        keep = not key.startswith(_SKIPPED_PREFIX)
        if vtype == _ARRAY:
            count, items, complete = _array(r, key, keep, budget)
            lengths[key] = count
            if items is not None:
                meta[key] = items
            elif not complete:
                oversized.add(key)
        elif vtype in _SCALARS:
            meta[key] = r.unpack(_SCALARS[vtype])
        elif vtype == _STRING:
            value = _string(r, keep, budget)
            if value is not None:
                meta[key] = value
            elif keep:
                oversized.add(key)
        else:
            raise _corrupt(path, f"the key “{shown(key, 60)}” has the unknown value type {vtype}")
    alignment = 32
    if "general.alignment" in vtypes:
        value = meta.get("general.alignment")
        if vtypes["general.alignment"] != _UINT32 or not isinstance(value, int):
            raise _corrupt(path, "its general.alignment is not a 32-bit unsigned integer")
        if value <= 0 or value & (value - 1):
            raise _corrupt(path, f"its general.alignment {value} is not a power of two")
        alignment = value
    tensors = _tensor_table(r, n_tensors, alignment)
    data_start = r.pos if not tensors else (r.pos + alignment - 1) // alignment * alignment
    if tensors and data_start > r.size:
        raise _truncated(path, "it ends before its tensor data begins")
    data_rel_end = max((t.offset + t.n_bytes for t in tensors), default=0)
    return GGUFFile(path, version, r.size, data_start, data_start + data_rel_end, meta, lengths, tuple(tensors),
                    frozenset(oversized))


def _tensor_table(r: _Reader, n_tensors: int, alignment: int) -> list[TensorInfo]:
    path = r.path
    tensors: list[TensorInfo] = []
    names: set[str] = set()
    expected = 0  # llama.cpp requires the tensors back to back, each padded to the alignment
    for i in range(n_tensors):
        name_len = int(r.unpack(_U64))
        if name_len >= GGML_MAX_NAME:
            raise _corrupt(path, f"tensor {i} has a name of {name_len:,} bytes (llama.cpp allows 63)")
        name = r.take(name_len).decode("utf-8", "replace")
        shown_name = shown(name, 63)
        if name in names:
            raise _corrupt(path, f"the tensor “{shown_name}” appears twice")
        names.add(name)
        n_dims = int(r.unpack(_U32))
        if n_dims > GGML_MAX_DIMS:
            raise _corrupt(path, f"the tensor “{shown_name}” has {n_dims:,} dimensions (llama.cpp allows 4)")
        dims = tuple(int(r.unpack(_U64)) for _ in range(n_dims))
        count = 1
        for d in dims:
            if d > _INT64_MAX:
                raise _corrupt(path, f"the tensor “{shown_name}” has a negative dimension")
            count *= d
        if count > _INT64_MAX:
            raise _corrupt(path, f"the tensor “{shown_name}” has an impossible shape")
        ggml_type, offset = int(r.unpack(_U32)), int(r.unpack(_U64))
        if ggml_type not in GGML_BLOCK_SIZES:
            raise _corrupt(path, f"the tensor “{shown_name}” has the unknown type {ggml_type} (a newer llama.cpp?)")
        block, type_size = GGML_BLOCK_SIZES[ggml_type]
        if dims and dims[0] % block:
            raise _corrupt(path, f"the rows of the tensor “{shown_name}” do not fit its type's block size")
        n_bytes = count // block * type_size
        if n_bytes > MAX_OFFSET:
            raise _corrupt(path, f"the tensor “{shown_name}” is implausibly large ({n_bytes:,} bytes)")
        if offset != expected:
            raise _corrupt(path, f"the data of the tensor “{shown_name}” is out of place (offset {offset:,}, "
                                 f"expected {expected:,})")
        expected += (n_bytes + alignment - 1) // alignment * alignment
        tensors.append(TensorInfo(name, dims, ggml_type, offset, n_bytes))
    return tensors
