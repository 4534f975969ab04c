"""A chat backend on any OpenAI-compatible server (vLLM, llama-server, Ollama, another GemmaDesk, …).

    backend = RemoteBackend("http://gpu-box:8000/v1", model="google/gemma-4-31B-it-qat-w4a16-ct", api_key=None)
    models = backend.list_models()                           # [RemoteModel(id, owned_by, n_ctx)]
    for event in backend.chat_stream(messages, SamplingParams(thinking=True), stop_event):
        ...   # TextChunk("thought" | "answer", text) …, then exactly one ReplyDone (answer, thoughts, stats)

It implements the chat core's ``ChatBackend`` (docs/design/chat-core.md), so the chat, history,
thinking display, stop and stats work the same as for the local engine:

- thoughts come from ``reasoning_content`` (llama-server, older vLLM) or ``reasoning`` (newer vLLM)
  deltas, and from Gemma 4's own ``<|channel>thought … <channel|>`` markers when a server passes them
  through in the content (no reasoning parser): both become ``TextChunk("thought", …)``;
- ``stop`` (a threading.Event) ends the reply within ~50 ms even while the server is silent (the
  connection is shut down, so the server sees the client leave and stops generating);
- stats: time to first token, tokens/s, and usage (from ``stream_options.include_usage`` when the
  server sends it, else the number of streamed pieces);
- every failure is a :class:`~gemmadesk.core.remote.errors.RemoteError` with one sentence: unreachable,
  TLS (verification is always on), 401, timeouts, model unknown, busy, garbage SSE, connection broken
  off mid-reply. Server-sent text in messages is cleaned and shortened.

HTTP goes through httpx2 (what huggingface_hub already brings), including its SSE parser, which
bounds the size of one event (1 MiB).
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx2

from gemmadesk.core.engine.chatformat import ThoughtParser
from gemmadesk.core.remote.errors import (
    RemoteAuthError,
    RemoteBusyError,
    RemoteConfigError,
    RemoteContextError,
    RemoteDisconnectedError,
    RemoteError,
    RemoteModelError,
    RemoteProtocolError,
    RemoteServerError,
    RemoteTimeoutError,
    RemoteTLSError,
    RemoteUnreachableError,
    server_text,
)
from gemmadesk.core.types import (
    BackendInfo,
    ChatMessage,
    ChunkKind,
    ReplyDone,
    ReplyStats,
    SamplingParams,
    StopReason,
    StreamEvent,
    TextChunk,
)

MAX_ERROR_BODY = 64 * 1024
MAX_MODELS_BODY = 4 * 2**20
MAX_EVENT_BYTES = 1 * 2**20
MAX_REPLY_CHARS = 32 * 2**20  # a reply (answer + thoughts) larger than this is not a model's reply
STOP_POLL_S = 0.05


@dataclass(frozen=True)
class RemoteTimeouts:
    connect: float = 10.0
    read: float = 120.0  # the longest silence accepted, also before the first token (long prompts)
    write: float = 30.0


ChatBackendInfo = BackendInfo  # the phase-1 name of the chat core's BackendInfo


@dataclass(frozen=True)
class RemoteModel:
    id: str
    owned_by: str = ""
    n_ctx: int = 0  # 0: unknown


def normalize_base_url(url: str) -> str:
    """``http(s)://host[:port][/path]`` checked; a bare host gets ``/v1`` (the usual OpenAI base path)."""
    text = url.strip()
    if not text or len(text) > 2048:
        raise RemoteConfigError("Enter the server's address, e.g. http://192.168.1.20:8000/v1.")
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise RemoteConfigError(f"“{server_text(url, 80)}” is not a valid address ({exc}).") from None
    if parts.scheme not in ("http", "https"):
        raise RemoteConfigError(f"The address must start with http:// or https://, not {parts.scheme}://.")
    if not parts.hostname:
        raise RemoteConfigError(f"“{server_text(url, 80)}” has no host name.")
    if parts.username or parts.password:
        raise RemoteConfigError("Put the API key in its own field, not in the address.")
    if parts.query or parts.fragment:
        raise RemoteConfigError("The address must not contain ?query or #fragment parts.")
    path = parts.path.rstrip("/") or "/v1"
    netloc = parts.netloc.lower() if port is None else f"{parts.hostname}:{port}"
    if ":" in (parts.hostname or "") and not netloc.startswith("["):
        netloc = f"[{parts.hostname}]" + (f":{port}" if port is not None else "")
    return urlunsplit((parts.scheme, netloc, path, "", ""))


def _host(base_url: str) -> str:
    return urlsplit(base_url).netloc


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
        if current is None and exc.args and isinstance(exc.args[0], BaseException):
            current = exc.args[0]
    return None


class _StopWatcher:
    """Shuts the response's socket down as soon as ``stop`` is set, so a blocked read returns."""

    def __init__(self, stop: threading.Event | None) -> None:
        self._stop = stop
        self._finished = threading.Event()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        if stop is not None:
            self._thread = threading.Thread(target=self._run, name="gemmadesk-remote-stop", daemon=True)
            self._thread.start()

    def attach(self, response: httpx2.Response) -> None:
        stream = response.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        self._sock = sock if isinstance(sock, socket.socket) else None

    def _run(self) -> None:
        assert self._stop is not None
        while not self._finished.wait(STOP_POLL_S):
            if self._stop.is_set():
                sock = self._sock
                if sock is not None:
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                return

    def close(self) -> None:
        self._finished.set()


class RemoteBackend:
    """One model on one OpenAI-compatible server. Thread-safe; :meth:`close` when done."""

    def __init__(
        self,
        base_url: str,
        model: str = "",
        api_key: str | None = None,
        *,
        timeouts: RemoteTimeouts | None = None,
        n_ctx: int = 0,
        supports_thinking: bool = True,
        ca_file: Path | None = None,
    ) -> None:
        self.base_url = normalize_base_url(base_url)
        self.model = model
        self.timeouts = timeouts or RemoteTimeouts()
        self._host = _host(self.base_url)
        self._has_key = bool(api_key)
        self._info = BackendInfo(f"{model} @ {self._host}", n_ctx, supports_thinking, is_remote=True)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        t = self.timeouts
        # Certificates are always verified: the system's store, or in addition a CA file the user chose.
        verify: ssl.SSLContext | bool = True if ca_file is None else ssl.create_default_context(cafile=str(ca_file))
        self._client = httpx2.Client(
            base_url=self.base_url + "/",
            headers=headers,
            timeout=httpx2.Timeout(connect=t.connect, read=t.read, write=t.write, pool=t.connect),
            follow_redirects=False,
            verify=verify,
        )

    # ------------------------------------------------------------------ ChatBackend
    @property
    def info(self) -> BackendInfo:
        return self._info

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RemoteBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def list_models(self) -> list[RemoteModel]:
        """The models the server offers (``GET /models``)."""
        try:
            with self._client.stream("GET", "models") as response:
                if response.status_code != 200:
                    raise self._status_error(response, "models")
                body = _read_limited(response, MAX_MODELS_BODY)
        except httpx2.HTTPError as exc:
            raise self._transport_error(exc) from None
        try:
            data = json.loads(body)["data"]
            return [_remote_model(item) for item in data]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise RemoteProtocolError(
                f"{self._host} answered the model list in a format GemmaDesk cannot read; is "
                f"{self.base_url} an OpenAI-compatible address?"
            ) from None

    def chat_stream(
        self, messages: Sequence[ChatMessage], params: SamplingParams, stop: threading.Event | None = None
    ) -> Iterator[StreamEvent]:
        body = self._body(params)
        body["messages"] = [{"role": m.role, "content": m.content} for m in messages]
        if params.thinking:
            body["chat_template_kwargs"] = {"enable_thinking": True}
        return self._stream("chat/completions", body, params, stop, chat=True)

    def complete_stream(
        self, prompt: str, params: SamplingParams, stop: threading.Event | None = None
    ) -> Iterator[StreamEvent]:
        body = self._body(params)
        body["prompt"] = prompt
        return self._stream("completions", body, params, stop, chat=False)

    def count_prompt_tokens(self, messages: Sequence[ChatMessage], params: SamplingParams) -> int:
        """An estimate (about 3 characters a token, plus a few per turn): OpenAI's API has no standard
        way to count tokens, and the exact count comes back in the reply's usage."""
        return sum(len(m.content) // 3 + 4 for m in messages) + 2

    def count_text_tokens(self, prompt: str) -> int:
        """An estimate, as :meth:`count_prompt_tokens`."""
        return len(prompt) // 3 + 1

    # ------------------------------------------------------------------ internals
    def _body(self, params: SamplingParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.max_tokens > 0:  # 0: no limit given (an API client of GemmaDesk's server): the server decides
            body["max_tokens"] = params.max_tokens
        if params.seed is not None:
            body["seed"] = params.seed
        stops = tuple(getattr(params, "stop", ()) or ())
        if stops:
            body["stop"] = list(stops)
        return body

    def _stream(
        self, path: str, body: dict[str, Any], params: SamplingParams, stop: threading.Event | None, *, chat: bool
    ) -> Iterator[StreamEvent]:
        started = time.perf_counter()
        reply = _Reply(started)
        watcher = _StopWatcher(stop)
        try:
            with self._client.sse(path, method="POST", json=body, max_event_size=MAX_EVENT_BYTES) as source:
                response = source.response
                if response.status_code != 200:
                    raise self._status_error(response, path)
                content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
                if content_type != "text/event-stream":
                    raise RemoteProtocolError(
                        f"{self._host} did not stream its reply (it sent {server_text(content_type, 60) or 'no type'}"
                        f" instead of text/event-stream); is {self.base_url} an OpenAI-compatible address?"
                    )
                watcher.attach(response)
                for event in source:
                    if stop is not None and stop.is_set():
                        break
                    if event.data.strip() == "[DONE]":
                        reply.done = True
                        break
                    yield from reply.feed(self._parse(event.data, chat))
                    if reply.chars > MAX_REPLY_CHARS:
                        raise RemoteProtocolError(f"{self._host} sent more than {MAX_REPLY_CHARS // 2**20} MiB of "
                                                  "text for one reply; GemmaDesk stopped reading it.")  # fmt: skip
                    if 0 < params.max_tokens < reply.pieces - 64:  # a server that ignores max_tokens
                        reply.finish_reason = "length"
                        break
        except RemoteError:
            raise
        except httpx2.HTTPError as exc:
            if stop is None or not stop.is_set():
                raise self._transport_error(exc, reply.pieces > 0) from None
        finally:
            watcher.close()
        stopped = stop is not None and stop.is_set()
        if not stopped and not reply.done and reply.finish_reason is None:
            raise RemoteDisconnectedError(
                f"The connection to {self._host} ended in the middle of the reply, without its end marker. "
                "The server may have stopped or crashed; try again once it is back."
            )
        yield from reply.finish(stopped)

    def _parse(self, data: str, chat: bool) -> dict[str, Any]:
        try:
            obj = json.loads(data)
        except (ValueError, RecursionError):
            raise self._garbage() from None
        if not isinstance(obj, dict):
            raise self._garbage()
        if "error" in obj:
            error = obj["error"]
            message = error.get("message", error) if isinstance(error, dict) else error
            raise RemoteServerError(f"{self._host} stopped the reply with an error: {server_text(message)}")
        out: dict[str, Any] = {"usage": obj.get("usage")}
        choices = obj.get("choices")
        if choices is None or choices == []:
            return out
        if not isinstance(choices, list) or not isinstance(choices[0], dict):
            raise self._garbage()
        choice = choices[0]
        if chat:
            delta = choice.get("delta") or {}
            if not isinstance(delta, dict):
                raise self._garbage()
            out["content"] = delta.get("content")
            out["reasoning"] = delta.get("reasoning_content") or delta.get("reasoning")
        else:
            out["content"] = choice.get("text")
        out["finish_reason"] = choice.get("finish_reason")
        for key in ("content", "reasoning", "finish_reason"):
            if out.get(key) is not None and not isinstance(out[key], str):
                raise self._garbage()
        return out

    def _garbage(self) -> RemoteProtocolError:
        return RemoteProtocolError(
            f"{self._host} sent a reply GemmaDesk cannot read (not OpenAI's streaming format). "
            "Check that the address points to an OpenAI-compatible server."
        )

    def _status_error(self, response: httpx2.Response, path: str) -> RemoteError:
        status = response.status_code
        try:
            raw = _read_limited(response, MAX_ERROR_BODY)
        except httpx2.HTTPError:
            raw = b""
        message, code = _error_message(raw)
        message = message or response.reason_phrase or f"HTTP {status}"
        host = self._host
        if status in (401, 403):
            if not self._has_key:
                return RemoteAuthError(f"{host} needs an API key ({status}: {message}). Add the key for this server.")
            return RemoteAuthError(f"{host} refused the API key ({status}: {message}). Check the key for this server.")
        if status == 404:
            if code == "model_not_found" or (self.model and self.model in message):
                return RemoteModelError(f"{host} has no model “{server_text(self.model, 80)}” ({message}). "
                                        "Choose one of the models it lists.")  # fmt: skip
            return RemoteModelError(f"{host} has no /{path} ({message}); is {self.base_url} its OpenAI-compatible "
                                    "address (usually ending in /v1)?")  # fmt: skip
        if status in (400, 413) and (code == "context_length_exceeded" or _mentions_context(message)):
            return RemoteContextError(f"The conversation is too long for this model on {host}: {message}. "
                                      "Start a new chat or shorten the message.")  # fmt: skip
        if status in (429, 503):
            return RemoteBusyError(f"{host} is busy or still loading the model ({status}: {message}). "
                                   "Try again in a moment.")  # fmt: skip
        if 400 <= status < 500:
            return RemoteServerError(f"{host} refused the request ({status}: {message}).")
        return RemoteServerError(f"{host} failed with an error of its own ({status}: {message}).")

    def _transport_error(self, exc: httpx2.HTTPError, mid_reply: bool = False) -> RemoteError:
        host, t = self._host, self.timeouts
        if isinstance(exc, httpx2.ConnectTimeout | httpx2.PoolTimeout):
            return RemoteTimeoutError(f"{host} did not accept a connection within {t.connect:g} s. "
                                      "Check that the server is running and reachable.")  # fmt: skip
        if isinstance(exc, httpx2.ReadTimeout):
            what = "in the middle of the reply" if mid_reply else "before answering"
            return RemoteTimeoutError(f"{host} sent nothing for {t.read:g} s {what}, so GemmaDesk stopped waiting. "
                                      "The server may be overloaded; try again.")  # fmt: skip
        if isinstance(exc, httpx2.WriteTimeout):
            return RemoteTimeoutError(f"{host} did not take the request within {t.write:g} s. Try again.")
        tls = _ssl_error(exc)
        if tls is not None:
            reason = server_text(getattr(tls, "verify_message", None) or getattr(tls, "reason", None) or tls, 120)
            return RemoteTLSError(f"The secure connection to {host} failed: its certificate could not be verified "
                                  f"({reason}). GemmaDesk always checks certificates; use an address whose "
                                  "certificate this computer trusts.")  # fmt: skip
        if isinstance(exc, httpx2.ConnectError):
            return RemoteUnreachableError(f"Cannot connect to {host} ({server_text(exc, 120)}). "
                                          "Check the address and that the server is running.")  # fmt: skip
        if isinstance(exc, httpx2.SSEError):
            return RemoteProtocolError(f"{host} sent an event larger than {MAX_EVENT_BYTES // 2**20} MiB; "
                                       "GemmaDesk stopped reading this reply.")  # fmt: skip
        if isinstance(exc, httpx2.RemoteProtocolError | httpx2.ReadError | httpx2.CloseError):
            return RemoteDisconnectedError(f"The connection to {host} broke off in the middle of the reply "
                                           f"({server_text(exc, 120)}). The server may have stopped; try again "
                                           "once it is back.")  # fmt: skip
        if isinstance(exc, httpx2.UnsupportedProtocol):
            return RemoteConfigError(f"{self.base_url} is not an http:// or https:// address.")
        return RemoteUnreachableError(f"Talking to {host} failed ({server_text(exc, 120)}). Try again.")


class _Reply:
    """Accumulates one streamed reply: pieces → TextChunks, then the ReplyDone with stats."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.parser = ThoughtParser()
        self.thoughts = ""
        self.pieces = 0
        self.chars = 0
        self.first_at = 0.0
        self.last_at = 0.0
        self.usage: dict[str, Any] | None = None
        self.finish_reason: str | None = None
        self.done = False

    def feed(self, part: dict[str, Any]) -> Iterator[TextChunk]:
        if isinstance(part.get("usage"), dict):
            self.usage = part["usage"]
        if part.get("finish_reason"):
            self.finish_reason = part["finish_reason"]
        reasoning, content = part.get("reasoning"), part.get("content")
        if reasoning or content:
            self.chars += len(reasoning or "") + len(content or "")
            now = time.perf_counter()
            if not self.pieces:
                self.first_at = now
            self.last_at = now
            self.pieces += 1
        if reasoning:
            self.thoughts += reasoning
            yield TextChunk(ChunkKind.THOUGHT, reasoning)
        if content:
            for kind, text in self.parser.feed(content):
                yield TextChunk(kind, text)  # type: ignore[arg-type]

    def finish(self, stopped: bool) -> Iterator[StreamEvent]:
        for kind, text in self.parser.finish():
            yield TextChunk(kind, text)  # type: ignore[arg-type]
        usage = self.usage or {}
        prompt = _int(usage.get("prompt_tokens"))
        completion = _int(usage.get("completion_tokens")) or self.pieces
        details = usage.get("prompt_tokens_details")
        cached = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
        reason = StopReason.STOPPED if stopped else (
            StopReason.LENGTH if self.finish_reason == "length" else StopReason.EOS
        )
        now = time.perf_counter()
        stats = ReplyStats(
            prompt_tokens=prompt,
            prompt_tokens_evaluated=max(0, prompt - cached),
            completion_tokens=completion,
            stop_reason=reason,
            total_s=now - self.started,
        )
        if self.pieces:
            stats.time_to_first_token_s = self.first_at - self.started
            stats.prompt_tokens_per_s = stats.prompt_tokens_evaluated / max(stats.time_to_first_token_s, 1e-9)
            if completion > 1 and self.last_at > self.first_at:
                stats.generated_tokens_per_s = (completion - 1) / (self.last_at - self.first_at)
        thoughts = (self.thoughts + self.parser.thoughts).strip()
        yield ReplyDone(self.parser.answer.strip(), thoughts, stats)


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _read_limited(response: httpx2.Response, limit: int) -> bytes:
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > limit:
            raise RemoteProtocolError(
                f"The server's answer is larger than {limit // 1024} KiB; GemmaDesk stopped reading."
            )
    return bytes(body)


def _error_message(raw: bytes) -> tuple[str, str]:
    """(message, code) from an error body in OpenAI's shape, FastAPI's ``detail``, or plain text."""
    text = raw.decode("utf-8", "replace")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        return server_text(text), ""
    if isinstance(obj, dict):
        error = obj.get("error", obj)
        if isinstance(error, dict):
            message = error.get("message") or error.get("detail") or obj.get("detail") or ""
            code = error.get("code") or ""
            return server_text(message if isinstance(message, str) else json.dumps(message)), str(code)[:64]
        if isinstance(error, str):
            return server_text(error), ""
    return server_text(text), ""


def _mentions_context(message: str) -> bool:
    lowered = message.lower()
    return "context" in lowered and any(w in lowered for w in ("length", "exceed", "too long", "maximum", "window"))


def _remote_model(item: Any) -> RemoteModel:
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        raise TypeError("model without id")
    n_ctx = 0
    meta = item.get("meta")
    sources: tuple[dict[str, Any], ...] = (item, meta) if isinstance(meta, dict) else (item,)
    for source in sources:
        for key in ("max_model_len", "n_ctx", "context_length", "n_ctx_train"):
            value = source.get(key)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                n_ctx = n_ctx or value
    owner = item.get("owned_by")
    return RemoteModel(server_text(item["id"], 256), server_text(owner, 80) if isinstance(owner, str) else "", n_ctx)
