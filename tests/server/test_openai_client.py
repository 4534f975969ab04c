"""GemmaDesk's server through OpenAI's own Python client, on the real Gemma 3 270M (127.0.0.1 only)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from gemmadesk.core.engine import ChatMessage, DirectLoadSettings, Engine, ReplyDone, SamplingParams
from tests.server.conftest import API_KEY
from tests.support.serving import Served

pytestmark = pytest.mark.slow

MODEL = "gemma3-270m"
THOUGHT_PATTERN = "<|channel>thought\nThe sky is blue.<channel|>Blue.\n"


def user(text: str) -> ChatCompletionMessageParam:
    return {"role": "user", "content": text}


def as_params(messages: Iterable[ChatMessage]) -> list[ChatCompletionMessageParam]:
    out: list[ChatCompletionMessageParam] = []
    for m in messages:
        if m.role == "system":
            out.append({"role": "system", "content": m.content})
        elif m.role == "assistant":
            out.append({"role": "assistant", "content": m.content})
        else:
            out.append(user(m.content))
    return out


class _OpenAIObject(Protocol):  # OpenAI's reply types (pydantic models)
    @property
    def model_extra(self) -> dict[str, Any] | None: ...


def extra(obj: _OpenAIObject | None) -> dict[str, Any]:
    """The fields OpenAI's types do not declare (``reasoning_content``, ``meta``, ``timings``)."""
    return dict(obj.model_extra or {}) if obj is not None else {}


def final(events: Iterable[object]) -> ReplyDone:
    done = [e for e in events if isinstance(e, ReplyDone)]
    assert len(done) == 1
    return done[0]


def content(chunks: Iterable[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def test_models_lists_the_loaded_model(client3: openai.OpenAI) -> None:
    models = client3.models.list().data
    assert [m.id for m in models] == [MODEL]
    assert extra(models[0])["meta"]["n_ctx"] == 1024


def test_chat_reply_is_the_engines_reply(client3: openai.OpenAI, gemma3_gguf: Path) -> None:
    """Greedy decoding through the server gives exactly the in-process engine's reply and counts."""
    messages = [ChatMessage("system", "Answer briefly."), ChatMessage("user", "What is the capital of France?")]
    engine = Engine()
    engine.load(DirectLoadSettings(model_path=str(gemma3_gguf), n_ctx=1024, n_threads=2))
    try:
        done = final(engine.chat_stream(messages, SamplingParams(temperature=0.0, max_tokens=24)))
    finally:
        engine.unload()
    reply = client3.chat.completions.create(model=MODEL, messages=as_params(messages), max_tokens=24, temperature=0.0)
    assert reply.choices[0].message.content == done.answer
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == done.stats.prompt_tokens
    assert reply.usage.completion_tokens == done.stats.completion_tokens
    assert reply.choices[0].finish_reason == ("length" if done.stats.stop_reason == "length" else "stop")


def test_streaming_pieces_add_up_to_the_reply_with_usage(client3: openai.OpenAI) -> None:
    messages = [user("Tell me about the sea.")]
    whole = client3.chat.completions.create(model=MODEL, messages=messages, max_tokens=16, temperature=0.0)
    chunks = list(client3.chat.completions.create(model=MODEL, messages=messages, max_tokens=16, temperature=0.0,
                                                  stream=True, stream_options={"include_usage": True}))  # fmt: skip
    assert chunks[0].choices[0].delta.role == "assistant"
    assert content(chunks).strip() == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 16
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) >= 8  # really streamed


def test_second_turn_reuses_the_kv_prefix(client3: openai.OpenAI) -> None:
    """An API client that resends the whole conversation gets the cached prefix reused."""
    first = [user("Name three colours of the rainbow, please.")]
    r1 = client3.chat.completions.create(model=MODEL, messages=first, max_tokens=8, temperature=0.0)
    second: list[ChatCompletionMessageParam] = [
        *first, {"role": "assistant", "content": r1.choices[0].message.content}, user("And two more?"),
    ]  # fmt: skip
    r2 = client3.chat.completions.create(model=MODEL, messages=second, max_tokens=8, temperature=0.0)
    assert r1.usage is not None and r2.usage is not None and r2.usage.prompt_tokens_details is not None
    cached = r2.usage.prompt_tokens_details.cached_tokens
    assert cached is not None and cached >= r1.usage.prompt_tokens - 1


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
    prompt = "The capital of France is"
    whole = client3.completions.create(model=MODEL, prompt=prompt, max_tokens=6, temperature=0.0).choices[0].text
    chunks = client3.completions.create(model=MODEL, prompt=prompt, max_tokens=6, temperature=0.0, stream=True)
    streamed = "".join(c.choices[0].text for c in chunks if c.choices)
    assert whole == streamed and whole.startswith(" ")


def test_seed_makes_sampling_repeatable(client3: openai.OpenAI) -> None:
    replies = [
        client3.chat.completions.create(model=MODEL, messages=[user("Say something.")], max_tokens=12,
                                        temperature=1.0, top_p=0.95, seed=7).choices[0].message.content
        for _ in range(2)
    ]  # fmt: skip
    assert replies[0] and replies[0] == replies[1]


def test_thoughts_come_back_as_reasoning_content(client3: openai.OpenAI) -> None:
    """The real model copies Gemma 4's thought markers from the prompt (greedy): the engine's thought
    parser splits them out, and the server sends them as reasoning_content, also when streaming."""
    messages = [user("Repeat exactly:\n" + THOUGHT_PATTERN * 4)]
    reply = client3.chat.completions.create(model=MODEL, messages=messages, max_tokens=40, temperature=0.0)
    reasoning = extra(reply.choices[0].message).get("reasoning_content")
    assert isinstance(reasoning, str) and "sky is blue" in reasoning
    assert "<|channel>" not in (reply.choices[0].message.content or "")
    chunks = client3.chat.completions.create(model=MODEL, messages=messages, max_tokens=40, temperature=0.0,
                                             stream=True)  # fmt: skip
    streamed = "".join(extra(c.choices[0].delta).get("reasoning_content") or "" for c in chunks if c.choices)
    assert streamed.strip() == reasoning


def test_concurrent_clients_all_get_their_replies(served3: Served) -> None:
    results: dict[int, tuple[str, int]] = {}
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            client = openai.OpenAI(base_url=served3.base_url, api_key=API_KEY, max_retries=0, timeout=120)
            stream = client.chat.completions.create(
                model=MODEL, messages=[user(f"Count to {i + 3}.")], max_tokens=10, temperature=0.0, stream=True,
                stream_options={"include_usage": True},
            )  # fmt: skip
            chunks = list(stream)
            usage = chunks[-1].usage
            assert usage is not None
            results[i] = (content(chunks), usage.completion_tokens)
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
        messages = [user("Hello")]

        def prompt_tokens(thinking: Literal["off", "kwargs", "high", "none"]) -> int:
            chat = client.chat.completions
            if thinking == "kwargs":
                r = chat.create(model="gemma4-tiny", messages=messages, max_tokens=4,
                                extra_body={"chat_template_kwargs": {"enable_thinking": True}})  # fmt: skip
            elif thinking == "off":
                r = chat.create(model="gemma4-tiny", messages=messages, max_tokens=4)
            else:
                r = chat.create(model="gemma4-tiny", messages=messages, max_tokens=4, reasoning_effort=thinking)
            assert r.usage is not None
            return r.usage.prompt_tokens

        off = prompt_tokens("off")
        assert prompt_tokens("kwargs") > off
        assert prompt_tokens("high") > off
        assert prompt_tokens("none") == off
        chunks = list(client.chat.completions.create(model="gemma4-tiny", messages=messages, max_tokens=8,
                                                     stream=True, stream_options={"include_usage": True}))  # fmt: skip
        usage = chunks[-1].usage
        assert usage is not None and usage.completion_tokens >= 1
        assert served.service.state.supports_thinking
