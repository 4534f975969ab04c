"""Build the PyInstaller bundle and run the frozen app the way a user's first start does.

Skipped unless ``GEMMADESK_TEST_BUNDLE=1`` (CI's ``.ci/run`` sets it) or pytest is run with ``-m bundle``:
building takes a minute or more. Everything here is real: ``packaging/build.py`` runs PyInstaller on the
spec into dist/, and the frozen executable runs its ``--self-test`` on the real Gemma 3 GGUF with no
display, no GEMMADESK_HOME and HOME/XDG folders in a temporary directory.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gemmadesk import APP_ID, APP_NAME

REPO = Path(__file__).resolve().parents[2]
DIST = REPO / "dist"
BUNDLE = DIST / (f"{APP_NAME}.app" if sys.platform == "darwin" else APP_NAME)
EXE = (
    BUNDLE / "Contents" / "MacOS" / APP_NAME
    if sys.platform == "darwin"
    else BUNDLE / (f"{APP_NAME}.exe" if os.name == "nt" else APP_NAME)
)
INTERNAL = BUNDLE / "Contents" / "Frameworks" if sys.platform == "darwin" else BUNDLE / "_internal"
ENABLE = "set GEMMADESK_TEST_BUNDLE=1 (or run pytest -m bundle) to build the PyInstaller bundle and test it"

pytestmark = [pytest.mark.bundle, pytest.mark.slow]


@pytest.fixture(scope="module")
def bundle(request: pytest.FixtureRequest) -> Path:
    """Build dist/GemmaDesk once for this module with `bootstrap.py bundle` itself: in its own environment
    (.venv-bundle: the runtime dependencies and PyInstaller, nothing from the test tools), exactly what a
    release build gets. `bootstrap.py test` has prepared that environment, so no network is needed here."""
    selected = re.search(r"(?<!not )\bbundle\b", request.config.option.markexpr or "")
    if os.environ.get("GEMMADESK_TEST_BUNDLE") != "1" and not selected:
        pytest.skip(ENABLE)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    if "GEMMADESK_VENV" not in env:  # the bundle environment sits beside the test environment
        env["GEMMADESK_VENV"] = sys.prefix
    proc = subprocess.run(
        ["python3" if sys.platform != "win32" else sys.executable, str(REPO / "bootstrap.py"), "bundle", "--quiet"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,  # under pytest's own 600 s limit
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert f"built {BUNDLE}" in proc.stdout
    bundle_python = Path(f"{env['GEMMADESK_VENV']}-bundle") / "bin" / "python"
    assert f"+ {bundle_python} packaging/build.py --quiet" in proc.stdout, proc.stdout[-2000:]
    assert EXE.is_file()
    assert os.access(EXE, os.X_OK)
    return BUNDLE


def _user_env(home: Path) -> dict[str, str]:
    """A first start: no GEMMADESK_HOME, no display, the user's folders in `home`."""
    drop = {"GEMMADESK_HOME", "DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM", "PYTHONPATH", "PYTHONHOME"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / "config"),
        XDG_DATA_HOME=str(home / "share"),
        XDG_CACHE_HOME=str(home / "cache"),
        XDG_STATE_HOME=str(home / "state"),
    )
    return env


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every path below root with its size and modification time (to spot any write)."""
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def test_frozen_self_test_runs_gemma3_and_writes_nothing_inside(
    bundle: Path, gemma3_gguf: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    report = tmp_path / "report.txt"
    before = _tree(bundle)
    proc = subprocess.run(
        [str(EXE), "--self-test", "--model", str(gemma3_gguf), "--report", str(report)],
        env=_user_env(home),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = report.read_text(encoding="utf-8")
    assert text == proc.stdout
    assert "frozen bundle" in text
    assert re.search(r"variant (cpu|cuda|vulkan|metal|rocm)\b", text), text
    assert "✗" not in text
    for name in ("qt", "markdown", "window", "llama.cpp", "images/audio", "model", "chat"):
        assert f"✓ {name}: " in text
    assert "platform offscreen" in text
    # First start found its folders through platformdirs (XDG on Linux), not beside the executable.
    assert f"data {home / 'share' / APP_NAME}" in text
    assert (home / "share" / APP_NAME).is_dir()
    assert (home / "config" / APP_NAME).is_dir()
    assert _tree(bundle) == before, "the frozen app wrote inside its bundle"


def test_frozen_cli_reports_the_llama_backend(bundle: Path, tmp_path: Path) -> None:
    from gemmadesk.core.backend import probe_backend

    proc = subprocess.run([str(EXE), "hw"], env=_user_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert probe_backend().label in proc.stdout


def test_frozen_cli_reads_the_packaged_catalog(bundle: Path, tmp_path: Path) -> None:
    """`models` needs gemmadesk/core/data/catalog.json, read through importlib.resources in the bundle."""
    proc = subprocess.run([str(EXE), "models"], env=_user_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for model in ("E2B", "E4B", "26B-A4B"):
        assert re.search(rf"^\W*{re.escape(model)}\s", proc.stdout, re.MULTILINE), model


def test_bundle_is_lean_and_complete(bundle: Path) -> None:
    names = {p.relative_to(INTERNAL).as_posix() for p in INTERNAL.rglob("*")}
    lib = "llama_cpp/lib/"
    wanted_llama = ("libllama", "libggml", "libggml-base", "libggml-cpu", "libmtmd")
    for stem in wanted_llama:
        assert any(n.startswith(lib + stem + ".") for n in names), stem
    if sys.platform.startswith("linux"):
        for plugin in (
            "platforms/libqxcb.so",
            "platforms/libqwayland.so",
            "platforms/libqoffscreen.so",
            "imageformats/libqsvg.so",
            "iconengines/libqsvgicon.so",
        ):
            assert f"PySide6/Qt/plugins/{plugin}" in names, plugin
        # The versioned duplicates of the llama.cpp libraries stay out.
        assert not any(n.startswith(lib) and n.count(".so.") and n.split(".so.")[1].count(".") for n in names)
    unwanted = ("Qt6Qml", "Qt6Quick", "WebEngine", "Qt6Designer", "Qt6Pdf", "tkinter", "torch", "_pytest", "mypy",
                "pydantic_core", "hypothesis")  # test-only packages that optional imports would drag in
    found = sorted(n for n in names if any(u in n for u in unwanted))
    assert not found, found
    assert "resources/icons/gemmadesk.svg" in names
    assert "resources/build-info.json" in names
    size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file() and not p.is_symlink())
    assert size < 400 * 10**6, f"the CPU bundle is {size / 1e6:.0f} MB"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the desktop entry installer is Linux-only")
def test_desktop_entry_installs_and_uninstalls(bundle: Path, tmp_path: Path) -> None:
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "share")}
    script = bundle / "install-desktop.sh"
    proc = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    entry = tmp_path / "share" / "applications" / f"{APP_ID}.desktop"
    assert f'Exec="{EXE}"' in entry.read_text(encoding="utf-8")
    icons = tmp_path / "share" / "icons" / "hicolor"
    assert (icons / "256x256" / "apps" / "gemmadesk.png").is_file()
    assert (icons / "scalable" / "apps" / "gemmadesk.svg").is_file()
    proc = subprocess.run(["sh", str(script), "--uninstall"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert not entry.exists()
    assert not (icons / "16x16" / "apps" / "gemmadesk.png").exists()


def test_frozen_chat_runs_the_app_engine_on_gemma3(bundle: Path, gemma3_gguf: Path, tmp_path: Path) -> None:
    """The app's own engine (chat template, sampling, SQLite history) inside the bundle, not just llama_cpp."""
    home = tmp_path / "home"
    home.mkdir()
    before = _tree(bundle)
    cmd = [str(EXE), "chat", str(gemma3_gguf), "-p", "The capital of France is", "--json"]
    cmd += ["--max-tokens", "8", "--ctx", "512", "--seed", "0", "--temperature", "0"]
    proc = subprocess.run(cmd, env=_user_env(home), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert result["stats"]["completion_tokens"] > 0
    assert result["reply"].strip()
    assert result["model"]["architecture"] == "gemma3"
    assert (home / "share" / APP_NAME / "chats.sqlite3").is_file()
    assert _tree(bundle) == before, "the frozen app wrote inside its bundle"


def test_frozen_serve_answers_the_frozen_remote_client(bundle: Path, gemma3_gguf: Path, tmp_path: Path) -> None:
    """The OpenAI-compatible server (uvicorn/Starlette) and the remote backend (httpx2) inside the bundle:
    the frozen `serve` on the real Gemma 3, asked by the frozen `remote chat`."""
    import signal

    from tests.support.serving import URL_RE, wait_loaded

    home = tmp_path / "home"
    home.mkdir()
    env = _user_env(home)
    serve = subprocess.Popen([str(EXE), "serve", str(gemma3_gguf), "--port", "0", "--ctx", "512", "--name", "g3"],
                             env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        assert serve.stderr is not None
        line = serve.stderr.readline()
        match = URL_RE.search(line)
        assert match, line
        wait_loaded(match.group(1))
        cmd = [str(EXE), "remote", "chat", match.group(1), "-m", "g3", "-p", "The capital of France is",
               "--max-tokens", "8", "--temperature", "0", "--json"]  # fmt: skip
        proc = subprocess.run(cmd, env={**env, "NO_PROXY": "127.0.0.1"}, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        result = json.loads(proc.stdout)
        assert result["stats"]["completion_tokens"] > 0 and result["reply"].strip()
        serve.send_signal(signal.SIGINT)
        assert serve.wait(30) == 0
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
        if serve.stderr:
            serve.stderr.close()
