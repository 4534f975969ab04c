"""Start the desktop app: logging to the log file, the QApplication, the theme, the main window.

``main(argv)`` is what ``gemmadesk`` (no arguments) and ``python -m gemmadesk`` call. Heavy libraries
(llama_cpp, huggingface_hub) are imported only when first needed, so the window paints quickly.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import sys
from typing import TYPE_CHECKING

from gemmadesk import APP_ID, APP_NAME, ORG_NAME, __version__
from gemmadesk.core.paths import AppPaths, app_paths, resources_dir

if TYPE_CHECKING:
    from PySide6.QtGui import QIcon

log = logging.getLogger("gemmadesk")

DEMO_STATES = ("first-run", "downloading", "chatting")


def setup_logging(paths: AppPaths) -> None:
    """Everything at INFO and above goes to the rotating log file the Help menu points at."""
    paths.log_dir.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    if any(getattr(h, "_gemmadesk", False) for h in root.handlers):
        return
    handler = logging.handlers.RotatingFileHandler(paths.log_file, maxBytes=2_000_000, backupCount=3, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s]: %(message)s"))
    handler._gemmadesk = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def app_icon() -> QIcon:
    """Every PNG size from resources/icons (no SVG plugin needed), so each platform picks its size."""
    from PySide6.QtGui import QIcon

    icon = QIcon()
    for png in sorted((resources_dir() / "icons").glob("gemmadesk-*.png")):
        icon.addFile(str(png))
    return icon


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="gemmadesk", add_help=True)
    parser.add_argument("--hardware", help="plan for the machine described in this JSON file (`hw --json`)")
    # For scripts/screenshots.py: drive the window into a state, save a PNG, quit.
    parser.add_argument("--demo-state", choices=DEMO_STATES, help=argparse.SUPPRESS)
    parser.add_argument("--screenshot", default="screenshot.png", help=argparse.SUPPRESS)
    parser.add_argument("--demo-prompt", default="Write a haiku about the sea.", help=argparse.SUPPRESS)
    return parser.parse_known_args(argv)


def apply_theme(theme: str) -> None:
    """Follow the system's light/dark scheme unless the user picked one (Qt tracks system changes itself)."""
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QApplication

    hints = QApplication.styleHints()
    schemes = {"light": Qt.ColorScheme.Light, "dark": Qt.ColorScheme.Dark}
    if theme in schemes and hasattr(hints, "setColorScheme"):
        hints.setColorScheme(schemes[theme])


def main(argv: list[str] | None = None) -> int:
    args, qt_args = parse_args(sys.argv[1:] if argv is None else argv)
    paths = app_paths().ensure()
    setup_logging(paths)
    log.info("GemmaDesk %s starting (Python %s)", __version__, sys.version.split()[0])

    from PySide6.QtWidgets import QApplication

    from gemmadesk.core.hardware import Hardware
    from gemmadesk.ui.main_window import MainWindow

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication([sys.argv[0], *qt_args])
    app.setApplicationName(APP_NAME)
    app.setOrganizationName(ORG_NAME)
    app.setApplicationVersion(__version__)
    app.setDesktopFileName(APP_ID)
    app.setWindowIcon(app_icon())
    hardware = Hardware.from_json_file(args.hardware) if args.hardware else None
    window = MainWindow(paths, hardware=hardware)
    apply_theme(window.settings.theme)
    window.show()
    if args.demo_state:
        from pathlib import Path

        from gemmadesk.ui.demo import DemoDriver

        driver = DemoDriver(window, args.demo_state, Path(args.screenshot), args.demo_prompt)
        driver.start()
    code = int(app.exec())
    log.info("GemmaDesk exiting with %s", code)
    return code


if __name__ == "__main__":
    sys.exit(main())
