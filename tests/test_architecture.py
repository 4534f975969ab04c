"""Architecture rules that the test run enforces."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "gemmadesk" / "core"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_sources_never_import_qt() -> None:
    offenders = {
        str(p.relative_to(REPO)): sorted(n for n in _imports(p) if n.split(".")[0] in ("PySide6", "shiboken6"))
        for p in CORE.rglob("*.py")
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"gemmadesk/core must not import Qt: {offenders}"
    assert len(list(CORE.rglob("*.py"))) > 5, "the check must actually see the core modules"


def test_importing_all_of_core_loads_no_qt() -> None:
    """Import every core module in a fresh interpreter and check PySide6 never got loaded."""
    modules = sorted(
        "gemmadesk." + ".".join(p.relative_to(REPO / "gemmadesk").with_suffix("").parts)
        for p in CORE.rglob("*.py")
        if p.name != "__main__.py"
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n    importlib.import_module(m.removesuffix('.__init__'))\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6')]\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ui_windows_stay_small() -> None:
    """No window/widget class module over ~400 lines: compose views and a controller instead."""
    too_big = {
        str(p.relative_to(REPO)): n
        for p in (REPO / "gemmadesk" / "ui").rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 450
    }
    assert not too_big, too_big


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter's contracts of ``root``/pyproject.toml on ``root``/gemmadesk (a fresh process)."""
    code = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(no_cache=True))"
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin", "NO_COLOR": "1", "LANG": "C.UTF-8"}
    return subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, env=env,
                          timeout=300)  # fmt: skip


def test_import_contracts_are_kept() -> None:
    """The layers of docs/design/chat-core.md (import-linter, configured in pyproject.toml)."""
    proc = _lint_imports(REPO)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout and "5 kept" in proc.stdout


def test_import_contracts_catch_a_violation(tmp_path: Path) -> None:
    """The contracts are not vacuous: the leaf importing the engine, or core importing a server, breaks them."""
    import shutil

    shutil.copytree(REPO / "gemmadesk", tmp_path / "gemmadesk", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    types_py = tmp_path / "gemmadesk" / "core" / "types.py"
    types_py.write_text(types_py.read_text(encoding="utf-8") + "\nimport gemmadesk.core.engine  # noqa\n")
    (tmp_path / "gemmadesk" / "server").mkdir(exist_ok=True)  # the real server package is there since issue 13
    (tmp_path / "gemmadesk" / "core" / "uses_server.py").write_text("import gemmadesk.server\n")
    proc = _lint_imports(tmp_path)
    assert proc.returncode != 0
    assert "core.types is the leaf: it imports nothing from gemmadesk BROKEN" in proc.stdout
    assert "core never imports the adapters (ui, cli, server) BROKEN" in proc.stdout
