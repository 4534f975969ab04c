"""``GemmaDesk --self-test``: check that this install (above all a frozen bundle) has every part it needs.

A user who double-clicks a bundle cannot run pip to see what is missing, and a bundle that forgot a Qt
plugin or a llama.cpp library only fails on first use. This mode exercises each part for real, without a
display: Qt (a QApplication, a painted widget, the SVG app icon), the data folders (platformdirs, never
inside the bundle), the hardware probe, llama.cpp, and, given ``--model PATH.gguf``, a few real tokens.

Checks that only a real install can fail: ``desktop libraries`` (the system libraries Qt's X11 plugin needs;
when missing, the one command that installs them), ``markdown`` (a reply with a fenced code block rendered
by the app's own renderer into a Qt view, highlighted: this needs markdown-it-py and Pygments) and, with
``--model``, ``chat`` (a chat turn through the app's engine: chat template, sampling, streaming). CI runs
this from an environment that has only the runtime dependencies, so an undeclared package fails here.

The ``window`` check opens the real main window and reports how long after the process started it first
painted: the cold-start number that benchmarks/bench_bundle.py compares between the bundle and a source run.

It prints one line per check (``✓``/``✗``, with how long it took) and returns 0 only if every check
passed. Windowed Windows builds have no stdout, so ``--report FILE`` writes the same report to a file
(without it, such a build writes ``self-test.txt`` into the app's log folder).
The model is loaded with ``llama_cpp.Llama`` directly (not the app's engine) so the check stays
independent of the engine's own logic: it tests the bundle, not the app.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gemmadesk import APP_NAME, __version__

PROMPT = "The capital of France is"
BUILD_INFO_NAME = "build-info.json"  # written into the bundle's resources/ by packaging/build.py


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    seconds: float

    def line(self) -> str:
        mark = "✓" if self.ok else "✗"
        return f"{mark} {self.name}: {self.detail} ({self.seconds * 1000:.0f} ms)"


class CheckFailed(Exception):
    """A check found something missing or broken; the message says what."""


def _bundle_roots() -> list[Path]:
    """Folders that belong to the installed app and must never be written to (empty when run from source)."""
    if not getattr(sys, "frozen", False):
        return []
    roots = [Path(sys.executable).resolve().parent]
    meipass = getattr(sys, "_MEIPASS", None)
    if meipass:
        roots.append(Path(meipass).resolve())
    return roots


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root)


def check_install() -> str:
    kind = "frozen bundle" if getattr(sys, "frozen", False) else "source"
    where = getattr(sys, "_MEIPASS", None) or Path(__file__).resolve().parents[1]
    text = f"{APP_NAME} {__version__}, {kind} at {where}, Python {platform.python_version()}"
    from gemmadesk.core.paths import resources_dir

    info = resources_dir() / BUILD_INFO_NAME
    if info.is_file():
        build = json.loads(info.read_text(encoding="utf-8"))
        text += f", built {build.get('built', '?')} variant {build.get('variant', '?')}"
    return text


def check_data_dirs() -> str:
    """Data folders come from platformdirs (or GEMMADESK_HOME), are writable, and are not in the bundle."""
    from gemmadesk.core.paths import app_paths

    paths = app_paths()
    folders = (paths.config_dir, paths.data_dir, paths.cache_dir, paths.log_dir)
    for root in _bundle_roots():
        inside = [str(f) for f in folders if _inside(f, root)]
        if inside:
            raise CheckFailed(f"data folders inside the bundle {root}: {', '.join(inside)}")
    try:
        paths.ensure()
    except OSError as exc:
        raise CheckFailed(f"cannot create the data folders: {exc}") from exc
    for folder in folders:
        if not os.access(folder, os.W_OK):
            raise CheckFailed(f"data folder not writable: {folder}")
    return f"data {paths.data_dir}, config {paths.config_dir}"


def _ensure_platform_plugin() -> None:
    """Without a display (CI, ssh) Qt's default xcb/wayland plugin aborts the process: use offscreen."""
    no_display = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    if sys.platform.startswith("linux") and no_display and not os.environ.get("QT_QPA_PLATFORM"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"


def check_desktop_libs() -> str:
    """The xcb plugin's system libraries: missing ones fail only where Qt would use X11 now."""
    from gemmadesk.core.desktop_libs import missing_libraries, uses_xcb

    if not sys.platform.startswith("linux"):
        return "not needed on this platform"
    missing = missing_libraries()
    if missing is None:
        return "everything Qt's X11 plugin needs is installed"
    if uses_xcb(os.environ):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"  # Qt would abort the self-test; the rest still runs
        raise CheckFailed(missing.message())
    return f"not needed now (no X11 display); on an X11 desktop: {missing.message()}"


MARKDOWN_SAMPLE = "A reply with **bold**, a [link](https://example.org) and code:\n\n```python\nprint('hi')\n```\n"


def check_markdown() -> str:
    """Render a reply with a fenced code block through the app's renderer into a real Qt view."""
    from importlib.metadata import version

    from PySide6.QtWidgets import QApplication

    from gemmadesk.ui.markdown import MarkdownView

    if QApplication.instance() is None:
        raise CheckFailed("no QApplication (the qt check failed)")
    view = MarkdownView()
    try:
        view.show_markdown(MARKDOWN_SAMPLE)
        if view.code_blocks() != ["print('hi')"]:
            raise CheckFailed(f"the code block was not recognised (found {view.code_blocks()!r})")
        doc = view.document()
        text = doc.toPlainText()
        if "print('hi')" not in text or "**" in text:
            raise CheckFailed(f"the reply did not render as Markdown: {text[:80]!r}")
        colours = set()
        block = doc.begin()
        while block.isValid():
            it = block.begin()
            while not it.atEnd():
                fmt = it.fragment().charFormat()
                if "print" in it.fragment().text() and fmt.hasProperty(fmt.Property.ForegroundBrush):
                    colours.add(fmt.foreground().color().name())
                it += 1
            block = block.next()
        if not colours:
            raise CheckFailed("the code block was not highlighted (Pygments missing or failing: see the log)")
    finally:
        view.deleteLater()
    libraries = f"markdown-it-py {version('markdown-it-py')}, Pygments {version('pygments')}"
    return f"code block rendered and highlighted ({libraries})"


def check_chat(model: Path, n_tokens: int) -> str:
    """One chat turn through the app's engine (chat template, sampling, streaming), on the CPU."""
    import threading

    from gemmadesk.core.engine import (
        ChatMessage,
        DirectLoadSettings,
        Engine,
        EngineError,
        ReplyDone,
        SamplingParams,
        TextChunk,
    )

    engine = Engine()
    try:
        report = engine.load(DirectLoadSettings(model_path=str(model), n_ctx=1024, n_gpu_layers=0))
        params = SamplingParams(temperature=0.0, max_tokens=n_tokens, seed=0)
        chunks = 0
        done: ReplyDone | None = None
        for event in engine.chat_stream([ChatMessage("user", "Say hello.")], params, threading.Event()):
            if isinstance(event, TextChunk):
                chunks += 1
            elif isinstance(event, ReplyDone):
                done = event
    except EngineError as exc:
        raise CheckFailed(f"the chat engine failed: {exc}") from exc
    finally:
        engine.unload()
    if done is None or not done.answer.strip() or done.stats.completion_tokens < 1:
        raise CheckFailed("the chat engine produced no reply")
    reply = done.answer.strip().replace("\n", " ")[:40]
    return f"{report.chat_format} prompt, {done.stats.completion_tokens} tokens in {chunks} chunks: {reply!r}"


def check_qt() -> str:
    _ensure_platform_plugin()
    try:
        from PySide6 import __version__ as qt_version
        from PySide6.QtCore import QSize
        from PySide6.QtGui import QGuiApplication, QIcon
        from PySide6.QtWidgets import QApplication, QLabel
    except ImportError as exc:
        raise CheckFailed(f"PySide6 could not be loaded ({exc})") from exc
    from gemmadesk.core.paths import resources_dir

    app = QApplication.instance() or QApplication([APP_NAME])
    icon_file = resources_dir() / "icons" / "gemmadesk.svg"
    icon = QIcon(str(icon_file))
    if icon.pixmap(QSize(64, 64)).isNull():
        raise CheckFailed(f"the SVG app icon does not render ({icon_file}; Qt's SVG plugins missing?)")
    widget = QLabel(f"{APP_NAME} self-test")
    widget.setWindowIcon(icon)
    widget.resize(320, 80)
    widget.show()
    app.processEvents()
    painted = widget.grab()
    widget.close()
    if painted.isNull():
        raise CheckFailed("a widget could not be painted")
    platform_name = QGuiApplication.platformName()
    return f"PySide6 {qt_version}, platform {platform_name}, widget painted, SVG icon renders"


def seconds_since_process_start() -> float:
    """Wall time since this process was created (Linux: from /proc to 10 ms; elsewhere psutil)."""
    if sys.platform.startswith("linux"):
        try:
            fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
            start_ticks = int(fields[19])  # field 22 of stat(5), counted after the ") " that ends the name
            uptime = float(Path("/proc/uptime").read_text().split()[0])
            return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            pass
    import psutil

    return time.time() - psutil.Process().create_time()


def check_window(timeout_s: float = 60.0) -> str:
    """Open the app's real main window, wait for its first paint, close it the way the user would."""
    from PySide6.QtCore import QEvent, QEventLoop, QObject
    from PySide6.QtWidgets import QApplication

    from gemmadesk.core.paths import app_paths
    from gemmadesk.ui.main_window import MainWindow

    class PaintWatch(QObject):
        painted_at: float | None = None

        def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
            if event.type() == QEvent.Type.Paint and self.painted_at is None:
                self.painted_at = seconds_since_process_start()
            return False

    app = QApplication.instance()
    if app is None:
        raise CheckFailed("no QApplication (the qt check failed)")
    watch = PaintWatch()
    window = MainWindow(app_paths())
    window.installEventFilter(watch)
    window.show()
    deadline = time.monotonic() + timeout_s
    while watch.painted_at is None and time.monotonic() < deadline:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
    window.close()
    app.processEvents()
    if watch.painted_at is None:
        raise CheckFailed(f"the main window did not paint within {timeout_s:.0f} s")
    return f"main window painted {watch.painted_at:.2f} s after the process started"


def check_hardware() -> str:
    from gemmadesk.core.hardware import probe
    from gemmadesk.core.units import human_bytes

    hw = probe(include_backend=False)
    gpus = ", ".join(g.name for g in hw.gpus) or "no GPU found"
    return f"{hw.cpu_threads} threads, {human_bytes(hw.ram_total_bytes)} RAM, {gpus}"


def check_llama() -> str:
    from gemmadesk.core.backend import probe_backend

    info = probe_backend()
    if info.llama_cpp_version is None:
        raise CheckFailed(info.label)
    devices = ", ".join(f"{d.backend}:{d.name}" for d in info.devices) or "no device list"
    return f"{info.label}; devices {devices}"


def check_mtmd() -> str:
    """llama.cpp's multimodal library (images and audio) is there and loads."""
    try:
        import llama_cpp.mtmd_cpp as mtmd
    except (OSError, RuntimeError, FileNotFoundError) as exc:
        raise CheckFailed(f"llama.cpp's multimodal library (libmtmd) is missing: {exc}") from exc
    marker = mtmd.mtmd_default_marker().decode()
    return f"libmtmd loaded (media marker {marker})"


def check_model(model: Path, n_tokens: int, *, gpu: bool = True) -> str:
    """Load the GGUF and generate a few tokens; with a GPU build every layer goes to the GPU, as in the app."""
    if not model.is_file():
        raise CheckFailed(f"no such model file: {model}")
    import llama_cpp
    from llama_cpp import Llama

    offload = gpu and bool(llama_cpp.llama_supports_gpu_offload())
    start = time.perf_counter()
    try:
        llm = Llama(
            model_path=str(model),
            n_ctx=512,
            swa_full=False,
            flash_attn=False,
            verbose=False,
            n_gpu_layers=-1 if offload else 0,
        )
    except (ValueError, RuntimeError) as exc:
        raise CheckFailed(f"llama.cpp could not load {model.name}: {exc}") from exc
    load_s = time.perf_counter() - start
    try:
        start = time.perf_counter()
        out = llm.create_completion(PROMPT, max_tokens=n_tokens, temperature=0.0, seed=0, stream=False)
        gen_s = time.perf_counter() - start
    finally:
        llm.close()
    if not isinstance(out, dict):  # narrows the stream/non-stream union for the type checker
        raise CheckFailed("llama.cpp returned a stream where a completion was asked for")
    produced = out["usage"]["completion_tokens"]
    if produced < 1:
        raise CheckFailed(f"{model.name} loaded but generated no tokens")
    text = out["choices"][0]["text"].strip().replace("\n", " ")[:40]
    where = "all layers on the GPU" if offload else "CPU"
    return f"{model.name} loaded ({where}) in {load_s:.2f} s, {produced} tokens in {gen_s:.2f} s: {text!r}"


def run_checks(model: Path | None, n_tokens: int, *, window: bool = True, gpu: bool = True) -> list[Check]:
    steps: list[tuple[str, Callable[[], str]]] = [
        ("install", check_install),
        ("data folders", check_data_dirs),
        ("desktop libraries", check_desktop_libs),
        ("qt", check_qt),
        ("markdown", check_markdown),
    ]
    if window:
        steps.append(("window", check_window))
    steps += [("hardware", check_hardware), ("llama.cpp", check_llama), ("images/audio", check_mtmd)]
    if model is not None:
        steps.append(("model", lambda: check_model(model, n_tokens, gpu=gpu)))
        steps.append(("chat", lambda: check_chat(model, n_tokens)))
    checks: list[Check] = []
    for name, fn in steps:
        if name == "chat" and not checks[-1].ok:
            continue  # the model did not load: the model line says why
        start = time.perf_counter()
        try:
            detail, ok = fn(), True
        except CheckFailed as exc:
            detail, ok = str(exc), False
        except Exception as exc:  # any other failure is a finding too, never a crash of the self-test
            detail, ok = f"{type(exc).__name__}: {exc}", False
        checks.append(Check(name, ok, detail, time.perf_counter() - start))
    return checks


def format_report(checks: list[Check]) -> str:
    failed = [c.name for c in checks if not c.ok]
    passed = f"self-test passed ({len(checks)} checks)"
    summary = f"self-test FAILED: {', '.join(failed)}" if failed else passed
    return "\n".join([*(c.line() for c in checks), summary]) + "\n"


def _emit(text: str) -> None:
    """Print where a console exists; windowed Windows builds have sys.stdout = None."""
    stream = sys.stdout
    if stream is None:
        return
    try:
        stream.write(text)
        stream.flush()
    except UnicodeEncodeError:  # a legacy console code page without ✓/✗
        stream.write(text.replace("✓", "OK").replace("✗", "FAIL"))
        stream.flush()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"{APP_NAME} --self-test", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a GGUF file to load and run a few tokens on")
    parser.add_argument("--tokens", type=int, default=8, help="tokens to generate with --model (default 8)")
    parser.add_argument(
        "--report", type=Path, help="also write the report to this file (default without a console: the log folder)"
    )
    parser.add_argument("--no-window", action="store_true", help="skip opening the main window")
    parser.add_argument("--cpu", action="store_true", help="run the model on the CPU even in a GPU build")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    checks = run_checks(args.model, max(1, args.tokens), window=not args.no_window, gpu=not args.cpu)
    report = format_report(checks)
    _emit(report)
    target = args.report
    if target is None and sys.stdout is None:
        # A windowed build started without --report: the report must still land somewhere findable.
        from gemmadesk.core.paths import app_paths

        target = app_paths().log_dir / "self-test.txt"
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(report, encoding="utf-8")
    return 0 if all(c.ok for c in checks) else 1
