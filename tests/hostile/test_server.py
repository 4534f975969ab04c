"""Hostile clients against GemmaDesk's server: each gets a clear refusal in bounded time, and the
server keeps serving well-behaved clients afterwards."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from gemmadesk.server import ServerOptions
from tests.support.serving import Served, serve_gguf

pytestmark = pytest.mark.slow

GOOD = {"model": "g3", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}


@pytest.fixture(scope="module")
def served(gemma3_gguf: Path) -> Iterator[Served]:
    with serve_gguf(gemma3_gguf, "g3", options=ServerOptions(body_timeout_s=1.0)) as s:
        yield s


def still_serves(served: Served) -> None:
    r = httpx2.post(served.base_url + "/chat/completions", json=GOOD, timeout=60)
    assert r.status_code == 200, r.text


def raw(served: Served, data: bytes, wait: float = 5.0) -> bytes:
    with socket.create_connection((served.http.host, served.http.port), timeout=wait) as s:
        s.sendall(data)
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
        return b"".join(chunks)


def test_slow_body_is_cut_off(served: Served) -> None:
    started = time.monotonic()
    with socket.create_connection((served.http.host, served.http.port), timeout=10) as s:
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100000\r\n\r\n{\"model\":")  # fmt: skip
        reply = s.recv(65536)
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert time.monotonic() - started < 5
    still_serves(served)


def test_garbage_and_oversized_headers_do_not_hurt(served: Served) -> None:
    assert raw(served, b"\x16\x03\x01\x02\x00garbage-not-http\r\n\r\n").startswith(b"HTTP/1.1 400")
    huge = b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n"
    reply = raw(served, huge)
    assert reply == b"" or reply.startswith(b"HTTP/1.1 4"), reply[:100]
    still_serves(served)


def test_many_messages_and_odd_text_are_bounded(served: Served) -> None:
    many = {**GOOD, "messages": [{"role": "user", "content": "x"}] * 5000}
    started = time.monotonic()
    r = httpx2.post(served.base_url + "/chat/completions", json=many, timeout=60)
    assert r.status_code == 400 and "4,096" in r.json()["error"]["message"]
    odd = {**GOOD, "messages": [{"role": "user", "content": "\x00\u202e\ud7ff<script>alert(1)</script>\uffff"}]}
    assert httpx2.post(served.base_url + "/chat/completions", json=odd, timeout=60).status_code == 200
    not_utf8 = httpx2.post(served.base_url + "/chat/completions", content=b'{"model": "\xff\xfe"}',
                           headers={"Content-Type": "application/json"}, timeout=60)  # fmt: skip
    assert not_utf8.status_code == 400
    assert time.monotonic() - started < 60
    still_serves(served)


def test_connection_flood_is_refused_then_recovers(served: Served) -> None:
    socks = []
    try:
        for _ in range(80):  # more than limit_concurrency (64), each holding a half-sent request
            s = socket.create_connection((served.http.host, served.http.port), timeout=5)
            s.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            socks.append(s)
        time.sleep(0.5)
        r = httpx2.get(served.base_url + "/models", timeout=10)
        assert r.status_code in (200, 503)
    finally:
        for s in socks:
            s.close()
    time.sleep(0.5)
    still_serves(served)
