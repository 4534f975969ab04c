"""Images and audio through GemmaDesk's OpenAI-compatible server (issue 14 phase 2), reached with OpenAI's
own client: ``image_url`` parts with data: URLs and ``input_audio`` parts go through the same checks as a
file attached in the app; a URL is never fetched. Real llama.cpp + mtmd on the synthetic Gemma 4 model and
projector. On the old code every image part was refused ("content parts of type image_url are not
supported"): the first test fails there."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from gemmadesk.core.attachments import AttachmentStore
from gemmadesk.server import protocol
from gemmadesk.server.protocol import ApiError
from tests.support.media_files import png, wav
from tests.support.serving import Served, serve_gguf

pytestmark = pytest.mark.slow


def _image(data: bytes, mime: str = "image/png") -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{base64.b64encode(data).decode()}"}}


def _audio(data: bytes, fmt: str = "wav") -> dict[str, Any]:
    return {"type": "input_audio", "input_audio": {"data": base64.b64encode(data).decode(), "format": fmt}}


@pytest.fixture
def served(tiny_model: Path, projectors: Callable[..., Path]) -> Iterator[Served]:
    with serve_gguf(tiny_model, "gemma4-tiny", n_ctx=2048, mmproj=projectors("tiny")) as s:
        yield s


def _client(served: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.base_url, api_key="unused", max_retries=0, timeout=120)


def test_an_image_and_audio_are_seen_and_a_repeat_reuses_the_stored_file(served: Served) -> None:
    client = _client(served)
    content: Any = [{"type": "text", "text": "What is this?"}, _image(png(200, 150, seed=5)), _audio(wav(0.4))]
    first = client.chat.completions.create(model="gemma4-tiny", max_tokens=3, seed=1,
                                           messages=[{"role": "user", "content": content}])
    assert first.usage is not None and first.usage.prompt_tokens > 70 + 10
    again = client.chat.completions.create(model="gemma4-tiny", max_tokens=3, seed=1,
                                           messages=[{"role": "user", "content": content}])
    assert again.usage is not None and again.usage.prompt_tokens == first.usage.prompt_tokens
    assert len(list(AttachmentStore().hashes())) == 2, "stored once, by content"


@pytest.mark.parametrize(("part", "expected"), [
    ({"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/cat.png"}}, "never fetches URLs"),
    ({"type": "image_url", "image_url": {"url": "data:image/png,notbase64"}}, "must be base64"),
    ({"type": "image_url", "image_url": {"url": "data:image/png;base64,@@@"}}, "not valid base64"),
    (_image(b"<html>not a picture</html>"), "is not an image or audio file"),
    (_image(wav(0.2)), "holds audio data; send it as input_audio"),
    (_audio(wav(0.2), "ogg"), "must be one of wav, mp3, flac"),
])
def test_bad_media_parts_are_a_400_naming_the_problem(served: Served, part: dict[str, Any], expected: str) -> None:
    messages: Any = [{"role": "user", "content": [part]}]
    with pytest.raises(openai.BadRequestError) as caught:
        _client(served).chat.completions.create(model="gemma4-tiny", max_tokens=2, messages=messages)
    assert expected in str(caught.value)
    assert list(AttachmentStore().hashes()) == [], "nothing stored for a refused part"


def test_a_model_without_its_projector_answers_400_in_one_sentence(tiny_model: Path) -> None:
    messages: Any = [{"role": "user", "content": [_image(png(64, 64))]}]
    with serve_gguf(tiny_model, "gemma4-tiny", n_ctx=1024) as plain, \
            pytest.raises(openai.BadRequestError, match="without its projector"):
        _client(plain).chat.completions.create(model="gemma4-tiny", max_tokens=2, messages=messages)


def test_limits_on_media_parts() -> None:
    many = [{"role": "user", "content": [_image(png(8, 8, seed=i)) for i in range(protocol.MAX_MEDIA_PARTS + 1)]}]
    with pytest.raises(ApiError, match="At most 16 images"):
        protocol.parse_messages(many, store=lambda data, name: pytest.fail("nothing may be stored"))
    with pytest.raises(ApiError, match="only user messages"):
        protocol.parse_messages([{"role": "assistant", "content": [_image(png(8, 8))]},
                                 {"role": "user", "content": "hi"}])
