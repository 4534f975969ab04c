"""``gemmadesk chat MODEL``: chat in the terminal, or ``-p "..."`` for one reply (``--json`` for scripts).

MODEL is a path to a .gguf file or the id of an installed model (``gemmadesk store list``). Settings
come from the fit plan for this machine (``gemmadesk.core.fit.plan_for_file``), the same as in the app,
and conversations are saved to the same history (``--no-history`` to skip). Ctrl+C stops a reply;
in the interactive chat, ``/new`` starts a new conversation, ``/think on|off`` switches thinking and
``/quit`` (or Ctrl+D) leaves.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from gemmadesk.core.engine import (
    ChatMessage,
    ContextTrimmed,
    DirectLoadSettings,
    Engine,
    EngineError,
    LoadSettingsLike,
    ReplyDone,
    SamplingParams,
    TextChunk,
)
from gemmadesk.core.history import HistoryStore


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("chat", help="chat with a model in the terminal", description=__doc__)
    p.add_argument("model", help="path to a .gguf file, or an installed model id")
    p.add_argument("-p", "--prompt", help="send this one message, print the reply and exit")
    p.add_argument("--json", action="store_true", help="with -p: print reply, thoughts and stats as JSON")
    p.add_argument("--system", default="", help="system prompt")
    p.add_argument("--think", action="store_true", help="let the model think first (Gemma 4)")
    p.add_argument("--ctx", type=int, default=8192, help="context window in tokens (default 8192)")
    p.add_argument("--gpu-layers", type=int, default=None, help="override the planned GPU layer count")
    p.add_argument("--max-tokens", type=int, default=2048)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--top-k", type=int, default=64)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--no-history", action="store_true", help="do not save the conversation")
    p.set_defaults(func=run)


def resolve_model(spec: str) -> Path:
    """A .gguf path as given, or the file of an installed model id."""
    path = Path(spec).expanduser()
    if path.exists() or spec.endswith(".gguf") or "/" in spec:
        return path
    from gemmadesk.core.store import ModelStore

    try:
        return ModelStore().get(spec).path
    except KeyError:
        raise SystemExit(
            f"error: “{spec}” is neither a file nor an installed model id (see `gemmadesk store list`)"
        ) from None


def load_settings_for(path: Path, n_ctx: int, gpu_layers: int | None) -> tuple[LoadSettingsLike, str]:
    """Settings from the fit plan for this machine (as the app uses), and the plan's one-line reason."""
    from dataclasses import replace

    from gemmadesk.core import hardware
    from gemmadesk.core.fit import FitOptions, plan_for_file

    try:
        plan = plan_for_file(path, hardware.probe(), FitOptions(n_ctx=n_ctx))
    except Exception as exc:  # an unreadable file: the engine gives the precise message when loading
        return DirectLoadSettings(model_path=str(path), n_ctx=n_ctx, n_gpu_layers=gpu_layers or 0), str(exc)
    settings = plan.load_settings(path)
    if gpu_layers is not None:
        settings = replace(settings, n_gpu_layers=gpu_layers)
    return settings, plan.reason


class _StopOnInterrupt:
    """While active, Ctrl+C stops the current reply (the stream then ends cleanly) instead of exiting."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous: Any = None

    def __enter__(self) -> threading.Event:
        self.event.clear()
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self.event

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.event.set()

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)


def _reply(engine: Engine, messages: list[ChatMessage], params: SamplingParams, echo: bool) -> ReplyDone:
    dim = sys.stdout.isatty()
    in_thought = False
    done: ReplyDone | None = None
    with _StopOnInterrupt() as stop:
        for event in engine.chat_stream(messages, params, stop):
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
    assert done is not None  # chat_stream always ends with ReplyDone
    return done


def run(args: argparse.Namespace) -> int:
    path = resolve_model(args.model)
    settings, reason = load_settings_for(path, args.ctx, args.gpu_layers)
    engine = Engine()
    try:
        report = engine.load(settings)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    params = SamplingParams(
        temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, max_tokens=args.max_tokens,
        seed=args.seed, thinking=args.think,
    )  # fmt: skip
    store = None if args.no_history else HistoryStore()
    try:
        if args.prompt is not None:
            return _one_shot(engine, store, args, params)
        print(
            f"{report.model_name} ({report.architecture}, {report.n_ctx:,} tokens context, "
            f"{report.n_gpu_layers} layers on GPU, prompt format {report.chat_format}). {reason}",
            file=sys.stderr,
        )
        return _interactive(engine, store, args, params)
    finally:
        engine.unload()
        if store is not None:
            store.close()


def _one_shot(engine: Engine, store: HistoryStore | None, args: argparse.Namespace, params: SamplingParams) -> int:
    messages = [ChatMessage("system", args.system)] if args.system.strip() else []
    messages.append(ChatMessage("user", args.prompt))
    try:
        done = _reply(engine, messages, params, echo=not args.json)
    except EngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    conv_id = None
    if store is not None:
        conv_id = _save_turn(store, None, args.system, engine, args.prompt, done, params)
    if args.json:
        report = engine.report
        out = {
            "reply": done.answer, "thoughts": done.thoughts, "stats": done.stats.to_dict(),
            "model": report.to_dict() if report else None, "conversation_id": conv_id,
        }  # fmt: skip
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0


def _interactive(engine: Engine, store: HistoryStore | None, args: argparse.Namespace, params: SamplingParams) -> int:
    from dataclasses import replace

    history: list[ChatMessage] = []
    conv_id: int | None = None
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
            history, conv_id = [], None
            continue
        if text.startswith("/think"):
            params = replace(params, thinking=text.endswith("on"))
            print(f"thinking {'on' if params.thinking else 'off'}", file=sys.stderr)
            continue
        system = [ChatMessage("system", args.system)] if args.system.strip() else []
        try:
            done = _reply(engine, [*system, *history, ChatMessage("user", text)], params, echo=True)
        except EngineError as exc:
            print(f"error: {exc}", file=sys.stderr)
            continue
        history += [ChatMessage("user", text), ChatMessage("assistant", done.answer)]
        if store is not None:
            conv_id = _save_turn(store, conv_id, args.system, engine, text, done, params)


def _save_turn(
    store: HistoryStore,
    conv_id: int | None,
    system: str,
    engine: Engine,
    text: str,
    done: ReplyDone,
    params: SamplingParams,
) -> int:
    report = engine.report
    model = report.model_name if report else None
    if conv_id is None:
        conv_id = store.create_conversation(system_prompt=system, model=model).id
    store.add_message(conv_id, "user", text)
    stopped = done.stats.stop_reason == "stopped"
    store.add_message(
        conv_id, "assistant", done.answer, thoughts=done.thoughts, model=model, settings=params.to_dict(),
        stats=done.stats.to_dict(), status="partial" if stopped else "complete",
    )  # fmt: skip
    return conv_id
