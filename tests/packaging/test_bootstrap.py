"""bootstrap.py gives each purpose its own environment, so what users run and what the bundle holds is
exactly what pyproject.toml declares (the test tools once supplied Pygments to the app without anyone
noticing). The environments themselves are exercised by test_runtime_env.py and test_bundle.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _bootstrap(monkeypatch: pytest.MonkeyPatch, venv: Path | None) -> ModuleType:
    if venv is None:
        monkeypatch.delenv("GEMMADESK_VENV", raising=False)
    else:
        monkeypatch.setenv("GEMMADESK_VENV", str(venv))
    spec = importlib.util.spec_from_file_location("bootstrap_under_test", REPO / "bootstrap.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_command_has_its_own_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    bs = _bootstrap(monkeypatch, None)
    assert bs.ENVS["run"] == (REPO / ".venv-runtime", "", True)  # runtime dependencies only, rebuilt exactly
    assert bs.ENVS["bundle"] == (REPO / ".venv-bundle", "[packaging]", True)
    assert bs.ENVS["test"] == (REPO / ".venv", "[test,packaging]", False)
    assert bs.ENVS["bench"][0] == REPO / ".venv"


def test_gemmadesk_venv_moves_all_of_them(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bs = _bootstrap(monkeypatch, tmp_path / "v")
    assert [bs.ENVS[a][0] for a in ("test", "run", "bundle")] == [
        tmp_path / "v", tmp_path / "v-runtime", tmp_path / "v-bundle"
    ]
    assert bs.python_of(tmp_path / "v") == tmp_path / "v" / ("Scripts" if sys.platform == "win32" else "bin") / (
        "python.exe" if sys.platform == "win32" else "python"
    )


def test_an_environment_that_is_up_to_date_is_left_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The stamp (pyproject.toml + extras + CMAKE_ARGS) decides; nothing is run when it matches. The commands
    are recorded instead of run: pip needs the network, which tests may not use (the real set-up runs in
    `bootstrap.py test` itself, and test_runtime_env.py / test_bundle.py use what it made)."""
    import hashlib

    bs = _bootstrap(monkeypatch, tmp_path / "v")
    venv = tmp_path / "v-runtime"
    py = bs.python_of(venv)
    py.parent.mkdir(parents=True)
    py.write_text("")
    monkeypatch.delenv("CMAKE_ARGS", raising=False)
    stamp = hashlib.sha256(((REPO / "pyproject.toml").read_text() + "").encode()).hexdigest()
    (venv / ".gemmadesk-setup").write_text(stamp)
    ran: list[tuple[object, ...]] = []
    monkeypatch.setattr(bs, "sh", lambda *cmd, **_kw: ran.append(cmd))
    assert bs.setup(venv, "", True) == py
    assert ran == []
    (venv / ".gemmadesk-setup").write_text("stale")
    bs.setup(venv, "", True)
    assert ran[0][1:] == ("-m", "venv", "--clear", venv)  # an exact environment starts from empty
    assert ("-m", "pip", "check") in [c[1:] for c in ran]
