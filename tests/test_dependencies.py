"""Every third-party package the code imports is declared in pyproject.toml, in the right place.

The app's code (gemmadesk/, packaging/launcher.py) may only import runtime dependencies: a user's install has
nothing else (Pygments once arrived only through pytest, and every code block blanked the chat on a real
install). Tests, benchmarks and scripts may also use the ``test`` extra. A package that is only present
because another one pulls it in does not count. tests/packaging/test_runtime_env.py checks the same from the
other side, by running the app in an environment with only the runtime dependencies.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _names(requirements: list[str]) -> set[str]:
    return {_norm(re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0]) for r in requirements}


def _imports(paths: list[Path]) -> dict[str, set[str]]:
    """Top-level third-party module → files importing it (absolute imports only, anywhere in the file)."""
    found: dict[str, set[str]] = {}
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("gemmadesk", "tests", "benchmarks", "__future__"):
                    found.setdefault(top, set()).add(str(path.relative_to(REPO)))
    return found


def _undeclared(modules: dict[str, set[str]], allowed: set[str], local: frozenset[str] = frozenset()) -> list[str]:
    dists = packages_distributions()
    bad = []
    for module, where in sorted(modules.items()):
        if module in local:
            continue
        owners = {_norm(d) for d in dists.get(module, [])}
        if not owners & allowed:
            bad.append(f"{module} (distribution {', '.join(sorted(owners)) or 'not installed'}) in {sorted(where)[:3]}")
    return bad


def test_the_app_imports_only_runtime_dependencies() -> None:
    files = [*(REPO / "gemmadesk").rglob("*.py"), REPO / "packaging" / "launcher.py"]
    modules = _imports(files)
    assert {"PySide6", "llama_cpp", "markdown_it", "pygments", "httpx2"} <= set(modules)  # the check sees them
    assert _undeclared(modules, _names(PROJECT["dependencies"])) == []


def test_tests_benchmarks_and_scripts_import_only_declared_packages() -> None:
    files = [p for folder in ("tests", "benchmarks", "scripts") for p in (REPO / folder).rglob("*.py")]
    # benchmarks/gpu/ runs on the GPU machine with that machine's own packages (torch there measures the
    # GPU's memory bandwidth); it is never run from a GemmaDesk environment. Only its optional torch is allowed.
    allowed = _names(PROJECT["dependencies"]) | _names(PROJECT["optional-dependencies"]["test"])
    gpu = [p for p in files if p.is_relative_to(REPO / "benchmarks" / "gpu")]
    files = [p for p in files if p not in gpu]
    gpu_imports = {m: where for m, where in _imports(gpu).items() if m != "torch"}
    # Modules that live in the repository itself (imported by scripts that put their folder on sys.path).
    folders = ("tests", "benchmarks", "scripts", "packaging")
    local = {p.stem for folder in folders for p in (REPO / folder).rglob("*.py")}
    assert _undeclared(_imports(files), allowed, frozenset(local)) == []
    assert _undeclared(gpu_imports, allowed, frozenset(local)) == []


def test_test_only_packages_are_not_runtime_dependencies() -> None:
    """gguf is used by the tests only (the app reads GGUF headers itself): users should not install it."""
    runtime = _names(PROJECT["dependencies"])
    assert "gguf" not in runtime
    assert not runtime & {"pytest", "mypy", "ruff", "pyinstaller"}
