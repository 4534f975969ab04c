"""The OpenAI wire format: request bodies checked and turned into jobs, results turned into JSON.

Pure functions, no HTTP and no model: everything a client sends is checked here against explicit
bounds before it reaches the model (hostile input), and every refusal is an :class:`ApiError` whose
message is one sentence naming the field. Replies use the shapes of OpenAI's API, with Gemma 4's
thoughts as ``reasoning_content`` (in the message and in stream deltas), as llama-server and vLLM do.

Thinking is switched on per request by ``chat_template_kwargs: {"enable_thinking": true}`` (vLLM,
llama-server) or by ``reasoning_effort`` ("none" switches it off; any other level switches it on:
Gemma 4 has no levels). Default: off.

Images and audio (issue 14): ``image_url`` parts with ``data:`` URLs only (a URL is never fetched) and
``input_audio`` parts (``{"data": base64, "format": "wav"|"mp3"|"flac"}``), at most
:data:`MAX_MEDIA_PARTS` per request and bounded by the body limit, go through the same checks as a file
attached in the app (:class:`~gemmadesk.core.attachments.AttachmentStore`: recognised from their bytes,
sizes bounded) and are stored content-addressed, so a repeated request re-uses the model's cached
encoding. Whether the loaded model can take them is the engine's answer (a 400 with one sentence).
"""

from __future__ import annotations

import base64
import binascii
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gemmadesk.core.engine import Attachment, ChatMessage, ReplyStats, SamplingParams
from gemmadesk.server.service import ChatJob, CompletionJob

MAX_BODY_BYTES = 8 * 2**20
MAX_MESSAGES = 4096
MAX_STOP_STRINGS = 8
MAX_STOP_LENGTH = 256
MAX_MODEL_NAME = 256
MAX_REPLY_TOKENS = 1_000_000
MAX_USER = 64
MAX_MEDIA_PARTS = 16
AUDIO_FORMATS = ("wav", "mp3", "flac")
REASONING_EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")
StoreMedia = Callable[[bytes, str], Attachment]  # (bytes, a name to show) -> the stored attachment
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


class ApiError(Exception):
    """An error for the client, in OpenAI's shape: ``{"error": {message, type, param, code}}``."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def bad(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


@dataclass(frozen=True)
class ChatRequest:
    model: str
    job: ChatJob
    stream: bool
    include_usage: bool
    user: str | None = None  # OpenAI's ``user``: the end user's id (requests with one queue as one client)


@dataclass(frozen=True)
class CompletionRequest:
    model: str
    job: CompletionJob
    stream: bool
    include_usage: bool
    user: str | None = None


# ------------------------------------------------------------------------------------ field checks


def _number(body: dict[str, Any], name: str, lo: float, hi: float, default: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad(f"“{name}” must be a number between {lo:g} and {hi:g}.", name)
    if not lo <= value <= hi:
        raise bad(f"“{name}” must be between {lo:g} and {hi:g}; got {value:g}.", name)
    return float(value)


def _integer(body: dict[str, Any], name: str, lo: int, hi: int) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"“{name}” must be a whole number between {lo:,} and {hi:,}.", name)
    if not lo <= value <= hi:
        raise bad(f"“{name}” must be between {lo:,} and {hi:,}; got {value:,}.", name)
    return value


def _flag(body: dict[str, Any], name: str) -> bool:
    value = body.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise bad(f"“{name}” must be true or false.", name)
    return value


def _model(body: dict[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model or len(model) > MAX_MODEL_NAME:
        raise bad("“model” must be the id of the loaded model (see GET /v1/models).", "model")
    return model


def _stops(body: dict[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    items = [stop] if isinstance(stop, str) else stop
    if (
        not isinstance(items, list)
        or len(items) > MAX_STOP_STRINGS
        or not all(isinstance(s, str) and 0 < len(s) <= MAX_STOP_LENGTH for s in items)
    ):
        raise bad(
            f"“stop” must be a string or a list of up to {MAX_STOP_STRINGS} non-empty strings of at most "
            f"{MAX_STOP_LENGTH} characters.",
            "stop",
        )
    return tuple(items)


def _user(body: dict[str, Any]) -> str | None:
    """OpenAI's ``user`` (an id of the client's end user): printable ASCII, at most 64 characters."""
    user = body.get("user")
    if user is None or user == "":
        return None
    if not isinstance(user, str) or len(user) > MAX_USER or not all(" " < c < "\x7f" for c in user):
        raise bad(f"“user” must be an id of at most {MAX_USER} printable characters without spaces.", "user")
    return user


def _stream_options(body: dict[str, Any]) -> tuple[bool, bool]:
    stream = _flag(body, "stream")
    options = body.get("stream_options")
    if options is None:
        return stream, False
    if not isinstance(options, dict):
        raise bad("“stream_options” must be an object.", "stream_options")
    include = options.get("include_usage", False)
    if not isinstance(include, bool):
        raise bad("“stream_options.include_usage” must be true or false.", "stream_options")
    return stream, include


def _unsupported(body: dict[str, Any], names: dict[str, Any]) -> None:
    """Fields GemmaDesk does not implement are refused unless they ask for the default behaviour."""
    for name, allowed in names.items():
        value = body.get(name)
        if value is None or value == allowed or (isinstance(allowed, tuple) and value in allowed):
            continue
        raise bad(f"“{name}” is not supported by GemmaDesk's server; leave it out.", name)


def _sampling(body: dict[str, Any], thinking: bool) -> SamplingParams:
    """The sampling settings; ``max_tokens`` 0 when the client gave none (up to the end of the window)."""
    defaults = SamplingParams()
    max_tokens = _integer(body, "max_completion_tokens", 1, MAX_REPLY_TOKENS)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", 1, MAX_REPLY_TOKENS)
    seed = _integer(body, "seed", 0, 2**32 - 1)
    top_k = _integer(body, "top_k", 0, 1000)  # llama-server / vLLM extension
    params = SamplingParams(
        temperature=_number(body, "temperature", 0.0, 2.0, defaults.temperature),
        top_p=_number(body, "top_p", 0.0, 1.0, defaults.top_p),
        top_k=defaults.top_k if top_k is None else top_k,
        min_p=_number(body, "min_p", 0.0, 1.0, defaults.min_p),
        repeat_penalty=_number(body, "repeat_penalty", 0.0, 10.0, defaults.repeat_penalty),
        max_tokens=max_tokens or 0,
        seed=seed,
        stop=_stops(body),
        thinking=thinking,
    )
    return params


def _thinking(body: dict[str, Any]) -> bool:
    thinking = False
    effort = body.get("reasoning_effort")
    if effort is not None:
        if effort not in REASONING_EFFORTS:
            raise bad(f"“reasoning_effort” must be one of {', '.join(REASONING_EFFORTS)}.", "reasoning_effort")
        thinking = effort != "none"
    kwargs = body.get("chat_template_kwargs")
    if kwargs is not None:
        if not isinstance(kwargs, dict):
            raise bad("“chat_template_kwargs” must be an object.", "chat_template_kwargs")
        enable = kwargs.get("enable_thinking")
        if enable is not None:
            if not isinstance(enable, bool):
                raise bad("“chat_template_kwargs.enable_thinking” must be true or false.", "chat_template_kwargs")
            thinking = enable
    return thinking


def _content(message: dict[str, Any], i: int) -> tuple[str, list[tuple[str, bytes]]]:
    """(the text, the media parts as (kind, bytes)) of one message."""
    content = message.get("content")
    if content is None and message.get("role") == "assistant":
        return "", []
    if isinstance(content, str):
        return content, []
    if isinstance(content, list):
        texts: list[str] = []
        media: list[tuple[str, bytes]] = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            if isinstance(part, dict) and kind in ("image_url", "input_audio"):
                media.append(_media_part(part, i))
                continue
            if not isinstance(part, dict) or kind not in ("text", "input_text"):
                raise bad(f"messages[{i}]: content parts of type “{str(kind)[:40]}” are not supported; send text, "
                          "image_url or input_audio parts.", "messages")  # fmt: skip
            text = part.get("text")
            if not isinstance(text, str):
                raise bad(f"messages[{i}]: a text part needs a “text” string.", "messages")
            texts.append(text)
        return "\n".join(texts), media
    raise bad(f"messages[{i}].content must be a string or a list of content parts.", "messages")


def _media_part(part: dict[str, Any], i: int) -> tuple[str, bytes]:
    """An ``image_url`` (``data:`` URL) or ``input_audio`` part as (kind, decoded bytes)."""
    if part["type"] == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str) or not url.startswith("data:"):
            raise bad(f"messages[{i}]: images must be sent inline as “data:image/…;base64,…” URLs; GemmaDesk's "
                      "server never fetches URLs.", "messages")  # fmt: skip
        header, _, payload = url.partition(",")
        if not header.endswith(";base64"):
            raise bad(f"messages[{i}]: an image data URL must be base64 (“data:image/png;base64,…”).", "messages")
        return "image", _b64(payload, i)
    audio = part.get("input_audio")
    if not isinstance(audio, dict) or not isinstance(audio.get("data"), str):
        raise bad(f"messages[{i}]: an input_audio part needs {{\"data\": base64, \"format\": \"wav\"}}.", "messages")
    if audio.get("format") not in AUDIO_FORMATS:
        raise bad(f"messages[{i}]: input_audio “format” must be one of {', '.join(AUDIO_FORMATS)}.", "messages")
    return "audio", _b64(audio["data"], i)


def _b64(payload: str, i: int) -> bytes:
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise bad(f"messages[{i}]: the attached data is not valid base64.", "messages") from None


def _stored(kind: str, data: bytes, i: int, n: int, store: StoreMedia | None) -> Attachment:
    """Check and store one media part (as a file attached in the app would be)."""
    from gemmadesk.core.attachments import AttachmentStore, AttachmentStoreError
    from gemmadesk.core.media import JPEG_SCAN_BYTES, MediaError, check_media

    name = f"{kind} {n + 1} of messages[{i}]"
    try:
        found = check_media(data[:JPEG_SCAN_BYTES], len(data), name).kind  # before anything is stored
        if found != kind:
            raise bad(f"messages[{i}]: an {kind} part holds {found} data; send it as "
                      f"{'image_url' if found == 'image' else 'input_audio'}.", "messages")  # fmt: skip
        return (store or AttachmentStore().put_bytes)(data, name)
    except MediaError as exc:
        raise bad(f"messages[{i}]: {exc}", "messages") from None
    except AttachmentStoreError as exc:
        raise ApiError(500, str(exc), type="server_error") from None


def parse_messages(raw: Any, store: StoreMedia | None = None) -> tuple[ChatMessage, ...]:
    """The request's messages; ``store`` keeps image/audio parts (default: the app's AttachmentStore)."""
    if not isinstance(raw, list) or not raw:
        raise bad("“messages” must be a non-empty list.", "messages")
    if len(raw) > MAX_MESSAGES:
        raise bad(f"“messages” holds {len(raw):,} messages; at most {MAX_MESSAGES:,} are accepted.", "messages")
    system: list[str] = []
    turns: list[ChatMessage] = []
    n_media = 0
    for i, message in enumerate(raw):
        if not isinstance(message, dict):
            raise bad(f"messages[{i}] must be an object with “role” and “content”.", "messages")
        role = ROLES.get(message.get("role"))  # type: ignore[arg-type]
        if role is None:
            raise bad(
                f"messages[{i}] has role {str(message.get('role'))[:40]!r}; use system, developer, user or assistant.",
                "messages",
            )
        text, media = _content(message, i)
        if media and role != "user":
            raise bad(f"messages[{i}]: only user messages can carry images or audio.", "messages")
        n_media += len(media)
        if n_media > MAX_MEDIA_PARTS:
            raise bad(f"At most {MAX_MEDIA_PARTS} images and audio clips are accepted in one request.", "messages")
        if role == "system":
            if turns:
                raise bad(f"messages[{i}]: system messages must come before the conversation.", "messages")
            system.append(text)
        else:
            atts = tuple(_stored(kind, data, i, n, store) for n, (kind, data) in enumerate(media))
            turns.append(ChatMessage(role, text, atts))  # type: ignore[arg-type]
    if not turns or turns[-1].role != "user":
        raise bad("The last message must be the user's (GemmaDesk does not continue assistant messages).", "messages")
    head = [ChatMessage("system", "\n\n".join(system))] if system else []
    return tuple(head + turns)


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad("The request body must be a JSON object.")
    return body


# ------------------------------------------------------------------------------------ requests


def parse_chat(body: Any, store: StoreMedia | None = None) -> ChatRequest:
    body = _object(body)
    model = _model(body)
    _unsupported(body, {"n": 1, "logprobs": False, "top_logprobs": 0, "tools": (), "tool_choice": ("none", "auto"),
                        "functions": (), "frequency_penalty": 0, "presence_penalty": 0, "logit_bias": (),
                        "audio": (), "modalities": (("text",), ["text"])})  # fmt: skip
    response_format = body.get("response_format")
    if response_format is not None and response_format != {"type": "text"}:
        raise bad("“response_format” other than text is not supported by GemmaDesk's server.", "response_format")
    messages = parse_messages(body.get("messages"), store)
    params = _sampling(body, _thinking(body))
    stream, include_usage = _stream_options(body)
    return ChatRequest(model, ChatJob(messages=messages, params=params), stream, include_usage, _user(body))


def parse_completion(body: Any) -> CompletionRequest:
    body = _object(body)
    model = _model(body)
    _unsupported(body, {"n": 1, "best_of": 1, "logprobs": (None, 0), "echo": False, "suffix": ("",),
                        "frequency_penalty": 0, "presence_penalty": 0, "logit_bias": ()})  # fmt: skip
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str) or not prompt:
        raise bad("“prompt” must be a non-empty string (one prompt per request).", "prompt")
    params = _sampling(body, False)
    stream, include_usage = _stream_options(body)
    return CompletionRequest(model, CompletionJob(prompt=prompt, params=params), stream, include_usage, _user(body))


# ------------------------------------------------------------------------------------ replies


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def finish_reason(stats: ReplyStats) -> str:
    if stats.stop_reason in ("length", "context_full"):
        return "length"
    return "stop"


def usage(stats: ReplyStats) -> dict[str, Any]:
    return {
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "total_tokens": stats.prompt_tokens + stats.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": stats.prompt_tokens - stats.prompt_tokens_evaluated},
    }


def timings(stats: ReplyStats) -> dict[str, Any]:
    """llama-server's extra ``timings`` object (clients that know it show speed from it)."""
    return {
        "prompt_n": stats.prompt_tokens_evaluated,
        "prompt_per_second": round(stats.prompt_tokens_per_s, 3),
        "predicted_n": stats.completion_tokens,
        "predicted_per_second": round(stats.generated_tokens_per_s, 3),
        "time_to_first_token_ms": round(stats.time_to_first_token_s * 1000, 3),
    }


def chat_completion(rid: str, model: str, answer: str, thoughts: str, stats: ReplyStats) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer}
    if thoughts:
        message["reasoning_content"] = thoughts
    return {
        "id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason(stats), "logprobs": None}],
        "usage": usage(stats), "timings": timings(stats),
    }  # fmt: skip


def chat_chunk(rid: str, model: str, created: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {
        "id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }  # fmt: skip


def text_completion(rid: str, model: str, text: str, stats: ReplyStats) -> dict[str, Any]:
    return {
        "id": rid, "object": "text_completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": finish_reason(stats), "logprobs": None}],
        "usage": usage(stats), "timings": timings(stats),
    }  # fmt: skip


def text_chunk(rid: str, model: str, created: int, text: str, finish: str | None = None) -> dict[str, Any]:
    return {
        "id": rid, "object": "text_completion", "created": created, "model": model,
        "choices": [{"index": 0, "text": text, "finish_reason": finish, "logprobs": None}],
    }  # fmt: skip


def usage_chunk(rid: str, model: str, created: int, obj: str, stats: ReplyStats) -> dict[str, Any]:
    return {"id": rid, "object": obj, "created": created, "model": model, "choices": [], "usage": usage(stats)}
