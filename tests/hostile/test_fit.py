"""Hostile input for the fit list: the decode-speed record file and machine descriptions with odd values."""

from __future__ import annotations

import json
from pathlib import Path

from gemmadesk.core.paths import app_paths
from gemmadesk.core.speed import MeasuredSpeed
from gemmadesk.core.speed_log import MAX_FILE_BYTES, SpeedLog
from tests.hostile.conftest import Decoy, run_cli

GOOD = {"machine": "m", "model_file": "a.gguf", "file_bytes": 1, "placement": "cpu", "gpu_layers": 0,
        "cpu_layers": 18, "gpu_bytes": 0, "cpu_bytes": 2**28, "threads": 1, "tokens_per_s": 40.0, "tokens": 64}
RECORD = MeasuredSpeed("b.gguf", 2, "cpu", 0, 18, 0, 2**28, 1, 30.0, 64)


def speed_file() -> Path:
    path = app_paths().data_dir / "decode_speeds.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_damaged_record_file_is_kept_aside_and_replaced(decoy: Decoy) -> None:
    path = speed_file()
    path.write_bytes(b'{"version": 1, "records": [\x00\xff not json')
    assert SpeedLog().load() == ()
    aside = list(path.parent.glob("decode_speeds.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b'{"version": 1')  # kept, never deleted
    assert SpeedLog().add(RECORD, "m")
    assert [r.model_file for r in SpeedLog().load("m")] == ["b.gguf"]
    decoy.assert_untouched()


def test_a_newer_versions_file_is_left_alone() -> None:
    path = speed_file()
    text = json.dumps({"version": 99, "records": [GOOD], "future": "fields"})
    path.write_text(text)
    assert SpeedLog().load() == ()
    assert not SpeedLog().add(RECORD, "m")
    assert path.read_text() == text
    assert not list(path.parent.glob("*.corrupt-*"))


def test_bad_records_are_skipped_one_by_one() -> None:
    bad = [
        {**GOOD, "tokens_per_s": float("nan")}, {**GOOD, "tokens_per_s": -1}, {**GOOD, "tokens_per_s": 1e300},
        {**GOOD, "tokens_per_s": True}, {**GOOD, "threads": 0}, {**GOOD, "threads": "2"},
        {**GOOD, "placement": "moon"}, {**GOOD, "model_file": "x" * 5000}, {**GOOD, "cpu_bytes": -5},
        {k: v for k, v in GOOD.items() if k != "cpu_layers"}, "a string", [1, 2], None, 7,
    ]
    speed_file().write_text(json.dumps({"version": 1, "records": [*bad, GOOD]}))
    assert [r.tokens_per_s for r in SpeedLog().load()] == [40.0]
    assert SpeedLog().add(RECORD, "m")  # rewriting keeps the good one and drops the rest
    assert len(json.loads(speed_file().read_text())["records"]) == 2


def test_an_oversized_file_is_not_read_in_full() -> None:
    path = speed_file()
    with path.open("wb") as f:
        f.write(b'{"version": 1, "records": [' + b" " * (MAX_FILE_BYTES * 8))
    assert SpeedLog().load() == ()
    assert list(path.parent.glob("decode_speeds.json.corrupt-*"))


def test_a_symlinked_record_file_is_never_written_through(decoy: Decoy) -> None:
    path = speed_file()
    path.symlink_to(decoy.root / "notes.txt")
    assert not SpeedLog().add(RECORD, "m")
    assert path.is_symlink()
    decoy.assert_untouched()


def test_machine_file_with_nonsense_bandwidths_still_plans(tmp_path: Path) -> None:
    hw = {"os": "x", "arch": "x86_64", "cpu_name": "c", "cpu_cores": 2, "cpu_threads": 2,
          "ram_total_bytes": 8 * 2**30, "ram_available_bytes": 6 * 2**30,
          "ram_bandwidth_1t_bytes_s": "NaN", "ram_bandwidth_bytes_s": -3, "ram_bandwidth_threads": 1e308,
          "gpus": [{"name": "Mystery GPU", "vendor": "other", "memory_kind": "discrete", "total_bytes": 8 * 2**30,
                    "usable_by_build": True, "backend": "Vulkan", "bandwidth_bytes_s": "fast",
                    "a_field_from_the_future": 1}],
          "backend": {"llama_cpp_version": "0.3.36", "gpu_offload": True, "backends": ["Vulkan", "CPU"]}}
    path = tmp_path / "hw.json"
    path.write_text(json.dumps(hw))
    result = run_cli("models", "--hardware", str(path), "--json", timeout=60)
    assert result.returncode == 0, result.stderr
    models = json.loads(result.stdout)["models"]
    speeds = [m["speed"] for m in models if m["speed"] is not None]
    assert speeds and all(s["tokens_per_s"] > 0 and not s["bandwidth_known"] for s in speeds)
