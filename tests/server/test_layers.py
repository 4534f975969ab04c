"""The server is an adapter: the core never imports it, and it never imports the Qt layer."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_never_imports_the_server() -> None:
    files = list((REPO / "gemmadesk" / "core").rglob("*.py"))
    assert any(p.parent.name == "remote" for p in files)
    bad = {str(p): n for p in files for n in imports(p) if n.startswith(("gemmadesk.server", "gemmadesk.cli"))}
    assert not bad, bad


def test_server_does_not_import_qt_or_the_ui() -> None:
    files = list((REPO / "gemmadesk" / "server").rglob("*.py"))
    assert len(files) >= 4
    bad = {str(p): n for p in files for n in imports(p) if n.startswith(("gemmadesk.ui", "PySide6", "shiboken6"))}
    assert not bad, bad
