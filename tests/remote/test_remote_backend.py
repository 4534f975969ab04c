"""RemoteBackend against servers written by others (llama-cpp-python's), against GemmaDesk's own server,
and against a fault-injecting server for what real servers cannot be made to do on demand."""

from __future__ import annotations

import http.server
import json
import os
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gemmadesk.core.engine import ChatMessage, ReplyDone, SamplingParams, TextChunk
from gemmadesk.core.remote import (
    RemoteAuthError,
    RemoteBackend,
    RemoteBusyError,
    RemoteConfigError,
    RemoteContextError,
    RemoteDisconnectedError,
    RemoteModelError,
    RemoteProtocolError,
    RemoteServerError,
    RemoteTimeouts,
    RemoteTLSError,
    RemoteUnreachableError,
    normalize_base_url,
)
from gemmadesk.core.types import StreamEvent
from gemmadesk.server import ServerThread
from tests.support.faultserver import fault_app
from tests.support.serving import Served, free_port, gemmadesk_serve_process, llama_cpp_server, serve_gguf, wait_loaded

pytestmark = pytest.mark.slow

HELLO = [ChatMessage("user", "Tell me a long story about the sea.")]
THOUGHT_PATTERN = "<|channel>thought\nThe sky is blue.<channel|>Blue.\n"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def drain(events: Iterator[StreamEvent]) -> tuple[list[TextChunk], ReplyDone]:
    chunks: list[TextChunk] = []
    done: list[ReplyDone] = []
    for event in events:
        if isinstance(event, TextChunk):
            chunks.append(event)
        elif isinstance(event, ReplyDone):
            done.append(event)
    assert len(done) == 1, "a stream ends with exactly one ReplyDone"
    return chunks, done[0]


# ------------------------------------------------------------------ llama-cpp-python's own server


@pytest.fixture(scope="module")
def llama_server(gemma3_gguf: Path) -> Iterator[str]:
    with llama_cpp_server(gemma3_gguf, api_key="lcp-key") as url:
        yield url


def test_llama_cpp_server_models_chat_and_stats(llama_server: str, gemma3_gguf: Path) -> None:
    with RemoteBackend(llama_server, api_key="lcp-key") as probe:
        models = probe.list_models()
    assert [m.id for m in models] == [str(gemma3_gguf)]
    with RemoteBackend(llama_server, model=models[0].id, api_key="lcp-key") as backend:
        chunks, done = drain(backend.chat_stream(HELLO, SamplingParams(max_tokens=16, temperature=0.0)))
    assert len(chunks) >= 4 and all(c.kind == "answer" for c in chunks)
    assert done.answer == "".join(c.text for c in chunks).strip()
    assert done.stats.completion_tokens >= 4 and done.stats.stop_reason in ("length", "eos")
    assert 0 < done.stats.time_to_first_token_s < done.stats.total_s
    assert done.stats.generated_tokens_per_s > 0


def test_llama_cpp_server_wrong_key_is_one_sentence(llama_server: str) -> None:
    with pytest.raises(RemoteAuthError) as info, RemoteBackend(llama_server, api_key="wrong") as backend:
        backend.list_models()
    assert "refused the API key" in str(info.value) and "127.0.0.1" in str(info.value)


def test_llama_cpp_server_stop_ends_the_reply_promptly(llama_server: str, gemma3_gguf: Path) -> None:
    stop = threading.Event()
    started = time.monotonic()
    with RemoteBackend(llama_server, model=str(gemma3_gguf), api_key="lcp-key") as backend:
        events = []
        for event in backend.chat_stream(HELLO, SamplingParams(max_tokens=400), stop):
            events.append(event)
            if len(events) == 3:
                stop.set()
    done = events[-1]
    assert isinstance(done, ReplyDone) and done.stats.stop_reason == "stopped"
    assert len(events) <= 6 and time.monotonic() - started < 10


# ------------------------------------------------------------------ GemmaDesk's own server


@pytest.fixture(scope="module")
def ours(gemma3_gguf: Path) -> Iterator[Served]:
    with serve_gguf(gemma3_gguf, "gemma3-270m", api_key="our-key") as served:
        yield served


def test_gemmadesk_server_models_chat_and_usage(ours: Served) -> None:
    import openai

    with RemoteBackend(ours.base_url, api_key="our-key") as probe:
        models = probe.list_models()
    assert [(m.id, m.n_ctx) for m in models] == [("gemma3-270m", 1024)]
    with RemoteBackend(ours.base_url, model="gemma3-270m", api_key="our-key", n_ctx=models[0].n_ctx) as backend:
        chunks, done = drain(backend.chat_stream(HELLO, SamplingParams(max_tokens=12, temperature=0.0)))
    reference = openai.OpenAI(base_url=ours.base_url, api_key="our-key", max_retries=0).chat.completions.create(
        model="gemma3-270m", messages=[{"role": "user", "content": HELLO[0].content}], max_tokens=12, temperature=0.0)
    assert done.answer == reference.choices[0].message.content
    assert done.stats.completion_tokens == 12 and done.stats.stop_reason == "length"
    assert done.stats.prompt_tokens == reference.usage.prompt_tokens  # type: ignore[union-attr]


def test_gemmadesk_server_thoughts_become_thought_chunks(ours: Served) -> None:
    with RemoteBackend(ours.base_url, model="gemma3-270m", api_key="our-key") as backend:
        messages = [ChatMessage("user", "Repeat exactly:\n" + THOUGHT_PATTERN * 4)]
        chunks, done = drain(backend.chat_stream(messages, SamplingParams(max_tokens=40, temperature=0.0)))
    assert any(c.kind == "thought" for c in chunks)
    assert "sky is blue" in done.thoughts and "<|channel>" not in done.answer


def test_gemmadesk_server_refusals_map_to_clear_errors(ours: Served) -> None:
    with pytest.raises(RemoteAuthError, match="needs an API key"), RemoteBackend(ours.base_url) as b:
        b.list_models()
    with RemoteBackend(ours.base_url, model="gpt-4o", api_key="our-key") as backend, \
            pytest.raises(RemoteModelError, match="no model “gpt-4o”"):  # fmt: skip
        drain(backend.chat_stream(HELLO, SamplingParams(max_tokens=4)))
    with RemoteBackend(ours.base_url, model="gemma3-270m", api_key="our-key") as backend, \
            pytest.raises(RemoteContextError) as info:  # fmt: skip
        drain(backend.chat_stream([ChatMessage("user", "word " * 1500)], SamplingParams(max_tokens=10)))
    assert "1,024 tokens" in str(info.value)


def test_server_killed_mid_stream(gemma3_gguf: Path) -> None:
    """A real server process killed (SIGKILL) in the middle of a reply."""
    with gemmadesk_serve_process(str(gemma3_gguf), "--ctx", "1024", "--name", "g3") as (proc, url):
        wait_loaded(url)
        def read_and_kill() -> None:
            n = 0
            for event in backend.chat_stream(HELLO, SamplingParams(max_tokens=500)):
                n += isinstance(event, TextChunk)
                if n == 3:
                    proc.kill()

        with RemoteBackend(url, model="g3") as backend, pytest.raises(RemoteDisconnectedError) as info:
            read_and_kill()
    assert "broke off" in str(info.value) or "ended in the middle" in str(info.value)


# ------------------------------------------------------------------ faults real servers do not produce on demand


@pytest.fixture(scope="module")
def faults() -> Iterator[str]:
    with ServerThread(fault_app()) as http:
        yield http.base_url.removesuffix("/v1")


def backend_for(faults: str, fault: str, read: float = 5.0) -> RemoteBackend:
    return RemoteBackend(f"{faults}/{fault}/v1", model="m", timeouts=RemoteTimeouts(connect=2, read=read, write=2))


@pytest.mark.parametrize(
    ("fault", "error", "words"),
    [
        ("garbage", RemoteProtocolError, "cannot read"),
        ("huge", RemoteProtocolError, "larger than 1 MiB"),
        ("html", RemoteProtocolError, "did not stream"),
        ("busy", RemoteBusyError, "busy or still loading"),
        ("error-event", RemoteServerError, "CUDA out of memory"),
        ("no-done", RemoteDisconnectedError, "ended in the middle"),
    ],
)
def test_fault_becomes_one_clear_error(faults: str, fault: str, error: type[Exception], words: str) -> None:
    with backend_for(faults, fault) as backend, pytest.raises(error) as info:
        drain(backend.chat_stream(HELLO, SamplingParams(max_tokens=50)))
    message = str(info.value)
    assert words in message and "\x1b" not in message and "\n" not in message


def test_stalled_server_times_out(faults: str) -> None:
    started = time.monotonic()
    with backend_for(faults, "stall", read=1.0) as backend, pytest.raises(Exception) as info:
        drain(backend.chat_stream(HELLO, SamplingParams(max_tokens=50)))
    assert type(info.value).__name__ == "RemoteTimeoutError"
    assert "sent nothing for 1 s in the middle of the reply" in str(info.value)
    assert time.monotonic() - started < 5


def test_stop_works_while_the_server_is_silent(faults: str) -> None:
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    with backend_for(faults, "stall", read=30.0) as backend:
        chunks, done = drain(backend.chat_stream(HELLO, SamplingParams(max_tokens=50), stop))
    assert done.stats.stop_reason == "stopped" and done.answer == "Hello"
    assert time.monotonic() - started < 2.0


def test_slow_but_steady_server_is_fine(faults: str) -> None:
    with backend_for(faults, "trickle", read=2.0) as backend:
        chunks, done = drain(backend.chat_stream(HELLO, SamplingParams(max_tokens=50)))
    assert done.answer == "Hello there, friend." and done.stats.stop_reason == "eos"
    assert 0.8 < done.stats.total_s < 5
    assert 2.0 < done.stats.generated_tokens_per_s < 6.0  # 4 pieces over ~1.2 s


def test_server_that_ignores_max_tokens_is_cut_off(faults: str) -> None:
    with backend_for(faults, "endless") as backend:
        chunks, done = drain(backend.chat_stream(HELLO, SamplingParams(max_tokens=20)))
    assert done.stats.stop_reason == "length" and len(chunks) <= 20 + 64 + 1


def test_unreachable_server(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    with RemoteBackend(f"http://127.0.0.1:{port}/v1") as backend, pytest.raises(RemoteUnreachableError) as info:
        backend.list_models()
    assert f"Cannot connect to 127.0.0.1:{port}" in str(info.value)


# ------------------------------------------------------------------ TLS: verification is always on


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)  # fmt: skip

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"object": "list", "data": [{"id": "tls-model", "object": "model"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/v1", cert
    finally:
        server.shutdown()
        server.server_close()


def test_untrusted_certificate_is_refused(https_server: tuple[str, Path]) -> None:
    url, cert = https_server
    with RemoteBackend(url) as backend, pytest.raises(RemoteTLSError) as info:
        backend.list_models()
    assert "certificate could not be verified" in str(info.value)
    with RemoteBackend(url, ca_file=cert) as backend:  # a CA the user chose: still verified, now trusted
        assert [m.id for m in backend.list_models()] == ["tls-model"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("http://gpu-box:8000", "http://gpu-box:8000/v1"),
        ("gpu-box:8000/", "http://gpu-box:8000/v1"),
        ("https://API.Example.com/openai/v1/", "https://api.example.com/openai/v1"),
        ("http://[::1]:8080", "http://[::1]:8080/v1"),
    ],
)
def test_base_urls_are_normalized(given: str, expected: str) -> None:
    assert normalize_base_url(given) == expected


@pytest.mark.parametrize("bad", ["", "ftp://x/v1", "http://user:pw@host/v1", "http://host/v1?x=1", "http://:80", "http://h:99999"])
def test_bad_base_urls_are_refused(bad: str) -> None:
    with pytest.raises(RemoteConfigError):
        normalize_base_url(bad)


def test_environment_proxy_does_not_capture_loopback() -> None:
    assert "127.0.0.1" in os.environ["NO_PROXY"]
