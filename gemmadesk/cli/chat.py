"""``gemmadesk chat MODEL``: chat in the terminal, or ``-p "..."`` for one reply (``--json`` for scripts).

MODEL is a path to a .gguf file or the id of an installed model (``gemmadesk store list``). Settings
come from the fit plan for this machine (``gemmadesk.core.fit.plan_for_file``), the same as in the app,
and the sampling defaults from your settings (as a new chat in the app). The conversation is driven by
the same chat core as the app (``gemmadesk.core.chat.ChatSession``), so it is saved to the same history
in the same rows, partial replies included (``--no-history`` to skip). Ctrl+C stops a reply; in the
interactive chat, ``/new`` starts a new conversation, ``/think on|off`` switches thinking and ``/quit``
(or Ctrl+D) leaves.

``--image PATH`` / ``--audio PATH`` (repeatable) attach files to the message (``-p``) or to the first message
of the interactive chat. They need the model's projector: an installed model's (``gemmadesk-cli pull MODEL
--mmproj``), or ``--mmproj PATH`` for a .gguf given by path. Images work with every Gemma 4 size, audio with
E2B, E4B and 12B.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from gemmadesk.core.types import Attachment, ContextTrimmed, LoadSettings, ReplyDone, SamplingParams, TextChunk

if TYPE_CHECKING:
    from gemmadesk.core.chat import ChatSession, ModelHost, RequestHandle
    from gemmadesk.core.settings import Settings


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("chat", help="chat with a model in the terminal", description=__doc__)
    p.add_argument("model", help="path to a .gguf file, or an installed model id")
    p.add_argument("-p", "--prompt", help="send this one message, print the reply and exit")
    p.add_argument("--json", action="store_true", help="with -p: print reply, thoughts and stats as JSON")
    p.add_argument("--system", default=None, help="system prompt (default: the one in your settings)")
    p.add_argument("--think", action="store_true", default=None, help="let the model think first (Gemma 4)")
    p.add_argument("--ctx", type=int, default=None, help="context window in tokens (default: your settings, 8192)")
    p.add_argument("--gpu-layers", type=int, default=None, help="override the planned GPU layer count")
    p.add_argument("--max-tokens", type=int, default=None)
    p.add_argument("--temperature", type=float, default=None)
    p.add_argument("--top-p", type=float, default=None)
    p.add_argument("--top-k", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--no-history", action="store_true", help="do not save the conversation")
    p.add_argument("--image", action="append", default=[], metavar="PATH", type=Path,
                   help="attach an image (PNG, JPEG, GIF, BMP); repeat for several")
    p.add_argument("--audio", action="append", default=[], metavar="PATH", type=Path,
                   help="attach audio (WAV, MP3, FLAC; Gemma 4 E2B, E4B, 12B); repeat for several")
    p.add_argument("--mmproj", type=Path, default=None, metavar="PATH",
                   help="the vision/audio projector .gguf (default: the one installed with the model)")
    p.set_defaults(func=run)


def resolve_model(spec: str, settings: Settings | None = None) -> tuple[Path, str]:
    """(the .gguf path, the model id saved with each reply): an installed model's id, else the file name."""
    from gemmadesk.core.store import ModelStore

    store = ModelStore(settings=settings)
    path = Path(spec).expanduser()
    if path.exists() or spec.endswith(".gguf") or "/" in spec:
        try:
            resolved = path.resolve()
            installed = next((m for m in store.list() if m.path.resolve() == resolved), None)
        except (OSError, ValueError):
            installed = None
        return path, installed.id if installed is not None else path.name
    try:
        return store.get(spec).path, spec
    except KeyError:
        raise SystemExit(
            f"error: “{spec}” is neither a file nor an installed model id (see `gemmadesk store list`)"
        ) from None


def installed_projector(path: Path, settings: Settings | None = None) -> Path | None:
    """The projector (mmproj) installed with the model at ``path``, if it is an installed model that has one."""
    from gemmadesk.core.store import ModelStore

    try:
        resolved = path.resolve()
        model = next((m for m in ModelStore(settings=settings).list() if m.path.resolve() == resolved), None)
    except (OSError, ValueError):
        return None
    return model.mmproj_path if model is not None else None


def check_attachment_files(images: list[Path], audio: list[Path]) -> list[str]:
    """One sentence per file that cannot be attached (checked from its bytes before the model loads)."""
    from gemmadesk.core.media import MediaError, check_media_file

    problems = []
    for kind, paths in (("image", images), ("audio", audio)):
        for path in paths:
            try:
                info = check_media_file(path)
            except MediaError as exc:
                problems.append(str(exc))
                continue
            if info.kind != kind:
                problems.append(f"“{path.name}” is {'an image' if info.kind == 'image' else 'audio'}; "
                                f"pass it with --{info.kind}.")
    return problems


def load_settings_for(
    path: Path, n_ctx: int, gpu_layers: int | None, settings: Settings, mmproj: Path | None = None
) -> tuple[LoadSettings, str]:
    """Settings from the fit plan for this machine (as the app uses), and the plan's one-line reason."""
    from gemmadesk.core import hardware
    from gemmadesk.core.attention import attention_settings
    from gemmadesk.core.fit import FitOptions, plan_for_file

    threads = settings.n_threads or None
    kv_type, flash_attn, problems = attention_settings(settings.kv_cache_type, settings.flash_attn)
    for problem in problems:
        print(f"note: settings: {problem}", file=sys.stderr)
    try:
        options = FitOptions(n_ctx=n_ctx, kv_type=kv_type, flash_attn=flash_attn, with_mmproj=mmproj is not None)
        plan = plan_for_file(path, hardware.probe(), options, mmproj_path=mmproj)
    except Exception as exc:  # an unreadable file: the engine gives the precise message when loading
        direct = LoadSettings(model_path=str(path), n_ctx=n_ctx, n_gpu_layers=gpu_layers or 0, n_threads=threads,
                              mmproj_path=str(mmproj) if mmproj else None)
        return direct, str(exc)
    load = replace(plan.load_settings(path, mmproj), n_threads=threads)
    if gpu_layers is not None:
        load = replace(load, n_gpu_layers=gpu_layers)
    return load, plan.reason


def sampling_for(args: argparse.Namespace, settings: Settings) -> SamplingParams:
    """The command line's options over the defaults of a new chat in the app (your settings)."""

    def pick(value: Any, default: Any) -> Any:
        return default if value is None else value

    return SamplingParams(
        temperature=pick(args.temperature, settings.temperature), top_p=pick(args.top_p, settings.top_p),
        top_k=pick(args.top_k, settings.top_k), max_tokens=pick(args.max_tokens, settings.max_tokens),
        seed=args.seed, thinking=pick(args.think, settings.enable_thinking),
    )  # fmt: skip


@contextmanager
def _ctrl_c_stops(handle: RequestHandle) -> Iterator[None]:
    """While active, Ctrl+C stops this reply (the stream then ends cleanly) instead of exiting."""

    def handle_sigint(signum: int, frame: FrameType | None) -> None:
        handle.stop()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, handle_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _reply(handle: RequestHandle, echo: bool) -> ReplyDone:
    dim = sys.stdout.isatty()
    in_thought = False
    done: ReplyDone | None = None
    with _ctrl_c_stops(handle):
        for event in handle:
            if isinstance(event, ContextTrimmed):
                print(f"[{event.notice}]", file=sys.stderr)
            elif isinstance(event, TextChunk) and echo:
                if event.kind == "thought" and not in_thought:
                    sys.stdout.write("\x1b[2m[thinking] " if dim else "[thinking] ")
                elif event.kind == "answer" and in_thought:
                    sys.stdout.write("\x1b[0m\n" if dim else "\n")
                in_thought = event.kind == "thought"
                sys.stdout.write(event.text)
                sys.stdout.flush()
            elif isinstance(event, ReplyDone):
                done = event
    if echo:
        sys.stdout.write(("\x1b[0m" if dim and in_thought else "") + "\n")
    assert done is not None  # a reply always ends with ReplyDone
    return done


def run(args: argparse.Namespace) -> int:
    from gemmadesk.core.chat import ChatSession, ModelHost
    from gemmadesk.core.engine.errors import EngineError
    from gemmadesk.core.history import HistoryError, HistoryStore
    from gemmadesk.core.paths import app_paths
    from gemmadesk.core.settings import SettingsStore

    settings = SettingsStore(app_paths().settings_file).load()
    path, model_id = resolve_model(args.model, settings)
    images, audio = list(args.image or []), list(args.audio or [])
    problems = check_attachment_files(images, audio)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    mmproj = args.mmproj or installed_projector(path, settings)
    if (images or audio) and mmproj is None:
        print(f"error: “{model_id}” has no projector (mmproj) installed, so it cannot take images or audio; run "
              f"`gemmadesk-cli pull {model_id} --mmproj` for a catalog model, or pass --mmproj PATH.", file=sys.stderr)
        return 1
    if mmproj is not None and not mmproj.is_file():
        print(f"error: the projector {mmproj} does not exist; check the path.", file=sys.stderr)
        return 1
    load, reason = load_settings_for(path, args.ctx or settings.context_length, args.gpu_layers, settings, mmproj)
    host = ModelHost()
    worker = threading.Thread(target=host.run_forever, name="gemmadesk-llm", daemon=True)
    worker.start()
    try:
        try:
            for _event in host.load(model_id, load):
                pass
        except EngineError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        report = host.state.report
        assert report is not None
        for note in report.notes:
            print(f"note: {note}", file=sys.stderr)
        try:
            history = HistoryStore(":memory:" if args.no_history else None)
        except HistoryError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        try:
            session = ChatSession(host, history, client="cli")
            system = settings.system_prompt if args.system is None else args.system
            params = sampling_for(args, settings)
            try:
                attachments = tuple(session.store_attachment(p) for p in [*images, *audio])
                session.check_attachments(attachments)
            except EngineError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            if args.prompt is not None:
                return _one_shot(session, host, args, system, params, attachments)
            print(
                f"{report.model_name} ({report.architecture}, {report.n_ctx:,} tokens context, "
                f"{report.n_gpu_layers} layers on GPU, prompt format {report.chat_format}). {reason}",
                file=sys.stderr,
            )
            if attachments:
                print(f"[{len(attachments)} file(s) go with your first message]", file=sys.stderr)
            return _interactive(session, system, params, attachments)
        finally:
            history.close()
    finally:
        host.shutdown()


def _one_shot(
    session: ChatSession, host: ModelHost, args: argparse.Namespace, system: str, params: SamplingParams,
    attachments: tuple[Attachment, ...] = (),
) -> int:
    from gemmadesk.core.engine.errors import EngineError
    from gemmadesk.core.history import HistoryError

    try:
        session.new(system)
        done = _reply(session.send(args.prompt, params, attachments), echo=not args.json)
    except (EngineError, HistoryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        report = host.state.report
        out = {
            "reply": done.answer, "thoughts": done.thoughts, "stats": done.stats.to_dict(),
            "model": report.to_dict() if report else None,
            "conversation_id": None if args.no_history else session.conversation_id,
            "attachments": [{"name": a.display_name, "kind": str(a.kind), "sha256": a.sha256} for a in attachments],
        }  # fmt: skip
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0


def _interactive(
    session: ChatSession, system: str, params: SamplingParams, attachments: tuple[Attachment, ...] = ()
) -> int:
    from gemmadesk.core.engine.errors import EngineError
    from gemmadesk.core.history import HistoryError

    started = False  # a conversation is created with the first message, as in the app
    while True:
        try:
            line = input("you> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return 0
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            return 0
        if text == "/new":
            started = False
            continue
        if text.startswith("/think"):
            params = replace(params, thinking=text.endswith("on"))
            print(f"thinking {'on' if params.thinking else 'off'}", file=sys.stderr)
            continue
        try:
            if not started:
                session.new(system)
                started = True
            pending, attachments = attachments, ()
            _reply(session.send(text, params, pending), echo=True)
        except (EngineError, HistoryError) as exc:
            print(f"error: {exc}", file=sys.stderr)
