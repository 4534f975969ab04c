"""``gemmadesk serve [MODEL]``: serve a model to other programs through an OpenAI-compatible API.

MODEL (or ``--model``) is a path to a .gguf file or the id of an installed model, loaded with the
settings the fit plan gives this machine (as ``chat`` does). The server answers at once (503 "still
loading" until the model is ready) on http://127.0.0.1:PORT/v1 with ``GET /v1/models``,
``POST /v1/chat/completions`` and ``POST /v1/completions``; point any OpenAI client at that URL
(model name: the id printed at start). Thinking: ``"chat_template_kwargs": {"enable_thinking": true}``
or ``"reasoning_effort"``; thoughts come back as ``reasoning_content``.

Only this machine can connect unless you pass ``--host`` with another address, ``--allow-network``
and an API key (``--api-key`` or the GEMMADESK_API_KEY environment variable, which keeps the key out
of the process list). Ctrl+C stops the server.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from gemmadesk.cli.chat import load_settings_for, resolve_model


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("serve", help="serve a model through an OpenAI-compatible API", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("model_arg", nargs="?", metavar="MODEL", help="path to a .gguf file, or an installed model id")
    p.add_argument("-m", "--model", help="the same as MODEL")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("-p", "--port", type=int, default=8089, help="port (default 8089; 0 picks a free one)")
    p.add_argument("--api-key", default=None, help="require this key (Authorization: Bearer KEY)")
    p.add_argument("--allow-network", action="store_true", help="allow a --host other machines can reach")
    p.add_argument("--ctx", type=int, default=8192, help="context window in tokens (default 8192)")
    p.add_argument("--gpu-layers", type=int, default=None, help="override the planned GPU layer count")
    p.add_argument("--name", default=None, help="the model id clients use (default: the installed id or file name)")
    p.set_defaults(func=run)


def model_id_for(spec: str, path: Path) -> str:
    """The id clients send: the installed model's id, or the file name without ``.gguf``."""
    if not path.exists() or spec != str(path):
        return spec
    return path.name.removesuffix(".gguf")


def run(args: argparse.Namespace) -> int:
    from gemmadesk.server import ServerOptions, check_bind, create_app, serve_model
    from gemmadesk.server.runner import BindRefused, bind_socket, is_loopback, uvicorn_server

    spec = args.model or args.model_arg
    if not spec:
        print("error: name the model to serve: gemmadesk serve MODEL (a .gguf file or an installed id).",
              file=sys.stderr)  # fmt: skip
        return 2
    api_key = args.api_key or os.environ.get("GEMMADESK_API_KEY") or None
    if not 0 <= args.port <= 65535:
        print(f"error: --port must be between 0 and 65535, not {args.port}.", file=sys.stderr)
        return 2
    try:
        check_bind(args.host, api_key, args.allow_network)
    except BindRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from gemmadesk.core.paths import app_paths
    from gemmadesk.core.settings import SettingsStore

    user_settings = SettingsStore(app_paths().settings_file).load()  # read once, as the app does
    path, _installed_id = resolve_model(spec, user_settings)
    if not path.is_file():
        print(f"error: “{path}” does not exist. Give a .gguf file or an installed model id "
              "(see `gemmadesk store list`).", file=sys.stderr)  # fmt: skip
        return 1
    model_id = args.name or model_id_for(spec, path)
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port} ({exc.strerror or exc}). "
              "Choose another --port, or stop the program using it.", file=sys.stderr)  # fmt: skip
        return 1
    settings, _reason = load_settings_for(path, args.ctx, args.gpu_layers, user_settings)

    def loaded(state: Any) -> None:
        if state.status == "ready":
            print(f"{model_id} is loaded ({state.n_ctx:,} tokens of context); serving requests.", file=sys.stderr)
        else:
            print(f"error: {state.error}", file=sys.stderr)

    service = serve_model(model_id, settings, on_loaded=loaded)  # a model host of its own, on a thread
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in str(host) else host
    key_note = "key required" if api_key else "no key"
    print(f"GemmaDesk serves “{model_id}” at http://{shown}:{port}/v1 ({key_note}; Ctrl+C stops). Loading the model…",
          file=sys.stderr)  # fmt: skip
    server = uvicorn_server(create_app(service, ServerOptions(api_key=api_key, loopback_only=is_loopback(args.host))))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn shuts down gracefully, then re-raises Ctrl+C: the normal way to stop
        pass
    finally:
        service.shutdown()
        sock.close()
    print("GemmaDesk's server stopped.", file=sys.stderr)
    return 0
