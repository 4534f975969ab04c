"""Before Qt starts on Linux: are the system libraries its X11 (xcb) platform plugin needs installed?

Qt's wheels bring Qt itself but not the desktop's X11 helper libraries. Without, say, libxcb-cursor0
(absent on a stock Ubuntu or Debian desktop) Qt prints "could not load the Qt platform plugin xcb" and
aborts, which tells a user nothing they can act on. :func:`check_xcb` asks the dynamic linker (``ldd`` on
the xcb plugin) which libraries are missing and turns them into the one install command for this system
(apt, dnf or pacman), before any Qt window is attempted: ``gemmadesk`` (so also ``bootstrap.py run``), the
bundle's launcher and ``--self-test`` all go through it.

Standard library only, no Qt (PySide6 is located, never imported): it must run when Qt cannot.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

# soname → package, per package manager. Qt 6's xcb plugin needs these beyond libc and Qt itself.
PACKAGES: dict[str, dict[str, str]] = {
    "libxcb-cursor.so.0": {"apt": "libxcb-cursor0", "dnf": "xcb-util-cursor", "pacman": "xcb-util-cursor"},
    "libxcb-icccm.so.4": {"apt": "libxcb-icccm4", "dnf": "xcb-util-wm", "pacman": "xcb-util-wm"},
    "libxcb-keysyms.so.1": {"apt": "libxcb-keysyms1", "dnf": "xcb-util-keysyms", "pacman": "xcb-util-keysyms"},
    "libxcb-image.so.0": {"apt": "libxcb-image0", "dnf": "xcb-util-image", "pacman": "xcb-util-image"},
    "libxcb-render-util.so.0": {
        "apt": "libxcb-render-util0", "dnf": "xcb-util-renderutil", "pacman": "xcb-util-renderutil"
    },
    "libxcb-util.so.1": {"apt": "libxcb-util1", "dnf": "xcb-util", "pacman": "xcb-util"},
    "libxkbcommon-x11.so.0": {"apt": "libxkbcommon-x11-0", "dnf": "libxkbcommon-x11", "pacman": "libxkbcommon-x11"},
    "libxkbcommon.so.0": {"apt": "libxkbcommon0", "dnf": "libxkbcommon", "pacman": "libxkbcommon"},
    "libxcb-shape.so.0": {"apt": "libxcb-shape0", "dnf": "libxcb", "pacman": "libxcb"},
    "libxcb-xinerama.so.0": {"apt": "libxcb-xinerama0", "dnf": "libxcb", "pacman": "libxcb"},
    "libxcb-randr.so.0": {"apt": "libxcb-randr0", "dnf": "libxcb", "pacman": "libxcb"},
    "libxcb-xkb.so.1": {"apt": "libxcb-xkb1", "dnf": "libxcb", "pacman": "libxcb"},
    "libxcb-sync.so.1": {"apt": "libxcb-sync1", "dnf": "libxcb", "pacman": "libxcb"},
    "libxcb-xfixes.so.0": {"apt": "libxcb-xfixes0", "dnf": "libxcb", "pacman": "libxcb"},
    "libxcb-shm.so.0": {"apt": "libxcb-shm0", "dnf": "libxcb", "pacman": "libxcb"},
    "libxcb-render.so.0": {"apt": "libxcb-render0", "dnf": "libxcb", "pacman": "libxcb"},
    "libxcb-xinput.so.0": {"apt": "libxcb-xinput0", "dnf": "libxcb", "pacman": "libxcb"},
    "libxcb-glx.so.0": {"apt": "libxcb-glx0", "dnf": "libxcb", "pacman": "libxcb"},
    "libxcb.so.1": {"apt": "libxcb1", "dnf": "libxcb", "pacman": "libxcb"},
    "libX11-xcb.so.1": {"apt": "libx11-xcb1", "dnf": "libX11-xcb", "pacman": "libx11"},
    "libX11.so.6": {"apt": "libx11-6", "dnf": "libX11", "pacman": "libx11"},
    "libSM.so.6": {"apt": "libsm6", "dnf": "libSM", "pacman": "libsm"},
    "libICE.so.6": {"apt": "libice6", "dnf": "libICE", "pacman": "libice"},
    "libEGL.so.1": {"apt": "libegl1", "dnf": "libglvnd-egl", "pacman": "libglvnd"},
    "libGL.so.1": {"apt": "libgl1", "dnf": "libglvnd-glx", "pacman": "libglvnd"},
    "libOpenGL.so.0": {"apt": "libopengl0", "dnf": "libglvnd-opengl", "pacman": "libglvnd"},
    "libfontconfig.so.1": {"apt": "libfontconfig1", "dnf": "fontconfig", "pacman": "fontconfig"},
    "libfreetype.so.6": {"apt": "libfreetype6", "dnf": "freetype", "pacman": "freetype2"},
    "libdbus-1.so.3": {"apt": "libdbus-1-3", "dnf": "dbus-libs", "pacman": "dbus"},
    "libglib-2.0.so.0": {"apt": "libglib2.0-0", "dnf": "glib2", "pacman": "glib2"},
}  # fmt: skip
INSTALL = {"apt": "sudo apt-get install -y", "dnf": "sudo dnf install -y", "pacman": "sudo pacman -S --needed"}
_DISTRO_FAMILIES = {
    "apt": ("debian", "ubuntu", "linuxmint", "pop", "elementary", "raspbian", "kali", "neon", "zorin"),
    "dnf": ("fedora", "rhel", "centos", "rocky", "almalinux", "nobara", "ol"),
    "pacman": ("arch", "manjaro", "endeavouros", "garuda", "cachyos"),
}
_NOT_FOUND = re.compile(r"^\s*(\S+)\s*=>\s*not found\s*$", re.MULTILINE)


@dataclass(frozen=True)
class MissingLibraries:
    """Libraries the xcb plugin cannot find, and how to install them here."""

    sonames: tuple[str, ...]
    manager: str | None  # "apt" | "dnf" | "pacman", or None when this system's is unknown

    def commands(self) -> list[str]:
        """One install command (several only when the package manager could not be told)."""
        managers = [self.manager] if self.manager else list(INSTALL)
        out = []
        for manager in managers:
            packages = sorted({PACKAGES[s][manager] for s in self.sonames if s in PACKAGES})
            if packages:
                out.append(f"{INSTALL[manager]} {' '.join(packages)}")
        return out

    def message(self) -> str:
        libs = ", ".join(self.sonames)
        commands = self.commands()
        if not commands:
            return (
                f"GemmaDesk cannot open its window: Qt's X11 support needs system libraries that are missing "
                f"({libs}). Install the packages that provide them with your distribution's package manager."
            )
        how = commands[0] if len(commands) == 1 else " or ".join(commands)
        return (
            f"GemmaDesk cannot open its window: Qt's X11 support needs system libraries that are missing "
            f"({libs}). Install them with: {how}"
        )


def parse_ldd(output: str) -> list[str]:
    """The sonames ``ldd`` reports as "not found", in order, without repeats."""
    seen: dict[str, None] = {}
    for name in _NOT_FOUND.findall(output):
        seen.setdefault(name, None)
    return list(seen)


def package_manager(os_release: str, which: Callable[[str], str | None] = shutil.which) -> str | None:
    """apt, dnf or pacman for the distribution described by an /etc/os-release text (else by what exists)."""
    fields: dict[str, str] = {}
    for line in os_release.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip()] = value.strip().strip("'\"").lower()
    ids = [fields.get("ID", ""), *fields.get("ID_LIKE", "").split()]
    for distro in ids:
        for manager, family in _DISTRO_FAMILIES.items():
            if distro in family:
                return manager
    for manager, tool in (("apt", "apt-get"), ("dnf", "dnf"), ("pacman", "pacman")):
        if which(tool):
            return manager
    return None


def uses_xcb(env: Mapping[str, str]) -> bool:
    """Whether Qt will try its X11 platform plugin: QT_QPA_PLATFORM says so, or an X11-only session."""
    if not sys.platform.startswith("linux"):
        return False
    chosen = env.get("QT_QPA_PLATFORM", "")
    if chosen:
        return chosen.split(";")[0].split(":")[0] == "xcb"
    return bool(env.get("DISPLAY")) and not env.get("WAYLAND_DISPLAY")


def xcb_plugin() -> Path | None:
    """PySide6's libqxcb.so (in a PyInstaller bundle: the bundled copy), found without importing Qt."""
    roots: list[Path] = []
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        roots.append(Path(bundle) / "PySide6")
    spec = importlib.util.find_spec("PySide6")
    if spec is not None and spec.submodule_search_locations:
        roots += [Path(p) for p in spec.submodule_search_locations]
    for root in roots:
        plugin = root / "Qt" / "plugins" / "platforms" / "libqxcb.so"
        if plugin.is_file():
            return plugin
    return None


def missing_for(plugin: Path, timeout_s: float = 10.0) -> list[str]:
    """Sonames ``plugin`` needs that the dynamic linker cannot find (Qt's own libraries resolve beside it)."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return []  # no way to tell; Qt itself will report a failure
    qt_lib = plugin.parents[2] / "lib"
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(qt_lib), env.get("LD_LIBRARY_PATH", "")) if p)
    try:
        proc = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=timeout_s, env=env)
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_ldd(proc.stdout + proc.stderr)


def check_xcb(env: Mapping[str, str] | None = None, plugin: Path | None = None) -> MissingLibraries | None:
    """The missing libraries when Qt would use xcb here and cannot, else None.

    ``GEMMADESK_XCB_PLUGIN`` names another plugin file to inspect (the tests use a stub library).
    """
    env = os.environ if env is None else env
    if not uses_xcb(env):
        return None
    return missing_libraries(env, plugin)


def missing_libraries(env: Mapping[str, str] | None = None, plugin: Path | None = None) -> MissingLibraries | None:
    """What the xcb plugin lacks on this system, whether or not Qt would use it now (None: nothing, or no Linux)."""
    env = os.environ if env is None else env
    if not sys.platform.startswith("linux"):
        return None
    override = env.get("GEMMADESK_XCB_PLUGIN")
    target = Path(override) if override else plugin or xcb_plugin()
    if target is None or not target.is_file():
        return None
    sonames = [s for s in missing_for(target) if not s.startswith("libQt6")]
    if not sonames:
        return None
    try:
        release = Path("/etc/os-release").read_text(encoding="utf-8", errors="replace")
    except OSError:
        release = ""
    return MissingLibraries(tuple(sonames), package_manager(release))
