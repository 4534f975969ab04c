"""``gemmadesk --self-test`` run from source, and the desktop-integration files (fast; always run).

The frozen bundle runs the same self-test in test_bundle.py; here it runs in this interpreter, on the real
Gemma 3 GGUF and real Qt widgets, so a broken check is caught without building anything.
"""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gemmadesk import APP_ID, APP_NAME
from gemmadesk import selftest as st
from gemmadesk.core.paths import resources_dir

REPO = Path(__file__).resolve().parents[2]


def _lines(report: str) -> dict[str, str]:
    """check name -> its line, for the ✓/✗ lines of a report."""
    found = {}
    for line in report.splitlines():
        if m := re.match(r"^[✓✗] ([^:]+): ", line):
            found[m.group(1)] = line
    return found


@pytest.mark.slow
def test_selftest_passes_on_real_model(
    gemma3_gguf: Path, tmp_path: Path, gemmadesk_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report_file = tmp_path / "reports" / "self-test.txt"
    code = st.main(["--model", str(gemma3_gguf), "--tokens", "4", "--report", str(report_file)])
    out = capsys.readouterr().out
    assert code == 0, out
    lines = _lines(out)
    assert set(lines) == {
        "install", "data folders", "desktop libraries", "qt", "markdown", "window", "hardware", "llama.cpp",
        "images/audio", "model", "chat",
    }  # fmt: skip
    assert all(line.startswith("✓") for line in lines.values()), out
    assert "code block rendered and highlighted" in lines["markdown"]
    assert re.search(r"\b[1-4] tokens in \d+ chunks: '.+'", lines["chat"]), lines["chat"]
    assert "source at" in lines["install"]
    assert "llama-cpp-python 0.3.36" in lines["llama.cpp"]
    assert re.search(r"\b[1-4] tokens in", lines["model"]), lines["model"]
    assert re.search(r"main window painted \d+\.\d\d s after the process started", lines["window"])
    assert out.rstrip().endswith("self-test passed (11 checks)")
    assert lines["images/audio"].startswith("✓ images/audio: libmtmd loaded")
    # The report file carries the same text (windowed Windows builds have no stdout).
    assert report_file.read_text(encoding="utf-8") == out
    # The data folders were created where GEMMADESK_HOME (set per test) says, not next to the code.
    assert (gemmadesk_home / "data").is_dir()
    assert str(gemmadesk_home / "data") in lines["data folders"]


def test_selftest_names_a_missing_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.gguf"
    code = st.main(["--model", str(missing), "--no-window", "--report", str(tmp_path / "r.txt")])
    out = capsys.readouterr().out
    assert code == 1
    assert _lines(out)["model"] == next(line for line in out.splitlines() if line.startswith("✗ model"))
    assert f"no such model file: {missing}" in out
    assert out.rstrip().endswith("self-test FAILED: model")
    # The checks that could run still did, and passed.
    assert _lines(out)["llama.cpp"].startswith("✓")


def test_selftest_without_stdout_writes_the_report_to_the_log_folder(
    tmp_path: Path, gemmadesk_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A windowed Windows build runs with sys.stdout = None (pythonw does the same); set it so here."""
    monkeypatch.setattr(sys, "stdout", None)
    code = st.main(["--no-window", "--model", str(tmp_path / "missing.gguf")])
    assert code == 1
    report = (gemmadesk_home / "logs" / "self-test.txt").read_text(encoding="utf-8")
    assert "✗ model: no such model file" in report
    assert "✓ qt: " in report


@pytest.mark.slow
def test_selftest_reports_a_truncated_model(
    gemma3_gguf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "truncated.gguf"
    with gemma3_gguf.open("rb") as src:
        broken.write_bytes(src.read(4 * 2**20))
    code = st.main(["--model", str(broken), "--no-window"])
    out = capsys.readouterr().out
    assert code == 1
    assert re.search(r"✗ model: llama\.cpp could not load truncated\.gguf", out), out


@pytest.mark.slow
def test_selftest_without_display_falls_back_to_offscreen(tmp_path: Path) -> None:
    """A fresh process with no DISPLAY/WAYLAND_DISPLAY and no QT_QPA_PLATFORM must not abort in Qt."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    proc = subprocess.run(
        [sys.executable, "-m", "gemmadesk", "--self-test", "--no-window"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "platform offscreen" in _lines(proc.stdout)["qt"]


def test_check_lines_use_marks_and_times() -> None:
    ok = st.Check("qt", True, "fine", 0.0123)
    bad = st.Check("model", False, "missing", 1.5)
    assert ok.line() == "✓ qt: fine (12 ms)"
    assert bad.line() == "✗ model: missing (1500 ms)"
    assert st.format_report([ok, bad]).endswith("self-test FAILED: model\n")


# --------------------------------------------------------------------------- desktop integration files


def test_icons_exist_in_every_size_they_claim() -> None:
    from PySide6.QtGui import QImage, QImageReader

    icons = resources_dir() / "icons"
    assert (icons / "gemmadesk.svg").is_file()
    for size in (16, 24, 32, 48, 64, 128, 256, 512):
        image = QImage(str(icons / f"gemmadesk-{size}.png"))
        assert (image.width(), image.height()) == (size, size)
    for name, count in (("gemmadesk.ico", 7), ("gemmadesk.icns", 11)):
        reader = QImageReader(str(icons / name))
        assert reader.imageCount() == count, name
        assert not reader.read().isNull(), name


def test_desktop_file_names_the_app_and_its_icon() -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(resources_dir() / "gemmadesk.desktop", encoding="utf-8")
    entry = parser["Desktop Entry"]
    assert entry["Type"] == "Application"
    assert entry["Name"] == APP_NAME
    assert entry["Exec"] == entry["TryExec"] == APP_NAME  # rewritten to the bundle path on install
    assert (resources_dir() / "icons" / f"{entry['Icon']}.svg").is_file()
    assert entry["Terminal"] == "false"


def test_install_script_uses_the_package_app_id() -> None:
    """Wayland matches windows to `<desktopFileName>.desktop`: the installed name must be APP_ID."""
    script = (REPO / "packaging" / "install-linux-desktop.sh").read_text(encoding="utf-8")
    assert f'APP_ID="{APP_ID}"' in script
