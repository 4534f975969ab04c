"""Start the desktop app: logging to the log file, the QApplication, the theme, the main window.

``main(argv)`` is what ``gemmadesk`` (no arguments) and ``python -m gemmadesk`` call; :func:`build` makes
the application and its window without running them (scripts/demo.py drives the window for screenshots).
Settings are read once here and passed down. Errors nobody caught (any thread) go to the log file and a
notice in the window (:func:`install_crash_handlers`). Heavy libraries (llama_cpp, huggingface_hub) are
imported only when first needed, so the window paints quickly.
"""

from __future__ import annotations

import argparse
import logging
import logging.handlers
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

from gemmadesk import APP_ID, APP_NAME, ORG_NAME, __version__
from gemmadesk.core.paths import AppPaths, app_paths, resources_dir

if TYPE_CHECKING:
    from PySide6.QtGui import QIcon, QPalette
    from PySide6.QtWidgets import QApplication

    from gemmadesk.ui.main_window import MainWindow

log = logging.getLogger("gemmadesk")

FREEZE_AFTER_MS = 5000


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
    return parser.parse_known_args(argv)


_SYSTEM_STYLE: list[str] = []  # the style Qt chose before any theme was applied (to switch back to "system")


def apply_theme(theme: str) -> None:
    """Follow the system's light/dark scheme ("system") or the user's choice; also while the app runs (View →
    Theme). Qt tracks system changes itself.

    Where the platform has no theme of its own to switch (bare X11, offscreen), an explicit choice is
    honoured with Fusion and a palette built here; "system" then goes back to the style and palette Qt chose.
    """
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QPalette
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if not isinstance(app, QApplication):
        return
    if not _SYSTEM_STYLE:
        _SYSTEM_STYLE.append(app.style().name())
    hints = QApplication.styleHints()
    schemes = {"light": Qt.ColorScheme.Light, "dark": Qt.ColorScheme.Dark}
    if theme not in schemes:
        hints.unsetColorScheme()
        if app.style().name() != _SYSTEM_STYLE[0]:
            QApplication.setStyle(_SYSTEM_STYLE[0])
        QApplication.setPalette(QPalette())  # no palette of our own: the platform's (and its changes)
        return
    hints.setColorScheme(schemes[theme])
    QApplication.setPalette(QPalette())
    is_dark = QApplication.palette().window().color().lightness() < 128
    if is_dark != (theme == "dark"):
        QApplication.setStyle("Fusion")
        QApplication.setPalette(_dark_palette() if theme == "dark" else QApplication.style().standardPalette())


def _dark_palette() -> QPalette:
    from PySide6.QtGui import QColor, QPalette

    role = QPalette.ColorRole
    colours = {
        role.Window: "#2b2b2b", role.WindowText: "#e6e6e6", role.Base: "#1f1f1f", role.AlternateBase: "#292929",
        role.ToolTipBase: "#3a3a3a", role.ToolTipText: "#e6e6e6", role.Text: "#e6e6e6", role.Button: "#353535",
        role.ButtonText: "#e6e6e6", role.BrightText: "#ff6b6b", role.Link: "#6cb6ff", role.Highlight: "#2f6fb3",
        role.HighlightedText: "#ffffff", role.PlaceholderText: "#8c8c8c",
    }  # fmt: skip
    palette = QPalette()
    for r, colour in colours.items():
        palette.setColor(r, QColor(colour))
    palette.setColor(QPalette.ColorGroup.Disabled, role.Text, QColor("#7a7a7a"))
    palette.setColor(QPalette.ColorGroup.Disabled, role.ButtonText, QColor("#7a7a7a"))
    palette.setColor(QPalette.ColorGroup.Disabled, role.WindowText, QColor("#7a7a7a"))
    return palette


def freeze_startup_objects() -> None:
    """Move everything alive after start-up (modules, Qt wrappers, the catalog) out of the garbage collector's
    reach: a full collection then scans only what the session created. Measured: full collections during a
    long streamed reply took ~100 ms each, a visible freeze (benchmarks/bench_render.py)."""
    import gc

    gc.collect()
    gc.freeze()


def _running_qapplication() -> object:
    """The running QApplication if PySide6 is loaded already (tests, the self-test), without importing it."""
    widgets = sys.modules.get("PySide6.QtWidgets")
    return widgets.QApplication.instance() if widgets is not None else None


def report_missing_libraries(message: str) -> int:
    """Qt would abort with "could not load the Qt platform plugin": say what to install instead (exit 3).

    On the terminal, in the log file, and as a desktop notification where ``notify-send`` exists (a bundle
    started from the menu has no terminal).
    """
    import shutil
    import subprocess

    log.error(message)
    if sys.stderr is not None:
        sys.stderr.write(message + "\n")
    notify = shutil.which("notify-send")
    if notify:
        try:
            subprocess.run([notify, "--app-name", APP_NAME, APP_NAME, message], timeout=5, check=False)
        except (OSError, subprocess.SubprocessError):
            pass
    return 3


def install_crash_handlers(window: MainWindow, paths: AppPaths) -> Callable[[], None]:
    """Uncaught errors of any thread: traceback to the log file, one line as a notice in ``window``.
    Returns a function that removes the handlers."""
    from PySide6.QtCore import QObject, Signal

    from gemmadesk.core.crash import install_excepthooks

    class _Notifier(QObject):  # lives in the GUI thread; emitting from any thread queues to the window
        crashed = Signal(str)

    notifier = _Notifier(window)
    notifier.crashed.connect(window.show_internal_error)
    uninstall = install_excepthooks(notifier.crashed.emit, paths.log_file)
    window.destroyed.connect(uninstall)
    return uninstall


def build(argv: list[str]) -> tuple[QApplication, MainWindow]:
    """The QApplication and the shown main window, with logging, theme and crash handlers in place."""
    args, qt_args = parse_args(argv)
    paths = app_paths().ensure()
    setup_logging(paths)
    log.info("GemmaDesk %s starting (Python %s)", __version__, sys.version.split()[0])

    from PySide6.QtWidgets import QApplication

    from gemmadesk.core.hardware import Hardware
    from gemmadesk.core.settings import SettingsStore
    from gemmadesk.ui.main_window import MainWindow

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication([sys.argv[0], *qt_args])
    app.setApplicationName(APP_NAME)
    app.setOrganizationName(ORG_NAME)
    app.setApplicationVersion(__version__)
    app.setDesktopFileName(APP_ID)
    app.setWindowIcon(app_icon())
    hardware = Hardware.from_json_file(args.hardware) if args.hardware else None
    settings_store = SettingsStore(paths.settings_file)
    settings = settings_store.load()  # the one read at start-up, passed down
    apply_theme(settings.theme)  # before any widget picks its colours
    window = MainWindow(paths, hardware=hardware, settings=settings, settings_store=settings_store)
    install_crash_handlers(window, paths)
    window.show()
    from PySide6.QtCore import QTimer

    QTimer.singleShot(FREEZE_AFTER_MS, freeze_startup_objects)
    return app, window


def main(argv: list[str] | None = None) -> int:
    from gemmadesk.core.desktop_libs import check_xcb

    missing = check_xcb()  # before Qt loads its platform plugin, which would abort the process
    if missing is not None and _running_qapplication() is None:
        setup_logging(app_paths().ensure())
        return report_missing_libraries(missing.message())
    app, _window = build(sys.argv[1:] if argv is None else argv)
    code = int(app.exec())
    log.info("GemmaDesk exiting with %s", code)
    return code


if __name__ == "__main__":
    sys.exit(main())
