"""``gemmadesk remote``: OpenAI-compatible servers (vLLM, llama-server, Ollama, another GemmaDesk).

    gemmadesk remote add NAME URL [--api-key KEY]     save a server (servers.json, readable only by you)
    gemmadesk remote list | remove ID
    gemmadesk remote models URL|ID [--api-key KEY]     the models a server offers
    gemmadesk remote chat URL|ID -m MODEL -p TEXT      one reply, streamed (thoughts shown apart)
    gemmadesk remote vllm [SIZE] [--ctx L] [--gpu-gib G]
                                                       what Gemma 4's w4a16-ct checkpoints need on a vLLM
                                                       server, per GPU count, and the command to start it

The API key may also come from the GEMMADESK_API_KEY environment variable (kept out of the process list).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from typing import Any

from gemmadesk.cli.common import print_json
from gemmadesk.core.units import human_bytes


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("remote", help="use models on OpenAI-compatible servers (vLLM, llama-server, …)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    cmds = p.add_subparsers(dest="remote_command", metavar="ACTION")
    a = cmds.add_parser("add", help="save a server")
    a.add_argument("name")
    a.add_argument("url")
    a.add_argument("--api-key", default=None)
    a.set_defaults(func=_add)
    cmds.add_parser("list", help="the saved servers").set_defaults(func=_list)
    r = cmds.add_parser("remove", help="forget a saved server")
    r.add_argument("id")
    r.set_defaults(func=_remove)
    m = cmds.add_parser("models", help="the models a server offers")
    m.add_argument("server", help="a URL or the id of a saved server")
    m.add_argument("--api-key", default=None)
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=_models)
    c = cmds.add_parser("chat", help="one reply from a model on a server")
    c.add_argument("server", help="a URL or the id of a saved server")
    c.add_argument("-m", "--model", required=True)
    c.add_argument("-p", "--prompt", required=True)
    c.add_argument("--api-key", default=None)
    c.add_argument("--think", action="store_true", help="ask the model to think first (Gemma 4)")
    c.add_argument("--max-tokens", type=int, default=512)
    c.add_argument("--temperature", type=float, default=1.0)
    c.add_argument("--seed", type=int, default=None)
    c.add_argument("--timeout", type=float, default=120.0, help="longest silence accepted, in seconds")
    c.add_argument("--json", action="store_true", help="print reply, thoughts and stats as JSON")
    c.set_defaults(func=_chat)
    v = cmds.add_parser("vllm", help="GPU memory and the vllm serve command for Gemma 4 w4a16-ct")
    v.add_argument("size", nargs="?", help="E2B, E4B, 12B or 31B (default: all)")
    v.add_argument("-c", "--ctx", type=int, default=32768, help="--max-model-len (default 32768)")
    v.add_argument("--gpu-gib", type=float, default=None, help="memory of one of your server's GPUs")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=_vllm)
    def usage(args: argparse.Namespace) -> int:
        p.print_help()
        return 2

    p.set_defaults(func=usage)


def _fail(message: object) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _target(args: argparse.Namespace) -> tuple[str, str | None]:
    """(base URL, API key) of a URL or a saved server's id."""
    from gemmadesk.core.remote import ServerStore

    key = args.api_key or os.environ.get("GEMMADESK_API_KEY") or None
    if "/" not in args.server and ":" not in args.server:
        try:
            entry = ServerStore().get(args.server)
            return entry.base_url, key or entry.api_key
        except KeyError:
            pass
    return args.server, key


def _add(args: argparse.Namespace) -> int:
    from gemmadesk.core.remote import RemoteError, ServerStore

    store = ServerStore()
    try:
        entry = store.add(args.name, args.url, args.api_key or os.environ.get("GEMMADESK_API_KEY"))
    except RemoteError as exc:
        return _fail(exc)
    print(f"saved {entry.name} ({entry.base_url}) as {entry.id}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from gemmadesk.core.remote import ServerStore

    store = ServerStore()
    for problem in store.problems:
        print(f"note: {problem}", file=sys.stderr)
    for e in store.list():
        print(f"{e.id}  {e.name:24} {e.base_url}  {'(key saved)' if e.api_key else ''}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    from gemmadesk.core.remote import RemoteError, ServerStore

    try:
        ServerStore().remove(args.id)
    except KeyError:
        return _fail(f"no saved server has the id “{args.id}” (see `gemmadesk remote list`).")
    except RemoteError as exc:
        return _fail(exc)
    return 0


def _models(args: argparse.Namespace) -> int:
    from gemmadesk.core.remote import RemoteBackend, RemoteError

    url, key = _target(args)
    try:
        with RemoteBackend(url, api_key=key) as backend:
            models = backend.list_models()
    except RemoteError as exc:
        return _fail(exc)
    if args.json:
        print_json([{"id": m.id, "owned_by": m.owned_by, "n_ctx": m.n_ctx} for m in models])
    else:
        for m in models:
            print(m.id + (f"  ({m.n_ctx:,} tokens)" if m.n_ctx else ""))
    return 0


def _chat(args: argparse.Namespace) -> int:
    from gemmadesk.core.engine import ChatMessage, ReplyDone, SamplingParams, TextChunk
    from gemmadesk.core.remote import RemoteBackend, RemoteError, RemoteTimeouts

    url, key = _target(args)
    params = SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature, seed=args.seed,
                            thinking=args.think)  # fmt: skip
    stop = threading.Event()
    done: ReplyDone | None = None
    in_thought = False
    try:
        with RemoteBackend(url, args.model, key, timeouts=RemoteTimeouts(read=args.timeout)) as backend:
            try:
                for event in backend.chat_stream([ChatMessage("user", args.prompt)], params, stop):
                    if isinstance(event, ReplyDone):
                        done = event
                    elif isinstance(event, TextChunk) and not args.json:
                        if event.kind == "thought" and not in_thought:
                            sys.stdout.write("[thinking] ")
                        elif event.kind == "answer" and in_thought:
                            sys.stdout.write("\n")
                        in_thought = event.kind == "thought"
                        sys.stdout.write(event.text)
                        sys.stdout.flush()
            except KeyboardInterrupt:
                stop.set()
    except RemoteError as exc:
        if not args.json:
            sys.stdout.write("\n")
        return _fail(exc)
    assert done is not None or stop.is_set()
    if args.json and done is not None:
        out: dict[str, Any] = {"reply": done.answer, "thoughts": done.thoughts, "stats": done.stats.to_dict(),
                               "model": args.model, "server": backend.base_url}  # fmt: skip
        json.dump(out, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")
    return 0


def _vllm(args: argparse.Namespace) -> int:
    from gemmadesk.core.catalog_refresh import current_catalog
    from gemmadesk.core.vllm_plan import is_vllm_entry, plan_vllm

    catalog = current_catalog()
    entries = [e for e in catalog.entries if is_vllm_entry(e)]
    if args.size:
        wanted = args.size.upper().replace("GEMMA-4-", "")
        entries = [e for e in entries if e.size.upper() == wanted]
        if not entries:
            return _fail(f"Google publishes w4a16-ct checkpoints for E2B, E4B, 12B and 31B, not “{args.size}”.")
    gpu_bytes = int(args.gpu_gib * 2**30) if args.gpu_gib else None
    rows = []
    for entry in entries:
        try:
            plan = plan_vllm(entry, catalog, args.ctx)
        except ValueError as exc:
            return _fail(exc)
        best = plan.smallest_tp(gpu_bytes) if gpu_bytes else None
        rows.append((entry, plan, best))
    if args.json:
        print_json([{
            "id": e.id, "repo_id": e.repo_id, "max_model_len": p.max_model_len, "checkpoint_bytes": p.checkpoint_bytes,
            "checkpoint_estimated": p.checkpoint_estimated,
            "per_tp": [{"tensor_parallel": o.tensor_parallel, "gpu_memory_needed": o.gpu_memory_needed,
                        "weights_per_gpu": o.weights_per_gpu, "kv_per_gpu": o.kv_per_gpu,
                        "command": p.command(o.tensor_parallel)} for o in p.options],
            "recommended_tp": best.tensor_parallel if best else None,
        } for e, p, best in rows])  # fmt: skip
        return 0
    for entry, plan, best in rows:
        approx = "≈" if plan.checkpoint_estimated else ""
        size = approx + human_bytes(plan.checkpoint_bytes)
        print(f"Gemma 4 {entry.size} w4a16-ct ({entry.repo_id}, checkpoint {size}),"
              f" --max-model-len {plan.max_model_len:,}:")  # fmt: skip
        for o in plan.options:
            mark = "★" if best is not None and o.tensor_parallel == best.tensor_parallel else " "
            print(f"  {mark} {o.tensor_parallel} GPU{'s' if o.tensor_parallel > 1 else ' '}: needs "
                  f"{human_bytes(o.gpu_memory_needed):>9} per GPU (weights {human_bytes(o.weights_per_gpu)}, "
                  f"KV {human_bytes(o.kv_per_gpu)})")  # fmt: skip
        if gpu_bytes and best is None:
            print(f"    Even 8 GPUs of {args.gpu_gib:g} GiB are too small at this context; lower --ctx.")
        chosen = best or plan.options[0]
        print(f"    {plan.command(chosen.tensor_parallel)}")
        print("    (add --api-key KEY on a shared network; then `gemmadesk remote add NAME http://HOST:8000/v1`)")
    return 0
