"""Helpers for the server and remote-engine tests: GemmaDesk's server on a real model, and other
people's servers (llama-cpp-python's ``llama_cpp.server``) in child processes, all on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from gemmadesk.core.engine import DirectLoadSettings
from gemmadesk.server import HostChatService, ServerOptions, ServerThread, create_app, serve_model

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Served:
    service: HostChatService
    http: ServerThread
    model_id: str
    api_key: str | None

    @property
    def base_url(self) -> str:
        return self.http.base_url


@contextlib.contextmanager
def serve_gguf(path: Path, model_id: str, *, api_key: str | None = None, n_ctx: int = 1024,
               options: ServerOptions | None = None, max_queue: int = 16,
               mmproj: Path | None = None) -> Iterator[Served]:
    """GemmaDesk's server on ``path`` (2 threads, ``n_ctx``; ``mmproj``: its projector), loaded before it is
    handed out."""
    settings = DirectLoadSettings(model_path=str(path), n_ctx=n_ctx, n_threads=2,
                                  mmproj_path=str(mmproj) if mmproj else None)
    service = serve_model(model_id, settings, max_queue=max_queue)
    deadline = time.monotonic() + 60
    while service.state.status == "loading" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert service.state.status == "ready", service.state
    opts = options or ServerOptions(api_key=api_key)
    try:
        with ServerThread(create_app(service, opts)) as http:
            yield Served(service, http, model_id, opts.api_key)
    finally:
        service.shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes] | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited early with code {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


@contextlib.contextmanager
def llama_cpp_server(path: Path, *, api_key: str | None = None, n_ctx: int = 1024,
                     chat_format: str = "gemma") -> Iterator[str]:
    """llama-cpp-python's own OpenAI-compatible server (``python -m llama_cpp.server``) on ``path``;
    yields its base URL. The model id it answers to is the path it was given. The Gemma 3 test model
    has no chat template, so its Gemma chat format is named (its default would be Llama 2's)."""
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--host", "127.0.0.1",
           "--port", str(port), "--n_ctx", str(n_ctx), "--n_threads", "2", "--verbose", "False",
           "--chat_format", chat_format]  # fmt: skip
    if api_key:
        cmd += ["--api_key", api_key]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ})
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


URL_RE = re.compile(r"at (http://\S+/v1)")


@contextlib.contextmanager
def gemmadesk_serve_process(
    *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """``gemmadesk serve ARGS --port 0`` in a child process; yields (process, base URL) once it listens."""
    proc = subprocess.Popen([sys.executable, "-m", "gemmadesk", "serve", *args, "--port", "0"], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = URL_RE.search(line)
        assert match, line + (proc.stderr.read() if proc.poll() is not None else "")
        yield proc, match.group(1)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()


def wait_loaded(base_url: str, timeout: float = 60) -> None:
    import httpx2

    deadline = time.monotonic() + timeout
    health = base_url.removesuffix("/v1") + "/health"
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx2.HTTPError):
            if httpx2.get(health, timeout=2).status_code == 200:
                return
        time.sleep(0.05)
    raise TimeoutError("the model did not load")
