# mypy: disable-error-code="index,misc,union-attr,operator,attr-defined"
"""GemmaDesk's server through OpenAI's own Python client, on the real Gemma 3 270M (127.0.0.1 only)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx2
import openai
import pytest

from gemmadesk.core.engine import ChatMessage, DirectLoadSettings, Engine, SamplingParams
from tests.server.conftest import API_KEY
from tests.support.serving import Served

pytestmark = pytest.mark.slow

MODEL = "gemma3-270m"
THOUGHT_PATTERN = "<|channel>thought\nThe sky is blue.<channel|>Blue.\n"


def test_models_lists_the_loaded_model(client3: openai.OpenAI) -> None:
    models = client3.models.list().data
    assert [m.id for m in models] == [MODEL]
    assert models[0].model_extra["meta"]["n_ctx"] == 1024


def test_chat_reply_is_the_engines_reply(client3: openai.OpenAI, gemma3_gguf: Path) -> None:
    """Greedy decoding through the server gives exactly the in-process engine's reply and counts."""
    messages = [ChatMessage("system", "Answer briefly."), ChatMessage("user", "What is the capital of France?")]
    engine = Engine()
    engine.load(DirectLoadSettings(model_path=str(gemma3_gguf), n_ctx=1024, n_threads=2))
    try:
        done = list(engine.chat_stream(messages, SamplingParams(temperature=0.0, max_tokens=24)))[-1]
    finally:
        engine.unload()
    reply = client3.chat.completions.create(
        model=MODEL, messages=[{"role": m.role, "content": m.content} for m in messages], max_tokens=24,
        temperature=0.0,
    )  # fmt: skip
    assert reply.choices[0].message.content == done.answer
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == done.stats.prompt_tokens
    assert reply.usage.completion_tokens == done.stats.completion_tokens
    assert reply.choices[0].finish_reason == ("length" if done.stats.stop_reason == "length" else "stop")


def test_streaming_pieces_add_up_to_the_reply_with_usage(client3: openai.OpenAI) -> None:
    kwargs = {"model": MODEL, "messages": [{"role": "user", "content": "Tell me about the sea."}],
              "max_tokens": 16, "temperature": 0.0}  # fmt: skip
    whole = client3.chat.completions.create(**kwargs)  # type: ignore[call-overload]
    chunks = list(client3.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True}))  # type: ignore[call-overload]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 16
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 8  # really streamed


def test_second_turn_reuses_the_kv_prefix(client3: openai.OpenAI) -> None:
    """An API client that resends the whole conversation gets the cached prefix reused."""
    first = [{"role": "user", "content": "Name three colours of the rainbow, please."}]
    r1 = client3.chat.completions.create(model=MODEL, messages=first, max_tokens=8, temperature=0.0)  # type: ignore[arg-type]
    second = [*first, {"role": "assistant", "content": r1.choices[0].message.content},
              {"role": "user", "content": "And two more?"}]  # fmt: skip
    r2 = client3.chat.completions.create(model=MODEL, messages=second, max_tokens=8, temperature=0.0)  # type: ignore[arg-type]
    assert r2.usage is not None and r2.usage.prompt_tokens_details is not None
    assert r2.usage.prompt_tokens_details.cached_tokens >= r1.usage.prompt_tokens - 1  # type: ignore[union-attr]


def test_completion_with_stop_cuts_before_the_stop_string(client3: openai.OpenAI) -> None:
    prompt = "Once upon a time, in a small village by the sea,"
    full = client3.completions.create(model=MODEL, prompt=prompt, max_tokens=30, temperature=0.0).choices[0].text
    words = full.split()
    assert len(words) > 6, full
    stop = " " + words[4]
    cut = client3.completions.create(model=MODEL, prompt=prompt, max_tokens=30, temperature=0.0, stop=[stop])
    assert cut.choices[0].text == full[: full.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    streamed = client3.completions.create(model=MODEL, prompt=prompt, max_tokens=30, temperature=0.0, stop=stop,
                                          stream=True)  # fmt: skip
    assert "".join(c.choices[0].text for c in streamed if c.choices) == cut.choices[0].text


def test_completion_keeps_leading_whitespace_streamed_or_not(client3: openai.OpenAI) -> None:
    """Regression: the non-streamed completion used the stripped answer, losing the leading space."""
    kwargs = {"model": MODEL, "prompt": "The capital of France is", "max_tokens": 6, "temperature": 0.0}
    whole = client3.completions.create(**kwargs).choices[0].text  # type: ignore[call-overload]
    streamed = "".join(c.choices[0].text for c in client3.completions.create(**kwargs, stream=True) if c.choices)  # type: ignore[call-overload]
    assert whole == streamed and whole.startswith(" ")


def test_seed_makes_sampling_repeatable(client3: openai.OpenAI) -> None:
    kwargs = {"model": MODEL, "messages": [{"role": "user", "content": "Say something."}], "max_tokens": 12,
              "temperature": 1.0, "top_p": 0.95}  # fmt: skip
    a = client3.chat.completions.create(**kwargs, seed=7)  # type: ignore[call-overload]
    b = client3.chat.completions.create(**kwargs, seed=7)  # type: ignore[call-overload]
    assert a.choices[0].message.content == b.choices[0].message.content


def test_thoughts_come_back_as_reasoning_content(client3: openai.OpenAI) -> None:
    """The real model copies Gemma 4's thought markers from the prompt (greedy): the engine's thought
    parser splits them out, and the server sends them as reasoning_content, also when streaming."""
    messages = [{"role": "user", "content": "Repeat exactly:\n" + THOUGHT_PATTERN * 4}]
    reply = client3.chat.completions.create(model=MODEL, messages=messages, max_tokens=40, temperature=0.0)  # type: ignore[arg-type]
    reasoning = reply.choices[0].message.model_extra.get("reasoning_content")
    assert reasoning and "sky is blue" in reasoning
    assert "<|channel>" not in (reply.choices[0].message.content or "")
    chunks = list(client3.chat.completions.create(model=MODEL, messages=messages, max_tokens=40, temperature=0.0,  # type: ignore[arg-type]
                                                  stream=True))  # fmt: skip
    streamed = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks
                       if c.choices)  # fmt: skip
    assert streamed.strip() == reasoning


def test_concurrent_clients_all_get_their_replies(served3: Served) -> None:
    results: dict[int, tuple[str, int]] = {}
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            client = openai.OpenAI(base_url=served3.base_url, api_key=API_KEY, max_retries=0, timeout=120)
            stream = client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": f"Count to {i + 3}."}], max_tokens=10,
                temperature=0.0, stream=True, stream_options={"include_usage": True},
            )  # fmt: skip
            chunks = list(stream)
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            results[i] = (text, chunks[-1].usage.completion_tokens)  # type: ignore[union-attr]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors, errors
    assert sorted(results) == [0, 1, 2, 3]
    assert all(n == 10 and text for text, n in results.values())


def _wait_for_record(served: Served, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while len(served.service.records) < count and time.monotonic() < deadline:
        time.sleep(0.02)


def test_client_disconnect_stops_generation(served3: Served) -> None:
    before = len(served3.service.records)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "Write a very long story."}],
            "max_tokens": 600, "stream": True}  # fmt: skip
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx2.Client(timeout=60) as http, http.stream("POST", served3.base_url + "/chat/completions",
                                                        json=body, headers=headers) as response:  # fmt: skip
        lines = response.iter_lines()
        got = 0
        for line in lines:
            if line.startswith("data: ") and '"content"' in line:
                got += 1
                if got == 4:
                    break
    # The connection is closed here, after 4 pieces of a reply of up to 600 tokens.
    _wait_for_record(served3, before + 1)
    record = served3.service.records[-1]
    assert record.stop_reason == "stopped"
    assert record.completion_tokens < 100  # ~35 tokens/s: stopped within a few tokens, not after 600


def test_disconnect_while_waiting_drops_the_request(served3: Served) -> None:
    before = len(served3.service.records)
    headers = {"Authorization": f"Bearer {API_KEY}"}
    long_body = {"model": MODEL, "messages": [{"role": "user", "content": "Write a story."}], "max_tokens": 60}
    holder = threading.Thread(target=lambda: httpx2.post(served3.base_url + "/chat/completions", json=long_body,
                                                         headers=headers, timeout=120))  # fmt: skip
    holder.start()
    deadline = time.monotonic() + 30
    while not served3.service.state.busy_client and time.monotonic() < deadline:
        time.sleep(0.005)  # until the long request is being answered
    waiting = {**long_body, "max_tokens": 50}
    with pytest.raises(httpx2.ReadTimeout):  # gives up while its request still waits behind the first
        httpx2.post(served3.base_url + "/chat/completions", json=waiting, headers=headers, timeout=0.3)
    holder.join(120)
    _wait_for_record(served3, before + 2)
    assert [r.outcome for r in list(served3.service.records)[-2:]] == ["done", "dropped"]


def test_gemma4_thinking_switch_reaches_the_template(gemma4_tiny: Path) -> None:
    """Synthetic Gemma 4 (real template): enable_thinking / reasoning_effort put <|think|> in the prompt."""
    from tests.support.serving import serve_gguf

    with serve_gguf(gemma4_tiny, "gemma4-tiny") as served:
        client = openai.OpenAI(base_url=served.base_url, api_key="unused", max_retries=0)
        messages = [{"role": "user", "content": "Hello"}]

        def prompt_tokens(**extra: object) -> int:
            r = client.chat.completions.create(model="gemma4-tiny", messages=messages, max_tokens=4, **extra)  # type: ignore[call-overload]
            return int(r.usage.prompt_tokens)

        off = prompt_tokens()
        assert prompt_tokens(extra_body={"chat_template_kwargs": {"enable_thinking": True}}) > off
        assert prompt_tokens(reasoning_effort="high") > off
        assert prompt_tokens(reasoning_effort="none") == off
        chunks = list(client.chat.completions.create(model="gemma4-tiny", messages=messages, max_tokens=8,  # type: ignore[call-overload]
                                                     stream=True, stream_options={"include_usage": True}))
        assert chunks[-1].usage.completion_tokens >= 1
        assert served.service.state.supports_thinking
