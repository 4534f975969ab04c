"""Refusals: OpenAI's error shape and status codes, from the real server on the real model."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from gemmadesk.core.engine import DirectLoadSettings, Engine
from gemmadesk.server import ServerThread, create_app, serve_model
from tests.server.conftest import API_KEY
from tests.support.serving import Served

pytestmark = pytest.mark.slow

MODEL = "gemma3-270m"
GOOD = {"model": MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}


def post(served: Served, body: Any, *, path: str = "/chat/completions", key: str | None = API_KEY,
         headers: dict[str, str] | None = None, content: bytes | None = None) -> httpx2.Response:  # fmt: skip
    h = {"Authorization": f"Bearer {key}"} if key else {}
    h.update(headers or {})
    if content is not None:
        h.setdefault("Content-Type", "application/json")
        return httpx2.post(served.base_url + path, content=content, headers=h, timeout=60)
    return httpx2.post(served.base_url + path, json=body, headers=h, timeout=60)


def error_of(response: httpx2.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"].endswith("."), body  # one sentence
    return dict(body["error"])


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**GOOD, "messages": []}, "messages"),
        ({**GOOD, "messages": "hello"}, "messages"),
        ({**GOOD, "messages": [{"role": "tool", "content": "x"}]}, "messages"),
        ({**GOOD, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, "messages"),
        ({**GOOD, "messages": [{"role": "assistant", "content": "x"}]}, "messages"),
        ({**GOOD, "messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"},
                               {"role": "user", "content": "c"}]}, "messages"),  # fmt: skip
        ({**GOOD, "max_tokens": 0}, "max_tokens"),
        ({**GOOD, "max_tokens": "10"}, "max_tokens"),
        ({**GOOD, "max_tokens": True}, "max_tokens"),
        ({**GOOD, "temperature": 5}, "temperature"),
        ({**GOOD, "temperature": "hot"}, "temperature"),
        ({**GOOD, "top_p": -0.1}, "top_p"),
        ({**GOOD, "seed": -1}, "seed"),
        ({**GOOD, "seed": 2**40}, "seed"),
        ({**GOOD, "stop": ["a"] * 20}, "stop"),
        ({**GOOD, "stop": [""]}, "stop"),
        ({**GOOD, "stop": 5}, "stop"),
        ({**GOOD, "n": 3}, "n"),
        ({**GOOD, "tools": [{"type": "function"}]}, "tools"),
        ({**GOOD, "logprobs": True}, "logprobs"),
        ({**GOOD, "stream": "yes"}, "stream"),
        ({**GOOD, "reasoning_effort": "extreme"}, "reasoning_effort"),
        ({**GOOD, "chat_template_kwargs": {"enable_thinking": "yes"}}, "chat_template_kwargs"),
        ({**GOOD, "model": ""}, "model"),
        ({**GOOD, "model": 7}, "model"),
        (["not", "an", "object"], None),
    ],
)
def test_bad_chat_requests_get_400_naming_the_field(served3: Served, body: Any, param: str | None) -> None:
    response = post(served3, body)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


@pytest.mark.parametrize(
    "body",
    [{"model": MODEL, "prompt": ""}, {"model": MODEL, "prompt": [1, 2, 3]},
     {"model": MODEL, "prompt": "x", "echo": True}, {"model": MODEL, "prompt": "x", "best_of": 3}],  # fmt: skip
)
def test_bad_completion_requests_get_400(served3: Served, body: Any) -> None:
    response = post(served3, body, path="/completions")
    assert response.status_code == 400, response.text
    error_of(response)


def test_unknown_model_is_404(client3: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client3.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "model_not_found"
    assert MODEL in info.value.message


def test_missing_or_wrong_key_is_401(served3: Served) -> None:
    for key in (None, "wrong-key"):
        response = post(served3, GOOD, key=key)
        assert response.status_code == 401
        assert error_of(response)["type"] == "authentication_error"
        assert response.headers["www-authenticate"] == "Bearer"
    assert httpx2.get(served3.base_url + "/models", timeout=10).status_code == 401
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=served3.base_url, api_key="nope", max_retries=0).models.list()


def test_context_too_long_is_400_with_the_numbers(client3: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client3.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "word " * 1500}],
                                        max_tokens=10)  # fmt: skip
    assert info.value.code == "context_length_exceeded"
    assert "1,024 tokens" in info.value.message and "prompt" in info.value.message
    # The prompt fits but not with the reply asked for: refused too, never silently trimmed.
    with pytest.raises(openai.BadRequestError) as info:
        client3.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "word " * 600}],
                                        max_tokens=900)  # fmt: skip
    assert "up to 900 for the reply" in info.value.message


def test_not_json_wrong_type_and_oversized_bodies(served3: Served) -> None:
    assert post(served3, None, content=b"{not json").status_code == 400
    assert post(served3, None, content=b"[" * 100_000 + b"]" * 100_000).status_code == 400  # nested too deeply
    r = post(served3, None, content=b'{"model": "x"}', headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    big = b'{"model": "' + b"x" * (9 * 2**20) + b'"}'
    assert post(served3, None, content=big).status_code == 413


def test_foreign_host_header_is_refused(served3: Served) -> None:
    """DNS rebinding: a web page on evil.example must not reach the loopback server."""
    r = post(served3, GOOD, headers={"Host": "evil.example:8089"})
    assert r.status_code == 400
    assert post(served3, GOOD, headers={"Host": "localhost"}).status_code == 200


def test_503_while_loading_then_ready(gemma3_gguf: Path) -> None:
    """Real loading made slow on purpose: a 270M model loads faster than a request can be sent, so the
    load waits for a signal first (a fault we cannot cause for real without a large model)."""
    release = threading.Event()

    class SlowLoad(Engine):
        def load(self, settings: Any, on_progress: Any = None) -> Any:
            release.wait(30)
            return super().load(settings, on_progress)

    service = serve_model("slow", DirectLoadSettings(model_path=str(gemma3_gguf), n_ctx=512, n_threads=2),
                          engine=SlowLoad())  # fmt: skip
    try:
        with ServerThread(create_app(service)) as http:
            body = {**GOOD, "model": "slow"}
            r = httpx2.post(http.base_url + "/chat/completions", json=body, timeout=10)
            assert r.status_code == 503 and r.json()["error"]["code"] == "model_loading"
            assert r.headers["retry-after"]
            assert httpx2.get(http.base_url.removesuffix("/v1") + "/health").status_code == 503
            release.set()
            deadline = time.monotonic() + 30
            while service.state.status == "loading" and time.monotonic() < deadline:
                time.sleep(0.02)
            assert httpx2.post(http.base_url + "/chat/completions", json=body, timeout=60).status_code == 200
    finally:
        release.set()
        service.shutdown()


def test_failed_load_is_503_with_the_engines_sentence(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"this is not a GGUF file" * 100)
    service = serve_model("broken", DirectLoadSettings(model_path=str(bad), n_ctx=512))
    try:
        deadline = time.monotonic() + 30
        while service.state.status == "loading" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert service.state.status == "failed"
        with ServerThread(create_app(service)) as http:
            r = httpx2.post(http.base_url + "/chat/completions", json={**GOOD, "model": "broken"}, timeout=10)
            assert r.status_code == 503
            assert r.json()["error"]["message"] == service.state.error
            assert "GGUF" in r.json()["error"]["message"] or "broken.gguf" in r.json()["error"]["message"]
    finally:
        service.shutdown()


def test_full_queue_is_503(gemma3_gguf: Path) -> None:
    from tests.support.serving import serve_gguf

    with serve_gguf(gemma3_gguf, "q", max_queue=1) as served:
        body = {"model": "q", "messages": [{"role": "user", "content": "Write a story."}], "max_tokens": 40}
        statuses: list[int] = []

        def send() -> None:
            statuses.append(httpx2.post(served.base_url + "/chat/completions", json=body, timeout=120).status_code)

        threads = [threading.Thread(target=send) for _ in range(4)]
        for t in threads:
            t.start()
            time.sleep(0.05)
        for t in threads:
            t.join(120)
        assert sorted(statuses)[0] == 200 and 503 in statuses, statuses
