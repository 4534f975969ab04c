#!/usr/bin/env python3
"""The local OpenAI-compatible server against the in-process engine, same model, same run.

On the real Gemma 3 270M GGUF (from PyPI, as in the tests):

1. Streaming speed: tokens/s of a reply streamed through GemmaDesk's server to OpenAI's Python client
   (measured at the client: SSE over HTTP on 127.0.0.1, JSON per token) ÷ tokens/s of
   ``Engine.chat_stream`` in the same process (target ≥ 0.95). Runs alternate (which goes first flips
   every round) and each prompt is new, so neither side gets more KV-prefix reuse than the other.
2. Time to first token: request sent → first content piece at the client, vs ``chat_stream`` called →
   first piece in process.
3. Four clients at once (threads with their own OpenAI client, each sending its requests together):
   total throughput (all tokens ÷ wall time) against one client alone, and each client's share of the
   tokens streamed until the first client was done, its wait for a first token and when it was done.
   The server is the chat core's ``ModelHost`` (``gemmadesk.server.serve_model``): each client is a
   client of the host, served round-robin, so no client waits for another's whole queue.

    python3 benchmarks/bench_server.py [--runs 5] [--tokens 64] [--threads 1]

Writes benchmarks/results/server.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import openai  # noqa: E402

from gemmadesk.core.engine import ChatMessage, DirectLoadSettings, Engine, SamplingParams, TextChunk  # noqa: E402
from gemmadesk.server import ServerThread, create_app, serve_model  # noqa: E402

MODEL = "gemma3-270m"
PROMPT = "Write a long, detailed story about a lighthouse keeper and the sea."


def prompt(i: int) -> str:
    return f"Story {i}. {PROMPT}"


def in_process(engine: Engine, i: int, n: int) -> tuple[float, float, int]:
    """(tokens/s after the first piece, time to first piece, pieces) for one reply in this process."""
    started = time.perf_counter()
    first = last = 0.0
    count = 0
    params = SamplingParams(max_tokens=n, seed=i)
    for event in engine.chat_stream([ChatMessage("user", prompt(i))], params, threading.Event()):
        if isinstance(event, TextChunk):
            last = time.perf_counter()
            if count == 0:
                first = last
            count += 1
    return (count - 1) / max(last - first, 1e-9), first - started, count


SAME_REPLY: list[float] = []  # client-side tok/s ÷ the engine's own tok/s for that very reply


def through_server(client: openai.OpenAI, i: int, n: int) -> tuple[float, float, int]:
    started = time.perf_counter()
    first = last = 0.0
    count = 0
    engine_speed = 0.0
    stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": prompt(i)}],
                                            max_tokens=n, seed=i, stream=True)  # fmt: skip
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            last = time.perf_counter()
            if count == 0:
                first = last
            count += 1
        timings = (chunk.model_extra or {}).get("timings")
        if timings:
            engine_speed = float(timings["predicted_per_second"])
    speed = (count - 1) / max(last - first, 1e-9)
    if engine_speed:
        SAME_REPLY.append(speed / engine_speed)
    return speed, first - started, count


def concurrent(base_url: str, n: int, clients: int, offset: int, requests: int = 1
               ) -> tuple[float, list[tuple[int, float, float, int]]]:  # fmt: skip
    """(total tokens/s, per client (tokens, wait for its first token, done after, tokens streamed in the first
    half of the run)) with ``clients`` clients sending ``requests`` requests each, all at once. The first half
    ends when half of all tokens were streamed: with fair turns each client has 1/clients of them."""
    arrivals: list[list[float]] = [[] for _ in range(clients)]  # when each content piece arrived
    firsts = [0.0] * clients
    barrier = threading.Barrier(clients * requests + 1)
    started = [0.0]

    def one(k: int, j: int) -> None:
        client = openai.OpenAI(base_url=base_url, api_key="x", max_retries=0, timeout=600)
        barrier.wait()
        stream = client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": prompt(offset + k * requests + j)}], max_tokens=n,
            seed=k, stream=True, user=f"client-{k}",
        )  # fmt: skip
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                now = time.perf_counter() - started[0]
                arrivals[k].append(now)
                if not firsts[k] or now < firsts[k]:
                    firsts[k] = now

    threads = [threading.Thread(target=one, args=(k, j)) for k in range(clients) for j in range(requests)]
    for t in threads:
        t.start()
    started[0] = time.perf_counter()
    barrier.wait()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started[0]
    done = [max(a) if a else 0.0 for a in arrivals]
    every = sorted(x for a in arrivals for x in a)
    half = every[len(every) // 2 - 1] if every else 0.0
    per_client = [(len(arrivals[k]), firsts[k], done[k], sum(1 for x in arrivals[k] if x <= half))
                  for k in range(clients)]  # fmt: skip
    return sum(len(a) for a in arrivals) / wall, per_client


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads (1: steadier on a shared machine)")
    parser.add_argument("--requests", type=int, default=2, help="requests each of the four clients sends at once")
    args = parser.parse_args()
    from tests.support.assets import gemma3_gguf

    path = gemma3_gguf()
    settings = DirectLoadSettings(model_path=str(path), n_ctx=4096, n_threads=args.threads)
    engine = Engine()
    engine.load(settings)
    service = serve_model(MODEL, settings)  # the chat core's ModelHost on its own worker thread
    while service.state.status == "loading":
        time.sleep(0.05)
    speed_ratio: list[float] = []
    ttft_pairs: list[tuple[float, float]] = []
    local_speed: list[float] = []
    server_speed: list[float] = []
    with ServerThread(create_app(service)) as http:
        client = openai.OpenAI(base_url=http.base_url, api_key="x", max_retries=0, timeout=600)
        in_process(engine, 10_000, 8)  # warm both paths
        through_server(client, 10_001, 8)
        for r in range(args.runs):
            order = (0, 1) if r % 2 == 0 else (1, 0)
            got: dict[int, tuple[float, float, int]] = {}
            for side in order:
                i = 100 + 2 * r + side
                got[side] = in_process(engine, i, args.tokens) if side == 0 else through_server(client, i, args.tokens)
            local_speed.append(got[0][0])
            server_speed.append(got[1][0])
            speed_ratio.append(got[1][0] / got[0][0])
            ttft_pairs.append((got[0][1], got[1][1]))
            print(f"round {r + 1}: in-process {got[0][0]:.1f} tok/s, server {got[1][0]:.1f} tok/s, "
                  f"ratio {speed_ratio[-1]:.3f}; first token {got[0][1] * 1000:.0f} / {got[1][1] * 1000:.0f} ms",
                  flush=True)  # fmt: skip
        single, _ = concurrent(http.base_url, args.tokens, 1, 5000)
        total, per_client = concurrent(http.base_url, args.tokens, 4, 6000, args.requests)
    service.shutdown()
    engine.unload()
    write_results(args, local_speed, server_speed, speed_ratio, ttft_pairs, single, total, per_client)
    return 0


def write_results(
    args: argparse.Namespace,
    local: list[float],
    server: list[float],
    ratios: list[float],
    ttft: list[tuple[float, float]],
    single: float,
    total: float,
    per_client: list[tuple[int, float, float, int]],
) -> None:
    ratio = statistics.median(ratios)
    same = statistics.median(SAME_REPLY) if SAME_REPLY else float("nan")
    ttft_local = statistics.median(t[0] for t in ttft)
    ttft_server = statistics.median(t[1] for t in ttft)
    first_half = sum(c[3] for c in per_client)
    rows = [
        "| Measure | Value | Target | Met |",
        "|---|---|---|---|",
        f"| `Engine.chat_stream` in process (reference) | {statistics.median(local):.1f} tok/s | | |",
        f"| Streamed through the server to the `openai` client | {statistics.median(server):.1f} tok/s | | |",
        f"| Ratio server / in-process (median of alternating pairs) | {ratio:.3f} | ≥ 0.95 | "
        f"{'yes' if ratio >= 0.95 else '**no**'} |",
        f"| Same reply: speed at the client ÷ the engine's own speed for it (`timings`) | {same:.3f} | ≥ 0.95 | "
        f"{'yes' if same >= 0.95 else '**no**'} |",
        f"| Time to first token, in process | {ttft_local * 1000:.0f} ms | | |",
        f"| Time to first token through the server (request sent → first piece) | {ttft_server * 1000:.0f} ms "
        "| | |",
        f"| Added by HTTP + SSE + the worker queue (median of the pairs' differences) | "
        f"{statistics.median(t[1] - t[0] for t in ttft) * 1000:+.0f} ms | | |",
        f"| One client alone: throughput | {single:.1f} tok/s | | |",
        f"| Four clients at once: total throughput | {total:.1f} tok/s ({total / single:.2f}× one client) | | |",
    ]
    clients = [
        "| Client | Tokens | Share of the first half | Waited for its first token | Done after |",
        "|---|---|---|---|---|",
    ]
    for k, (tokens, first, finished, early) in enumerate(per_client):
        clients.append(f"| {k + 1} | {tokens} | {early / max(first_half, 1):.0%} | {first:.2f} s | "
                       f"{finished:.2f} s |")  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    text = "\n".join([
        "## Server (`bench_server.py`)",
        "",
        f"Command: `python3 benchmarks/bench_server.py --runs {args.runs} --tokens {args.tokens} "
        f"--threads {args.threads} --requests {args.requests}` —",
        f"{now:%Y-%m-%d %H:%M} UTC, {platform.platform()}, {os.cpu_count()} CPUs, a shared machine (other",
        "engineers' builds and tests ran at the same time): read the ratios, not the absolute numbers.",
        "",
        "Gemma 3 270M Q4_K_M (real, from PyPI), CPU, n_ctx 4096, replies of up to "
        f"{args.tokens} tokens. GemmaDesk's server (Starlette on uvicorn/h11, 127.0.0.1; every request through",
        "the chat core: `ModelHost` + `ChatSession.run`) streams to OpenAI's Python client; the reference is",
        "`Engine.chat_stream` on its own `Llama` in the same process.",
        "Runs alternate and each uses a new prompt; speeds exclude the first token and are measured where",
        f"the pieces arrive. Medians of {args.runs} rounds. The alternating pairs are at the mercy of the",
        "other jobs on the machine; the same-reply ratio compares the client's view of one reply with the",
        "engine's own timing of that same reply, so it shows the cost of HTTP + SSE + JSON alone.",
        "",
        *rows,
        "",
        f"Four clients, each sending {args.requests} requests at the same moment (OpenAI's `user` names the",
        "client). The model host serves the clients round-robin, one request at a time: every client gets its",
        "first token within the first round (one turn each) and they finish within one round of each other,",
        "instead of one client's whole queue going first (phase 1, first come, first served, one request per",
        "client: first tokens after 0.67 s to 25.6 s).",
        "\"Share of the first half\": each client's part of the pieces streamed until half of all pieces were",
        "streamed (fair turns: 25 % each; first come, first served: 50 % for two clients, 0 % for the others).",
        "",
        *clients,
    ])  # fmt: skip
    out = ROOT / "benchmarks" / "results" / "server.md"
    out.write_text(text + "\n", encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
