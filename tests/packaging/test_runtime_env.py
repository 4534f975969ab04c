"""The app as users install it: ``--self-test`` from the environment ``bootstrap.py run`` creates, which holds
only the declared runtime dependencies (no pytest, so none of what it brings along, such as Pygments).

A package the app imports but pyproject.toml does not declare fails here: that is how a reply with a code
block once blanked the chat on a real install while every test passed. ``python3 bootstrap.py test`` (what CI
runs) prepares that environment first and names it in GEMMADESK_RUNTIME_PYTHON.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _runtime_python() -> Path:
    named = os.environ.get("GEMMADESK_RUNTIME_PYTHON")
    if named:
        return Path(named)
    guess = Path(f"{sys.prefix}-runtime") / "bin" / "python"  # the test venv's sibling, as bootstrap.py names it
    if guess.exists():
        return guess
    if os.environ.get("CI"):
        pytest.fail("GEMMADESK_RUNTIME_PYTHON is not set: CI must run `python3 bootstrap.py test`")
    pytest.skip("no runtime-only environment: run `python3 bootstrap.py test` (it creates one)")


def _distributions(python: Path) -> set[str]:
    code = "import importlib.metadata as m; print('\\n'.join(sorted({d.metadata['Name'] for d in m.distributions()})))"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120, check=True).stdout
    return {re.sub(r"[-_.]+", "-", n).lower() for n in out.split()}


def test_runtime_environment_has_no_test_tools() -> None:
    """The environment really is runtime-only (else this file would prove nothing)."""
    dists = _distributions(_runtime_python())
    assert "gemmadesk" in dists
    assert not dists & {"pytest", "pytest-qt", "mypy", "ruff", "pyinstaller", "gguf"}, dists
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in declared:
        name = re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0]
        assert re.sub(r"[-_.]+", "-", name).lower() in dists, name


@pytest.mark.slow
def test_self_test_from_the_runtime_environment(gemma3_gguf: Path, tmp_path: Path) -> None:
    """Renders a fenced code block (Markdown + highlighting) and answers a chat turn on the real Gemma 3."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DISPLAY", "WAYLAND_DISPLAY")}
    env["GEMMADESK_HOME"] = str(home)
    env["QT_QPA_PLATFORM"] = "offscreen"
    report = tmp_path / "report.txt"
    proc = subprocess.run(
        [str(_runtime_python()), "-m", "gemmadesk", "--self-test", "--model", str(gemma3_gguf), "--tokens", "6",
         "--report", str(report)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    text = report.read_text(encoding="utf-8") if report.exists() else proc.stdout
    assert proc.returncode == 0, text + proc.stderr[-3000:]
    for check in ("markdown", "qt", "window", "llama.cpp", "model", "chat"):
        assert re.search(rf"^✓ {check}: ", text, re.MULTILINE), (check, text)
    assert "code block rendered and highlighted" in text
    assert re.search(r"^✓ chat: .*\d+ tokens in \d+ chunks: '.+'", text, re.MULTILINE), text
    assert f"source at {REPO}" in text  # the checkout under test, installed editable
