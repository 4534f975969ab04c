#!/usr/bin/env python3
"""Set up GemmaDesk in a local virtual environment, then run it (or its tests, benchmarks, bundle).

    python3 bootstrap.py run      # set up, then launch the app
    python3 bootstrap.py test     # set up, then run lint, type checks and the whole test suite
    python3 bootstrap.py bench    # set up, then run the benchmarks (writes docs/benchmarks.md)
    python3 bootstrap.py bundle   # set up, then build the PyInstaller app into dist/GemmaDesk/

Only the standard library is used here, so it runs on a fresh machine with Python 3.11+, a C/C++
compiler and cmake. The venv lives in .venv (override with GEMMADESK_VENV). llama-cpp-python is built
from source the first time (about 10 minutes on 2 cores); pip's wheel cache makes later set-ups reuse
that build. For a GPU build set CMAKE_ARGS first, e.g. CMAKE_ARGS="-DGGML_CUDA=on"; a change of
CMAKE_ARGS forces that one package to be rebuilt.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("GEMMADESK_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / ("python.exe" if os.name == "nt" else "python")

EXTRAS = {"run": "", "test": "[test,packaging]", "bench": "[test]", "bundle": "[packaging]"}


def sh(*cmd: str | Path, env: dict[str, str] | None = None) -> None:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, env=env)


def setup(extras: str) -> None:
    if not PY.exists():
        sh(sys.executable, "-m", "venv", VENV)
    cmake_args = os.environ.get("CMAKE_ARGS", "")
    stamp_text = (ROOT / "pyproject.toml").read_text() + extras + cmake_args
    stamp = hashlib.sha256(stamp_text.encode()).hexdigest()
    stamp_file = VENV / ".gemmadesk-setup"
    if stamp_file.exists() and stamp_file.read_text() == stamp:
        return
    sh(PY, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
    previous = VENV / ".gemmadesk-cmake-args"
    if previous.exists() and previous.read_text() != cmake_args:
        # The wheel cache keys on the sdist, not on CMAKE_ARGS: a different backend needs a fresh build.
        sh(PY, "-m", "pip", "install", "--force-reinstall", "--no-cache-dir", "--no-deps", "llama-cpp-python==0.3.36")
    sh(PY, "-m", "pip", "install", "-e", f".{extras}")
    previous.write_text(cmake_args)
    stamp_file.write_text(stamp)


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
    if not argv or argv[0] not in EXTRAS:
        print(__doc__)
        return 2
    action, rest = argv[0], argv[1:]
    setup(EXTRAS[action])
    env = dict(os.environ)
    try:
        if action == "run":
            sh(PY, "-m", "gemmadesk", *rest)
        elif action == "test":
            fetch_test_assets()
            env.setdefault("QT_QPA_PLATFORM", "offscreen")
            sh(PY, "-m", "ruff", "check", "gemmadesk", "tests", "benchmarks", "scripts", "bootstrap.py")
            sh(PY, "-m", "mypy", "gemmadesk", "tests")
            sh(PY, "-m", "pytest", *rest, env=env)
        elif action == "bench":
            fetch_test_assets()
            env.setdefault("QT_QPA_PLATFORM", "offscreen")
            sh(PY, "benchmarks/run_all.py", *rest, env=env)
        elif action == "bundle":
            sh(PY, "packaging/build.py", *rest)
    except subprocess.CalledProcessError as exc:
        return exc.returncode or 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
