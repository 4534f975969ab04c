"""Missing X11 libraries for Qt's xcb plugin: detected before Qt starts, reported with the install command.

The end-to-end cases use a real ELF library built here with the C compiler (bootstrap.py needs one anyway):
a stand-in for ``libqxcb.so`` linked against a library that is then deleted, so the real ``ldd`` reports it
"not found" — the system's own libraries are never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gemmadesk import selftest as st
from gemmadesk.core import desktop_libs as dl

REPO = Path(__file__).resolve().parents[2]
LDD_OUTPUT = """\
\tlinux-vdso.so.1 (0x00007ffd4b9f2000)
\tlibQt6XcbQpa.so.6 => /venv/PySide6/Qt/plugins/platforms/../../lib/libQt6XcbQpa.so.6 (0x00007f1)
\tlibxcb-cursor.so.0 => not found
\tlibxcb-icccm.so.4 => not found
\tlibxcb.so.1 => /lib/x86_64-linux-gnu/libxcb.so.1 (0x00007f3)
\tlibxcb-icccm.so.4 => not found
\tlibxkbcommon-x11.so.0 => not found
"""
UBUNTU = 'NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID="24.04"\n'
MINT = "NAME='Linux Mint'\nID=linuxmint\nID_LIKE=\"ubuntu debian\"\n"
FEDORA = 'NAME="Fedora Linux"\nID=fedora\nVERSION_ID=41\n'
ROCKY = 'ID="rocky"\nID_LIKE="rhel centos fedora"\n'
ARCH = "NAME=\"Arch Linux\"\nID=arch\n"
ENDEAVOUR = "ID=endeavouros\nID_LIKE=arch\n"


def test_parse_ldd_lists_each_missing_library_once() -> None:
    assert dl.parse_ldd(LDD_OUTPUT) == ["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxkbcommon-x11.so.0"]
    assert dl.parse_ldd("\tlibc.so.6 => /lib/libc.so.6 (0x1)\n") == []
    assert dl.parse_ldd("") == []


@pytest.mark.parametrize(
    ("release", "manager"),
    [(UBUNTU, "apt"), (MINT, "apt"), (FEDORA, "dnf"), (ROCKY, "dnf"), (ARCH, "pacman"), (ENDEAVOUR, "pacman")],
)
def test_package_manager_from_os_release(release: str, manager: str) -> None:
    assert dl.package_manager(release, which=lambda _tool: None) == manager


def test_package_manager_falls_back_to_what_is_installed() -> None:
    unknown = "ID=somethingnew\n"
    assert dl.package_manager(unknown, which=lambda tool: "/usr/bin/dnf" if tool == "dnf" else None) == "dnf"
    assert dl.package_manager(unknown, which=lambda _tool: None) is None


def test_one_install_command_per_distribution_family() -> None:
    sonames = ("libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxkbcommon-x11.so.0", "libxcb-shape.so.0")
    apt = dl.MissingLibraries(sonames, "apt")
    assert apt.commands() == [
        "sudo apt-get install -y libxcb-cursor0 libxcb-icccm4 libxcb-shape0 libxkbcommon-x11-0"
    ]
    assert dl.MissingLibraries(sonames, "dnf").commands() == [
        "sudo dnf install -y libxcb libxkbcommon-x11 xcb-util-cursor xcb-util-wm"
    ]
    assert dl.MissingLibraries(sonames, "pacman").commands() == [
        "sudo pacman -S --needed libxcb libxkbcommon-x11 xcb-util-cursor xcb-util-wm"
    ]
    message = apt.message()
    assert message.startswith("GemmaDesk cannot open its window: ")
    assert "(libxcb-cursor.so.0, libxcb-icccm.so.4, libxkbcommon-x11.so.0, libxcb-shape.so.0)" in message
    assert message.endswith("Install them with: " + apt.commands()[0])
    # Unknown distribution: every family's command, joined into the same one sentence.
    unknown = dl.MissingLibraries(("libxcb-cursor.so.0",), None).message()
    assert "sudo apt-get install -y libxcb-cursor0 or sudo dnf install -y xcb-util-cursor or " in unknown
    # A library the table does not know: named, with the general advice.
    odd = dl.MissingLibraries(("libsomething-new.so.3",), "apt").message()
    assert "(libsomething-new.so.3)" in odd
    assert "package manager" in odd


@pytest.mark.parametrize(
    ("env", "xcb"),
    [
        ({"DISPLAY": ":0"}, True),
        ({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}, False),  # Qt 6 prefers Wayland there
        ({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, False),
        ({"WAYLAND_DISPLAY": "wayland-0", "QT_QPA_PLATFORM": "xcb"}, True),
        ({"QT_QPA_PLATFORM": "xcb:foo=1"}, True),
        ({}, False),
    ],
)
def test_uses_xcb(env: dict[str, str], xcb: bool) -> None:
    assert dl.uses_xcb(env) is (xcb and sys.platform.startswith("linux"))


# --------------------------------------------------------------------------- real ELF files, real ldd

STUB_SONAME = "libgemmadesk-test-xcb-stub.so.0"


@pytest.fixture
def stub_plugin(tmp_path: Path) -> Path:
    """A shared library that needs STUB_SONAME, which no longer exists: what ldd sees for a missing lib."""
    if not sys.platform.startswith("linux"):
        pytest.skip("ELF shared libraries and ldd: Linux only")
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler is required (bootstrap.py builds llama-cpp-python with it)"
    lib_dir, plugin_dir = tmp_path / "lib", tmp_path / "plugins" / "platforms"
    lib_dir.mkdir()
    plugin_dir.mkdir(parents=True)
    (tmp_path / "dep.c").write_text("int gemmadesk_stub_dep(void) { return 1; }\n")
    code = "int gemmadesk_stub_dep(void);\nint plugin(void) { return gemmadesk_stub_dep(); }\n"
    (tmp_path / "plugin.c").write_text(code)
    dep = lib_dir / STUB_SONAME
    subprocess.run(
        [cc, "-shared", "-fPIC", f"-Wl,-soname,{STUB_SONAME}", "-o", str(dep), str(tmp_path / "dep.c")], check=True
    )
    plugin = plugin_dir / "libqxcb.so"
    subprocess.run(
        [cc, "-shared", "-fPIC", "-o", str(plugin), str(tmp_path / "plugin.c"), str(dep)], check=True
    )
    dep.unlink()
    return plugin


def test_real_ldd_finds_the_missing_library(stub_plugin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert dl.missing_for(stub_plugin) == [STUB_SONAME]
    # With the library in the table, the one command for this system's package manager.
    monkeypatch.setitem(dl.PACKAGES, STUB_SONAME, {"apt": "stub-apt", "dnf": "stub-dnf", "pacman": "stub-pacman"})
    missing = dl.check_xcb({"DISPLAY": ":0"}, plugin=stub_plugin)
    assert missing is not None
    assert missing.sonames == (STUB_SONAME,)
    assert missing.message().endswith(tuple(f"{dl.INSTALL[m]} stub-{m}" for m in dl.INSTALL))
    # Not on X11 (Wayland, offscreen): nothing to report before Qt starts.
    assert dl.check_xcb({"WAYLAND_DISPLAY": "wayland-0"}, plugin=stub_plugin) is None


def test_the_app_reports_missing_libraries_instead_of_qts_abort(stub_plugin: Path, tmp_path: Path) -> None:
    """`gemmadesk` (what `bootstrap.py run` and the bundle's launcher start) on an X11 display."""
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env.update(DISPLAY=":99", GEMMADESK_XCB_PLUGIN=str(stub_plugin), PATH=os.environ["PATH"])
    proc = subprocess.run(
        [sys.executable, "-m", "gemmadesk"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert proc.stderr.startswith("GemmaDesk cannot open its window: ")
    assert STUB_SONAME in proc.stderr
    assert "could not load the Qt platform plugin" not in proc.stderr
    log = Path(env["GEMMADESK_HOME"]) / "logs"
    assert STUB_SONAME in "".join(p.read_text() for p in log.glob("*.log"))


def test_self_test_names_the_missing_libraries_and_still_runs_the_rest(
    stub_plugin: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.setenv("GEMMADESK_XCB_PLUGIN", str(stub_plugin))
    monkeypatch.setitem(dl.PACKAGES, STUB_SONAME, {"apt": "stub-apt", "dnf": "stub-dnf", "pacman": "stub-pacman"})
    code = st.main(["--no-window", "--report", str(tmp_path / "r.txt")])
    out = capsys.readouterr().out
    assert code == 1
    line = next(x for x in out.splitlines() if x.startswith("✗ desktop libraries: "))
    assert STUB_SONAME in line
    assert "stub-" in line
    # Qt was switched to offscreen for the remaining checks instead of aborting the process.
    assert "✓ qt: " in out
    assert "platform offscreen" in out
    assert "✓ markdown: " in out
    assert out.rstrip().endswith("self-test FAILED: desktop libraries")
