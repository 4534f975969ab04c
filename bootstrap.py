#!/usr/bin/env python3
"""Set up GemmaDesk in a local virtual environment, then run it (or its tests, benchmarks, bundle).

    python3 bootstrap.py run      # set up, then launch the app
    python3 bootstrap.py test     # set up, then run lint, type checks and the whole test suite
    python3 bootstrap.py bench    # set up, then run the benchmarks (writes docs/benchmarks.md)
    python3 bootstrap.py bundle   # set up, then build the PyInstaller app into dist/GemmaDesk/

Only the standard library is used here, so it runs on a fresh machine with Python 3.11+, a C/C++
compiler and cmake. Each purpose has its own virtual environment, so that what users run is exactly
what is declared: ``run`` uses .venv-runtime (the runtime dependencies only), ``bundle`` uses
.venv-bundle (those plus PyInstaller: the bundle can only contain what users get), ``test`` and
``bench`` use .venv (everything, with the test tools). ``test`` also prepares .venv-runtime (the test
suite runs the app's self-test from it) and, with GEMMADESK_TEST_BUNDLE=1, .venv-bundle. GEMMADESK_VENV
moves .venv; the others follow it (GEMMADESK_VENV-runtime, GEMMADESK_VENV-bundle). The runtime and
bundle environments are rebuilt from scratch whenever pyproject.toml changes, so nothing stays behind.
llama-cpp-python is built from source the first time (about 10 minutes on 2 cores); pip's wheel cache
makes later set-ups reuse that build. For a GPU build set CMAKE_ARGS first, e.g.
CMAKE_ARGS="-DGGML_CUDA=on"; a change of CMAKE_ARGS forces that one package to be rebuilt.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("GEMMADESK_VENV", ROOT / ".venv"))
RUNTIME_VENV = Path(f"{VENV}-runtime")
BUNDLE_VENV = Path(f"{VENV}-bundle")


def python_of(venv: Path) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / ("python.exe" if os.name == "nt" else "python")


PY = python_of(VENV)

# action -> (environment, extras, exact): an exact environment holds nothing but what the extras declare.
ENVS = {
    "run": (RUNTIME_VENV, "", True),
    "bundle": (BUNDLE_VENV, "[packaging]", True),
    "test": (VENV, "[test,packaging]", False),
    "bench": (VENV, "[test,packaging]", False),
}


def sh(*cmd: str | Path, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, env=env)


def setup(venv: Path, extras: str, exact: bool) -> Path:
    """Make ``venv`` hold GemmaDesk (editable) with ``extras``; returns its python. ``exact``: when anything
    changed, start from an empty environment, so no package from an earlier set-up stays behind."""
    py = python_of(venv)
    cmake_args = os.environ.get("CMAKE_ARGS", "")
    stamp_text = (ROOT / "pyproject.toml").read_text() + extras + cmake_args
    stamp = hashlib.sha256(stamp_text.encode()).hexdigest()
    stamp_file = venv / ".gemmadesk-setup"
    if py.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        return py
    previous = venv / ".gemmadesk-cmake-args"
    previous_args = previous.read_text() if previous.exists() else None
    if exact and venv.exists():
        sh(sys.executable, "-m", "venv", "--clear", venv)
    elif not py.exists():
        sh(sys.executable, "-m", "venv", venv)
    sh(py, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    if previous_args is not None and previous_args != cmake_args:
        # The wheel cache keys on the sdist, not on CMAKE_ARGS: a different backend needs a fresh build.
        sh(py, "-m", "pip", "install", "--force-reinstall", "--no-cache-dir", "--no-deps", "llama-cpp-python==0.3.36")
    sh(py, "-m", "pip", "install", "-e", f".{extras}")
    if exact:
        sh(py, "-m", "pip", "check")
    previous.write_text(cmake_args)
    stamp_file.write_text(stamp)
    return py


TEST_CACHE = Path.home() / ".cache" / "gemmadesk-tests"
VOCAB = "ggml-vocab-gemma-4.gguf"


def fetch_test_assets() -> None:
    """The real Gemma 4 tokenizer + chat template (15.8 MB) used by the synthetic Gemma 4 test models.

    It ships inside llama-cpp-python's source distribution (vendor/llama.cpp/models/), which pip has just
    fetched to build the package, so this normally comes from pip's cache. Tests never touch the network.
    """
    target = TEST_CACHE / VOCAB
    if target.exists():
        return
    import tarfile
    import tempfile

    TEST_CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        sh(PY, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
           "llama-cpp-python==0.3.36", "-d", tmp)
        sdist = next(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
        with tarfile.open(sdist) as tar:
            member = next(m for m in tar.getmembers() if m.name.endswith(f"vendor/llama.cpp/models/{VOCAB}"))
            source = tar.extractfile(member)
            assert source is not None
            partial = target.with_suffix(".part")
            partial.write_bytes(source.read())
            partial.replace(target)
    print(f"test asset: {target}")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ENVS:
        print(__doc__)
        return 2
    action, rest = argv[0], argv[1:]
    env = dict(os.environ)
    try:
        py = setup(*ENVS[action])
        if action == "run":
            sh(py, "-m", "gemmadesk", *rest)
        elif action == "test":
            # The suite runs the app from the runtime-only environment (and, when asked, builds the bundle
            # through `bootstrap.py bundle`): prepare both here, where pip may use the network.
            env["GEMMADESK_RUNTIME_PYTHON"] = str(setup(*ENVS["run"]))
            if env.get("GEMMADESK_TEST_BUNDLE") == "1":
                setup(*ENVS["bundle"])
            fetch_test_assets()
            env.setdefault("QT_QPA_PLATFORM", "offscreen")
            sh(py, "-m", "ruff", "check", "gemmadesk", "tests", "benchmarks", "scripts", "bootstrap.py")
            sh(py, "-m", "mypy", "gemmadesk", "tests")
            sh(py, "-m", "pytest", *rest, env=env)
        elif action == "bench":
            fetch_test_assets()
            env.setdefault("QT_QPA_PLATFORM", "offscreen")
            sh(py, "benchmarks/run_all.py", *rest, env=env)
        elif action == "bundle":
            sh(py, "packaging/build.py", *rest)
    except subprocess.CalledProcessError as exc:
        return exc.returncode or 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
