"""API clients take turns on the one model (the chat core's round-robin), through the real HTTP server."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx2
import pytest

from tests.server.conftest import API_KEY
from tests.support.serving import Served

pytestmark = pytest.mark.slow

MODEL = "gemma3-270m"
COUNTING = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"  # greedy: the model keeps counting (no early end)


def _post(served: Served, body: dict[str, Any], path: str = "/chat/completions") -> int:
    response = httpx2.post(served.base_url + path, json=body, headers={"Authorization": f"Bearer {API_KEY}"},
                           timeout=180)  # fmt: skip
    return response.status_code


def _wait(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.005)


def test_a_client_with_many_requests_does_not_starve_another(served3: Served) -> None:
    """Client A queues three requests, then client B one: B is answered second, not last (regression: the
    phase-1 server answered first come, first served). Clients are told apart by OpenAI's ``user``."""
    service = served3.service
    before = len(service.records)
    statuses: list[int] = []
    holder = {"model": MODEL, "prompt": COUNTING, "max_tokens": 120, "temperature": 0.0, "user": "holder"}
    threads = [threading.Thread(target=lambda: statuses.append(_post(served3, holder, "/completions")))]
    threads[0].start()
    _wait(lambda: service.state.busy_client == "api:user:holder", "the first request never started")
    for client in ("a", "a", "a", "b"):
        depth = service.state.queue_depth
        body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "user": client}
        thread = threading.Thread(target=lambda b=body: statuses.append(_post(served3, b)))
        thread.start()
        threads.append(thread)
        _wait(lambda d=depth: service.state.queue_depth > d, "a request did not queue")
    assert service.state.busy_client == "api:user:holder", "the queue filled while the first request ran"
    for thread in threads:
        thread.join(180)
    assert statuses == [200] * 5
    _wait(lambda: len(service.records) >= before + 5, "records")
    order = [r.client.removeprefix("api:user:") for r in list(service.records)[before:]]
    assert order == ["holder", "a", "b", "a", "a"]


def test_each_connection_is_its_own_client(served3: Served) -> None:
    """Without ``user``, each connection is a client of its own (``api:127.0.0.1:<port>``)."""
    service = served3.service
    before = len(service.records)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx2.Client(timeout=60, headers=headers) as one, httpx2.Client(timeout=60, headers=headers) as two:
        for http in (one, two, one):
            assert http.post(served3.base_url + "/chat/completions", json=body).status_code == 200
    _wait(lambda: len(service.records) >= before + 3, "records")
    clients = [r.client for r in list(service.records)[before:]]
    assert all(c.startswith("api:127.0.0.1:") for c in clients)
    assert clients[0] == clients[2] != clients[1]  # keep-alive: the same connection, the same client


def test_bad_user_field_is_400(served3: Served) -> None:
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2, "user": "a b\n"}
    assert _post(served3, body) == 400
