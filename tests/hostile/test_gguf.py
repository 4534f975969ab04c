"""Hostile GGUF files through the command line (issue 10 items 8, 11, 12): `chat`, `import` and `list` end with
one clear error line (no traceback), quickly, in bounded memory, and touch nothing outside GEMMADESK_HOME."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.hostile.conftest import CliResult, Decoy, run_cli
from tests.support.gguf_craft import ARRAY, STRING, U8, craft, kv, minimal_model, s, tensor_info


def _clean_error(r: CliResult, *needles: str) -> str:
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, r.stderr
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    return errors[0]


def _nested(p: Path) -> Path:
    evil = s("evil") + struct.pack("<I", ARRAY) + struct.pack("<IQ", ARRAY, 1) * 5000 + struct.pack("<IQ", U8, 0)
    return craft(p, [evil])


def _alignment_string(p: Path) -> Path:
    return minimal_model(p, extra_kvs=[kv("general.alignment", STRING, "abc")])


def _alignment_array(p: Path) -> Path:
    return minimal_model(p, extra_kvs=[kv("general.alignment", ARRAY, (U8, [1, 2]))])


def _huge_lengths(p: Path) -> Path:
    return craft(p, [s("k") + struct.pack("<IIQ", ARRAY, STRING, 2**40) + b"\0" * 64])


def _past_eof(p: Path) -> Path:
    p.write_bytes(minimal_model(p).read_bytes()[:-64])
    return p


FILES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "nested-arrays": (_nested, "nested arrays"),
    "alignment-string": (_alignment_string, "general.alignment"),
    "alignment-array": (_alignment_array, "general.alignment"),
    "huge-lengths": (_huge_lengths, "is incomplete"),
    "data-past-eof": (_past_eof, "is incomplete"),
}


@pytest.mark.parametrize("name", list(FILES))
def test_chat_on_a_hostile_header(tmp_path: Path, decoy: Decoy, name: str) -> None:
    make, needle = FILES[name]
    path = make(tmp_path / f"{name}.gguf")
    r = run_cli("chat", str(path), "-p", "hi", "--no-history", timeout=120, max_rss_mib=1024)
    _clean_error(r, f"{name}.gguf", needle)
    assert r.seconds < 60 and r.max_rss_mib < 700, (r.seconds, r.max_rss_mib)
    decoy.assert_untouched()


@pytest.mark.parametrize("name", ["nested-arrays", "alignment-string"])
def test_import_of_a_hostile_header(tmp_path: Path, decoy: Decoy, name: str) -> None:
    make, needle = FILES[name]
    path = make(tmp_path / f"{name}.gguf")
    r = run_cli("import", str(path), timeout=60, max_rss_mib=512)
    _clean_error(r, "cannot import", needle)
    assert "No models installed" in run_cli("list").stdout
    decoy.assert_untouched()


def test_chat_on_a_fifo_named_gguf_does_not_hang(tmp_path: Path, decoy: Decoy) -> None:
    """Issue 10 item 8: `chat` blocked for ever opening a FIFO (no writer ever comes)."""
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    r = run_cli("chat", str(fifo), "-p", "hi", "--no-history", timeout=60, max_rss_mib=1024)
    _clean_error(r, "pipe.gguf", "named pipe")
    r = run_cli("import", str(fifo), timeout=60)
    _clean_error(r, "cannot import")
    decoy.assert_untouched()


def test_list_rescans_past_fifos_and_hostile_files(tmp_path: Path, gemmadesk_home: Path, decoy: Decoy) -> None:
    """A lost model list is rebuilt by reading every *.gguf in the models folder: a FIFO or a hostile
    header there must be skipped, not hang or crash `list`."""
    models = gemmadesk_home / "data" / "models"
    models.mkdir(parents=True)
    os.mkfifo(models / "pipe.gguf")
    _nested(models / "nested.gguf")
    minimal_model(models / "fine.gguf")
    (gemmadesk_home / "data" / "models.json").write_text("{ not json")
    r = run_cli("list", "--json", timeout=60, max_rss_mib=512)
    assert r.returncode == 0, r.stderr
    listed = {Path(m["path"]).name for m in json.loads(r.stdout)}
    assert listed <= {"fine.gguf"}, listed  # (whether a file found there is adopted is the store's rule)
    decoy.assert_untouched()


def test_chat_on_a_file_that_is_not_a_model(tmp_path: Path, decoy: Decoy) -> None:
    """Issue 10 item 12 (the engine's part): a 24-byte GGUF got llama.cpp's vague "could not load"."""
    empty = craft(tmp_path / "empty.gguf")
    _clean_error(run_cli("chat", str(empty), "-p", "hi", "--no-history", timeout=60), "contains no model weights")
    no_arch = craft(tmp_path / "noarch.gguf", tensors=[tensor_info("t", (8,), 0, 0)], data=b"\0" * 32)
    _clean_error(run_cli("chat", str(no_arch), "-p", "hi", "--no-history", timeout=60),
                 "does not say which model architecture")
    decoy.assert_untouched()
