"""`gemmadesk hw` and `gemmadesk models` as a user or script runs them (real subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GiB = 2**30


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gemmadesk", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=120)


def test_hw_json_describes_this_machine() -> None:
    proc = cli("hw", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["ram_total_bytes"] > GiB
    assert data["backend"]["llama_cpp_version"] == "0.3.36"


def test_models_for_a_described_machine(tmp_path: Path) -> None:
    hw = {"os": "Linux", "arch": "x86_64", "ram_total_bytes": 32 * GiB, "ram_available_bytes": 28 * GiB,
          "gpus": [{"name": "RTX 4070", "vendor": "nvidia", "memory_kind": "discrete", "total_bytes": 12 * GiB,
                    "free_bytes": 11 * GiB, "usable_by_build": True, "backend": "CUDA"}],
          "backend": {"llama_cpp_version": "0.3.36", "gpu_offload": True, "backends": ["CUDA", "CPU"]}}
    path = tmp_path / "hw.json"
    path.write_text(json.dumps(hw))
    proc = cli("models", "--hardware", str(path), "--ctx", "8192", "--json", "--all")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["recommended"] == "12b-google-q4_0"
    verdicts = {m["id"]: m["verdict"] for m in data["models"]}
    assert verdicts["e2b-google-q4_0"] == "gpu" and verdicts["31b-google-q4_0"] == "partial"
    assert any(m["format"] == "w4a16-ct" for m in data["not_runnable"])
    table = cli("models", "--hardware", str(path))
    assert "★" in table.stdout and "Recommended: Gemma 4 12B" in table.stdout


def test_bad_hardware_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "hw.json"
    path.write_text("{}")
    proc = cli("models", "--hardware", str(path))
    assert proc.returncode != 0
    assert "cannot read hardware description" in proc.stderr


def test_recommend_cli_json_and_exit_codes(tmp_path: Path) -> None:
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"os": "Linux", "arch": "x86_64", "ram_total_bytes": 64 * GiB,
                               "gpus": [{"name": "RTX 4090", "vendor": "nvidia", "memory_kind": "discrete",
                                         "total_bytes": 24 * GiB, "free_bytes": 23 * GiB, "usable_by_build": True,
                                         "backend": "CUDA"}],
                               "backend": {"gpu_offload": True, "backends": ["CUDA", "CPU"]}}))
    proc = cli("recommend", "--hardware", str(big), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["recommended"]["id"].startswith("31b") and data["recommended"]["verdict"] == "gpu"
    assert data["recommended"]["max_ctx"]["gpu"] >= 8192
    assert data["runner_up"]["id"] != data["recommended"]["id"]
    tiny = tmp_path / "tiny.json"
    tiny.write_text(json.dumps({"os": "Linux", "arch": "x86_64", "ram_total_bytes": 2 * GiB}))
    none = cli("recommend", "--hardware", str(tiny))
    assert none.returncode == 3
    assert "No Gemma 4 model fits" in none.stdout
