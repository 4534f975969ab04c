#!/usr/bin/env python3
"""Build the GemmaDesk app folder with PyInstaller: ``python3 bootstrap.py bundle`` runs this file.

    python packaging/build.py              # dist/GemmaDesk/ (and dist/GemmaDesk.app on macOS)
    python packaging/build.py --clean      # throw away PyInstaller's cache in build/ first

dist/ and build/ are at the repository root. The result is whatever llama-cpp-python variant is installed in
the running environment (CPU, CUDA, Vulkan, Metal: chosen by CMAKE_ARGS at install time, see
packaging/README.md). On macOS, ``GEMMADESK_CODESIGN_IDENTITY`` signs the .app. Prints the bundle's path and
size, and the command that checks it (``--self-test``).
"""

# ruff: noqa: T201  (a build script: printing is its output)
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from gemmadesk import APP_NAME

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "packaging" / "gemmadesk.spec"
DIST = ROOT / "dist"
WORK = ROOT / "build"


def bundle_dir(dist: Path = DIST) -> Path:
    """The folder users get (on macOS the .app; elsewhere the onedir folder)."""
    if sys.platform == "darwin":
        return dist / f"{APP_NAME}.app"
    return dist / APP_NAME


def executable(dist: Path = DIST) -> Path:
    """The program inside the bundle that the user (or a test) starts."""
    if sys.platform == "darwin":
        return dist / f"{APP_NAME}.app" / "Contents" / "MacOS" / APP_NAME
    return dist / APP_NAME / (f"{APP_NAME}.exe" if os.name == "nt" else APP_NAME)


def tree_size(path: Path) -> int:
    """Bytes on disk of the regular files below ``path`` (links are not followed or counted twice)."""
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def build(*, clean: bool = False, dist: Path = DIST, work: Path = WORK, quiet: bool = False) -> Path:
    """Run PyInstaller on the spec; returns the bundle folder. Raises CalledProcessError when it fails."""
    cmd = [
        sys.executable,
        "-m",
        "PyInstaller",
        str(SPEC),
        "--noconfirm",
        "--distpath",
        str(dist),
        "--workpath",
        str(work),
    ]
    if clean:
        cmd.append("--clean")
    if quiet:
        cmd += ["--log-level", "WARN"]
    subprocess.run(cmd, check=True, cwd=ROOT)
    out = bundle_dir(dist)
    if sys.platform.startswith("linux"):
        # Users of the folder get the menu entry installer next to the executable.
        target = out / "install-desktop.sh"
        shutil.copy2(ROOT / "packaging" / "install-linux-desktop.sh", target)
        target.chmod(0o755)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clean", action="store_true", help="clear PyInstaller's cache before building")
    parser.add_argument("--quiet", action="store_true", help="only show PyInstaller's warnings")
    args = parser.parse_args(argv)
    try:
        import PyInstaller  # noqa: F401
    except ImportError:
        print("PyInstaller is not installed: pip install -e '.[packaging]' (bootstrap.py bundle does it)")
        return 2
    start = time.monotonic()
    try:
        out = build(clean=args.clean, quiet=args.quiet)
    except subprocess.CalledProcessError as exc:
        print(f"PyInstaller failed (exit {exc.returncode}); see its messages above")
        return exc.returncode or 1
    size = tree_size(out)
    print(f"\nbuilt {out} in {time.monotonic() - start:.0f} s: {size / 1e6:.0f} MB on disk")
    print(f"check it: {executable()} --self-test [--model PATH.gguf]")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
