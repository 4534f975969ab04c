"""The one GGUF reader (gemmadesk.core.gguf_file) against hostile files: every bad file is a GGUFError with one
clear sentence, in bounded time and memory; valid files read exactly as written (property-based)."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import gguf
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gemmadesk.core.gguf_file import KNOWN_ARCHITECTURES, GGUFError, GGUFFile, shown
from tests.support.gguf_craft import (
    ARRAY,
    F32,
    STRING,
    U8,
    U32,
    U64,
    craft,
    kv,
    minimal_model,
    s,
    tensor_info,
)

REPO = Path(__file__).resolve().parents[2]


def _error(path: Path) -> GGUFError:
    with pytest.raises(GGUFError) as err:
        GGUFFile.open(path)
    message = str(err.value)
    assert message.count(". ") == 0 and message.endswith("."), f"one sentence: {message!r}"
    assert path.name in message or "GGUF" in message
    return err.value


def test_a_valid_file_reads_everything(tmp_path: Path) -> None:
    path = minimal_model(tmp_path / "ok.gguf", extra_kvs=[kv("general.name", STRING, "Tiny"),
                                                          kv("llama.feed_forward_length", ARRAY, (U32, [1, 2, 3]))])
    f = GGUFFile.open(path)
    assert (f.architecture, f.name, f.n_tensors) == ("llama", "Tiny", 1)
    assert f.arch("feed_forward_length") == [1, 2, 3] and f.arch_int("block_count") == 1
    assert f.tensors[0].dims == (8, 4) and f.tensors[0].n_bytes == 128
    assert f.data_end == f.file_bytes
    f.check_loadable()


def test_5000_nested_arrays_are_refused_without_recursion(tmp_path: Path) -> None:
    """Issue 10 item 11: this raised RecursionError (a traceback) in gguf_header.py."""
    nested = s("evil") + struct.pack("<I", ARRAY) + struct.pack("<IQ", ARRAY, 1) * 5000 + struct.pack("<IQ", U8, 0)
    err = _error(craft(tmp_path / "nested.gguf", [nested]))
    assert err.kind == "corrupt" and "nested arrays" in str(err)


@pytest.mark.parametrize(("vtype", "value"), [(STRING, "abc"), (STRING, "32"), (ARRAY, (U32, [32])),
                                              (U64, 32), (U32, 0), (U32, 48)])
def test_general_alignment_must_be_a_power_of_two_u32(tmp_path: Path, vtype: int, value: object) -> None:
    """Issue 10 item 11: a string or array alignment was a ValueError/TypeError traceback (llama.cpp refuses
    them all, and any alignment that is not a power of two)."""
    path = minimal_model(tmp_path / "align.gguf", extra_kvs=[kv("general.alignment", vtype, value)])
    err = _error(path)
    assert err.kind == "corrupt" and "general.alignment" in str(err)


def test_a_good_custom_alignment_is_used(tmp_path: Path) -> None:
    path = craft(tmp_path / "a64.gguf", [kv("general.alignment", U32, 64), kv("general.architecture", STRING, "llama")],
                 [tensor_info("t", (8,), 0, 0)], data=b"\0" * 32, alignment=64)
    f = GGUFFile.open(path)
    assert f.data_start % 64 == 0 and f.data_end == f.file_bytes


HUGE = [
    ("n_kv", lambda p: craft(p, n_kv=2**62)),
    ("n_tensors", lambda p: craft(p, n_tensors=2**40)),
    ("negative counts", lambda p: craft(p, n_kv=2**64 - 1)),
    ("key length", lambda p: craft(p, [struct.pack("<Q", 2**60) + b"k"])),
    ("string length", lambda p: craft(p, [s("k") + struct.pack("<IQ", STRING, 2**40) + b"x" * 64])),
    ("scalar array", lambda p: craft(p, [s("k") + struct.pack("<IIQ", ARRAY, F32, 2**61)])),
    ("string array", lambda p: craft(p, [s("k") + struct.pack("<IIQ", ARRAY, STRING, 2**40) + b"\0" * 64])),
    ("many short strings", lambda p: craft(p, [s("tokenizer.ggml.tokens") + struct.pack("<IIQ", ARRAY, STRING, 2**23)
                                               + struct.pack("<Q", 0) * 2**23])),
    ("tensor dims", lambda p: craft(p, tensors=[s("t") + struct.pack("<I", 1000)])),
    ("tensor size", lambda p: craft(p, tensors=[tensor_info("t", (2**40, 2**40), 0, 0)])),
    ("negative dim", lambda p: craft(p, tensors=[tensor_info("t", (2**64 - 32,), 0, 0)])),
    ("offset", lambda p: craft(p, tensors=[tensor_info("t", (8,), 0, 2**63)], data=b"\0" * 32)),
    ("data past the end", lambda p: craft(p, tensors=[tensor_info("t", (2**30,), 0, 0)], data=b"\0" * 32)),
    ("name length", lambda p: craft(p, tensors=[s("x" * 200) + struct.pack("<I", 0)])),
    ("unknown value type", lambda p: craft(p, [s("k") + struct.pack("<I", 99)])),
    ("unknown tensor type", lambda p: craft(p, tensors=[tensor_info("t", (32,), 4, 0)], data=b"\0" * 32)),
    ("row not a whole block", lambda p: craft(p, tensors=[tensor_info("t", (33,), 2, 0)], data=b"\0" * 64)),
    ("duplicate key", lambda p: craft(p, [kv("a", U8, 1), kv("a", U8, 2)])),
    ("empty key", lambda p: craft(p, [kv("", U8, 1)])),
    ("duplicate tensor", lambda p: craft(p, tensors=[tensor_info("t", (8,), 0, 0), tensor_info("t", (8,), 0, 32)],
                                         data=b"\0" * 64)),
    ("version 1", lambda p: craft(p, version=1)),
    ("big-endian", lambda p: craft(p, version=3 << 24)),
    ("cut in the header", lambda p: p.write_bytes(minimal_model(p).read_bytes()[:60]) and p),
]


@pytest.mark.parametrize(("what", "make"), HUGE, ids=[h[0] for h in HUGE])
def test_hostile_headers_fail_fast_in_bounded_memory(tmp_path: Path, what: str, make) -> None:  # type: ignore[no-untyped-def]
    """Issue 10 item 11: counts and lengths are bounded by the file's size and llama.cpp's rules; nothing
    allocates what a header merely claims. Each case is one clear GGUFError within a second or two."""
    path = make(tmp_path / f"{what.replace(' ', '-')}.gguf")
    tracemalloc.start()
    started = time.monotonic()
    try:
        err = _error(path)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert time.monotonic() - started < 10, what
    assert peak < 8 * 2**20 + path.stat().st_size, (what, peak)
    assert err.kind in ("corrupt", "truncated"), (what, err.kind, str(err))


def test_tensor_data_past_the_end_is_an_interrupted_download(tmp_path: Path) -> None:
    path = craft(tmp_path / "cut.gguf", tensors=[tensor_info("t", (64,), 0, 0)], data=b"\0" * 100)
    err = _error(path)
    assert err.kind == "truncated"
    assert "is incomplete" in str(err) and "download it again" in str(err)
    assert GGUFFile.open(path, check_complete=False).data_end > path.stat().st_size


def test_invalid_utf8_and_control_characters_are_made_safe(tmp_path: Path) -> None:
    evil_name = b"Evil\x1b[2J\r\nname\xe2\x80\xae"
    path = minimal_model(tmp_path / "u.gguf", extra_kvs=[kv(b"general.\xff\xfe", U8, 1),
                                                         kv("general.name", STRING, evil_name)])
    f = GGUFFile.open(path)
    assert "general.\ufffd\ufffd" in f.metadata
    assert f.name == "Evil?[2J??name?"
    assert shown("x" * 500).endswith("…") and len(shown("x" * 500)) == 120


def test_a_24_byte_file_is_a_gguf_but_not_a_model(tmp_path: Path) -> None:
    """Issue 10 item 12 (the reader's part): DATA's import calls check_loadable to refuse it."""
    path = craft(tmp_path / "empty.gguf")
    assert path.stat().st_size == 24
    f = GGUFFile.open(path)
    assert (f.architecture, f.n_tensors) == ("", 0)
    with pytest.raises(GGUFError, match="contains no model weights") as err:
        f.check_loadable()
    assert err.value.kind == "unloadable"


def test_check_loadable_reports_architecture_problems(tmp_path: Path) -> None:
    with pytest.raises(GGUFError, match="“frobnicator”, which this version of llama.cpp does not support"):
        GGUFFile.open(minimal_model(tmp_path / "alien.gguf", "frobnicator")).check_loadable()
    with pytest.raises(GGUFError, match="vision projector"):
        GGUFFile.open(minimal_model(tmp_path / "mmproj.gguf", "clip")).check_loadable()
    no_arch = craft(tmp_path / "noarch.gguf", tensors=[tensor_info("t", (8,), 0, 0)], data=b"\0" * 32)
    with pytest.raises(GGUFError, match="does not say which model architecture"):
        GGUFFile.open(no_arch).check_loadable()
    for arch in ("gemma3", "gemma4", "llama", "qwen3"):
        GGUFFile.open(minimal_model(tmp_path / f"{arch}.gguf", arch)).check_loadable()


def test_known_architectures_are_the_ones_in_the_pinned_llama_cpp() -> None:
    """Every name in the list is in libllama's architecture table: a NUL-terminated string (or the tail of
    one: the linker merges "bert" into "nomic-bert")."""
    import llama_cpp

    lib = Path(llama_cpp.__file__).parent / "lib" / ("llama.dll" if os.name == "nt" else "libllama.so")
    if not lib.exists():
        lib = next((Path(llama_cpp.__file__).parent / "lib").glob("*llama*"))
    blob = lib.read_bytes()
    missing = sorted(a for a in KNOWN_ARCHITECTURES if a.encode() + b"\0" not in blob)
    assert not missing
    assert b"\0gemma4\0" in blob and "frobnicator" not in KNOWN_ARCHITECTURES


# ----- non-regular files ---------------------------------------------------------------------------------
_OPEN_IN_CHILD = """
import sys
from pathlib import Path
what, path = sys.argv[1], Path(sys.argv[2])
if what == "reader":
    from gemmadesk.core.gguf_file import GGUFFile, GGUFError
    try:
        GGUFFile.open(path)
    except GGUFError as exc:
        print(exc)
elif what == "layout":
    from gemmadesk.core.gguf_info import read_layout, GGUFError
    try:
        read_layout(path)
    except GGUFError as exc:
        print(exc)
elif what == "engine":
    from gemmadesk.core.engine import Engine, DirectLoadSettings, EngineError
    try:
        Engine().load(DirectLoadSettings(model_path=str(path), n_ctx=256))
    except EngineError as exc:
        print(exc)
elif what == "import":
    from gemmadesk.core.store import ModelStore, StoreError
    try:
        ModelStore().import_file(path)
    except StoreError as exc:
        print(exc)
"""


@pytest.mark.parametrize("what", ["reader", "layout", "engine", "import"])
def test_a_fifo_named_gguf_is_refused_without_blocking(tmp_path: Path, what: str) -> None:
    """Issue 10 item 8: opening a FIFO blocks until a writer comes; `chat` hung on it."""
    fifo = tmp_path / "model.gguf"
    os.mkfifo(fifo)
    env = {**os.environ, "GEMMADESK_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    try:
        proc = subprocess.run([sys.executable, "-c", _OPEN_IN_CHILD, what, str(fifo)], capture_output=True, text=True,
                              timeout=60, env=env, cwd=REPO)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what}: opening a FIFO named .gguf blocked")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "model.gguf" in proc.stdout and ("named pipe" in proc.stdout or "not a file" in proc.stdout), proc.stdout


def test_folders_and_devices_are_not_model_files(tmp_path: Path) -> None:
    folder = tmp_path / "dir.gguf"
    folder.mkdir()
    assert _error(folder).kind == "not_file"
    device = tmp_path / "zero.gguf"
    device.symlink_to("/dev/zero")
    err = _error(device)
    assert err.kind == "not_file" and "a device" in str(err)
    assert _error(tmp_path / "missing.gguf").kind == "missing"


# ----- property-based --------------------------------------------------------------------------------------
_KEYS = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=20).filter(
    lambda k: not k.startswith("tokenizer.ggml.") and k not in ("general.alignment", "general.architecture"))
_VALUES = st.one_of(
    st.integers(0, 2**32 - 1).map(lambda v: ("u32", v)),
    st.integers(-(2**63), 2**63 - 1).map(lambda v: ("i64", v)),
    st.booleans().map(lambda v: ("bool", v)),
    st.floats(allow_nan=False, width=32).map(lambda v: ("f32", v)),
    st.text(min_size=1, max_size=50).map(lambda v: ("str", v)),  # the writer skips empty strings
    st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=5000).map(lambda v: ("arr_i32", v)),
    st.lists(st.text(max_size=10), min_size=1, max_size=20).map(lambda v: ("arr_str", v)),
)


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(_KEYS, _VALUES, max_size=8))
def test_property_what_the_gguf_package_writes_reads_back(tmp_path: Path,
                                                          values: dict[str, tuple[str, object]]) -> None:
    """Any metadata the official writer produces reads back exactly (arrays over 4,096 items: length only)."""
    path = tmp_path / "p.gguf"
    w = gguf.GGUFWriter(path, "llama")
    for key, (kind, value) in values.items():
        {"u32": w.add_uint32, "i64": w.add_int64, "bool": w.add_bool, "f32": w.add_float32,
         "str": w.add_string}.get(kind, w.add_array)(key, value)  # type: ignore[operator]
    w.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    f = GGUFFile.open(path)
    for key, (kind, value) in values.items():
        if kind == "arr_i32" and len(value) > 4096:  # type: ignore[arg-type]
            assert key not in f.metadata and f.array_lengths[key] == len(value)  # type: ignore[arg-type]
        elif kind == "f32":
            assert f.metadata[key] == pytest.approx(value, nan_ok=True)
        else:
            assert f.metadata[key] == value, key
    assert f.tensors[0].dims == (32, 4) and f.data_end == f.file_bytes


def _seed_file(tmp: Path) -> bytes:
    return minimal_model(tmp / "seed.gguf", extra_kvs=[kv("general.name", STRING, "seed"),
                                                       kv("tokenizer.chat_template", STRING, "{{ x }}"),
                                                       kv("llama.arr", ARRAY, (STRING, ["a", "bc"]))]).read_bytes()


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_property_damaged_files_are_a_gguf_error_or_read(tmp_path: Path, data: st.DataObject) -> None:
    """Random byte edits, insertions and cuts of a valid file: the reader returns or raises GGUFError,
    never another exception (a short version of the fuzz run recorded in docs/hostile-input.md)."""
    blob = bytearray(_seed_file(tmp_path))
    for _ in range(data.draw(st.integers(1, 6))):
        op = data.draw(st.sampled_from(["set", "insert", "cut", "u64"]))
        at = data.draw(st.integers(0, len(blob)))
        if op == "set" and at < len(blob):
            blob[at] = data.draw(st.integers(0, 255))
        elif op == "insert":
            blob[at:at] = data.draw(st.binary(min_size=1, max_size=16))
        elif op == "cut":
            del blob[at:]
        elif op == "u64" and at + 8 <= len(blob):
            blob[at : at + 8] = struct.pack("<Q", data.draw(st.sampled_from([0, 1, 2**31, 2**32, 2**63, 2**64 - 1])))
    path = tmp_path / "fuzz.gguf"
    path.write_bytes(bytes(blob))
    error: GGUFError | None = None
    try:
        f = GGUFFile.open(path)
    except GGUFError as exc:
        error = exc
    if error is not None:
        assert error.kind in ("not_gguf", "truncated", "corrupt") and str(error).endswith("."), str(error)
        return
    assert f.data_end <= f.file_bytes and all(t.offset % 32 == 0 for t in f.tensors)
