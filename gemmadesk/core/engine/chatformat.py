"""Turning a conversation into prompt text, and the model's output back into answer and thoughts.

Prompt: the model's own GGUF chat template (``tokenizer.chat_template``, Jinja) is used whenever it is
present, rendered like Hugging Face/llama-cpp-python do (sandboxed, ``bos_token``,
``add_generation_prompt``, ``enable_thinking``) but with limits on time, memory and sizes
(:mod:`template_sandbox`); every template failure is a :class:`ChatTemplateError` with one sentence for the
user. A model without a template (base models such as the Gemma 3 270M test model) gets a fallback chosen
by architecture; :attr:`PromptFormat.source` says which.

Control tokens come only from the template: :meth:`PromptFormat.render_pieces` marks every special-token
string found *inside a message* (``<|turn>``, ``<bos>``, ``<|channel>`` typed or pasted by a user) so the
engine tokenizes it as plain text, while the template's own markers stay control tokens. A conversation
without such strings renders to exactly the text (and tokens) it always did.

Gemma 4 specifics handled here:
- thinking is switched on with ``enable_thinking=True`` (the template then puts ``<|think|>`` at the top
  of the system turn); the fallback writes ``<|think|>`` itself;
- thoughts arrive as ``<|channel>thought\\n … <channel|>`` and are split from the answer by
  :class:`ThoughtParser` (which works on a stream, marker split across tokens included); a stray
  ``<channel|>`` outside a thought is dropped, as llama.cpp's parser does;
- thoughts are never put back into the history: :class:`ChatMessage` has no place for them.
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from gemmadesk.core.engine import template_sandbox
from gemmadesk.core.engine.errors import ChatTemplateError
from gemmadesk.core.gguf_file import shown
from gemmadesk.core.types import ChatMessage

THOUGHT_OPEN = "<|channel>"
THOUGHT_CLOSE = "<channel|>"
# Text that ends a turn even if the tokenizer does not flag it as end-of-generation.
TURN_END_MARKERS = ("<turn|>", "<end_of_turn>", "<eos>")

_FALLBACKS: dict[str, str] = {"gemma4": "gemma4", "gemma3": "gemma", "gemma2": "gemma", "gemma": "gemma"}


@dataclass(frozen=True)
class PromptPiece:
    """A run of prompt text. ``literal``: it came from a message and must be tokenized as plain text
    (never as control tokens); otherwise it is the template's (special tokens parsed)."""

    text: str
    literal: bool = False


@dataclass(frozen=True)
class PromptFormat:
    """How prompts are written for the loaded model."""

    source: str  # "gguf-template" or "fallback:gemma4" / "fallback:gemma" / "fallback:plain"
    template: str | None
    bos_token: str
    eos_token: str

    @property
    def supports_thinking(self) -> bool:
        if self.template is not None:
            return "enable_thinking" in self.template
        return self.source == "fallback:gemma4"

    def render(self, messages: Sequence[ChatMessage], *, thinking: bool = False) -> str:
        """The prompt text, ending where the model's reply starts. Includes ``bos_token`` when the
        template does; the engine adds BOS itself when it is missing and the model wants one.
        Raises :class:`ChatTemplateError`."""
        if self.template is not None:
            return _render_jinja(self.template, messages, self.bos_token, self.eos_token, thinking)
        kind = self.source.removeprefix("fallback:")
        if kind == "gemma4":
            return _render_gemma4(messages, thinking)
        if kind == "gemma":
            return _render_gemma(messages)
        return _render_plain(messages)

    def render_pieces(
        self,
        messages: Sequence[ChatMessage],
        *,
        thinking: bool = False,
        specials: Callable[[str], Collection[str]] | None = None,
    ) -> list[PromptPiece]:
        """The prompt as pieces: every special-token string that ``specials(text)`` finds in a message's
        content becomes its own ``literal`` piece (to be tokenized as plain text); the rest is template
        text. Without such strings the result is one piece equal to :meth:`render`."""
        if specials is None:
            return [PromptPiece(self.render(messages, thinking=thinking))]
        marks = _Marks.new(messages)
        escaped = [replace(m, content=marks.escape(m.content, specials(m.content))) for m in messages]
        text = self.render(escaped, thinking=thinking)
        return marks.split(text)


def prompt_format_for(architecture: str, template: str | None, bos_token: str, eos_token: str) -> PromptFormat:
    if template:
        return PromptFormat("gguf-template", template, bos_token, eos_token)
    kind = _FALLBACKS.get(architecture, "plain")
    return PromptFormat(f"fallback:{kind}", None, bos_token, eos_token)


@functools.lru_cache(maxsize=4)
def _compiled(template: str) -> Any:
    """Compile once per template (compiling Gemma 4's 12 kB template takes ~20 ms)."""
    return template_sandbox.compile_template(template)


def _template_error(exc: BaseException) -> ChatTemplateError:
    """One sentence for any way a chat template can fail."""
    import jinja2

    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, _Refused):
        return ChatTemplateError(f"The model's chat template refused this conversation: “{shown(str(exc), 200)}”.",
                                 detail=detail)
    if isinstance(exc, template_sandbox.TemplateLimitError):
        return ChatTemplateError(f"The model's chat template was stopped because {exc}: it may be broken or "
                                 "hostile, so choose another model file.", detail=detail)
    if isinstance(exc, jinja2.TemplateSyntaxError):
        return ChatTemplateError(f"The model's chat template is not valid Jinja ({shown(exc.message or '', 160)}, "
                                 f"line {exc.lineno}): choose another model file.", detail=detail)
    if isinstance(exc, jinja2.exceptions.SecurityError):
        return ChatTemplateError(f"The model's chat template tried something unsafe that GemmaDesk blocked "
                                 f"({shown(str(exc), 160)}): choose another model file.", detail=detail)
    if isinstance(exc, RecursionError | MemoryError):
        return ChatTemplateError("The model's chat template is too deeply nested or too large to run: choose "
                                 "another model file.", detail=detail)
    return ChatTemplateError(f"The model's chat template failed ({shown(detail, 200)}): choose another model file.",
                             detail=detail)


class _Refused(Exception):
    """``raise_exception(message)`` called by the template."""


def _strftime_now(fmt: Any) -> str:
    if not isinstance(fmt, str) or len(fmt) > 256:
        raise template_sandbox.TemplateLimitError("strftime_now was given a format longer than 256 characters")
    return datetime.now().strftime(fmt)


def _render_jinja(template: str, messages: Sequence[ChatMessage], bos: str, eos: str, thinking: bool) -> str:
    def raise_exception(message: Any = "") -> None:
        raise _Refused(str(message)[:1000])

    kwargs: dict[str, Any] = {
        "messages": [{"role": m.role, "content": m.content} for m in messages],
        "bos_token": bos,
        "eos_token": eos,
        "add_generation_prompt": True,
        "enable_thinking": thinking,
        "raise_exception": raise_exception,
        "strftime_now": _strftime_now,
    }
    input_chars = sum(len(m.content) for m in messages) + len(bos) + len(eos)
    try:
        return template_sandbox.render_limited(_compiled(template), kwargs, input_chars)
    except ChatTemplateError:
        raise
    except (Exception, RecursionError, MemoryError) as exc:
        raise _template_error(exc) from None


@dataclass(frozen=True)
class _Marks:
    """Sentinels around special-token strings inside messages, unique per render (a message cannot
    forge them): private-use characters around random digits, so case changes and trimming in a
    template leave them intact."""

    open: str
    close: str

    @classmethod
    def new(cls, messages: Sequence[ChatMessage]) -> _Marks:
        while True:
            nonce = "".join(secrets.choice("0123456789") for _ in range(16))
            marks = cls(f"\ue000{nonce}\ue001", f"\ue002{nonce}\ue003")
            if not any(marks.open in m.content or marks.close in m.content for m in messages):
                return marks

    def escape(self, text: str, found: Collection[str]) -> str:
        if not found:
            return text
        pattern = "|".join(re.escape(s) for s in sorted(set(found), key=len, reverse=True) if s)
        return re.sub(pattern, lambda m: self.open + m.group(0) + self.close, text) if pattern else text

    def split(self, text: str) -> list[PromptPiece]:
        pieces: list[PromptPiece] = []
        pos = 0
        while True:
            start = text.find(self.open, pos)
            if start < 0:
                break
            end = text.find(self.close, start)
            end = len(text) if end < 0 else end  # a template cut the marks: plain text to the end (safe side)
            pieces.append(PromptPiece(text[pos:start].replace(self.close, "")))
            pieces.append(PromptPiece(text[start + len(self.open) : end].replace(self.open, ""), literal=True))
            pos = end + len(self.close)
        pieces.append(PromptPiece(text[pos:].replace(self.close, "")))
        return [p for p in pieces if p.text]


def _render_gemma4(messages: Sequence[ChatMessage], thinking: bool) -> str:
    """Gemma 4 turn format (prompt-formatting-gemma4 docs), used only for template-less gemma4 files."""
    parts: list[str] = []
    rest = list(messages)
    system = rest.pop(0).content.strip() if rest and rest[0].role == "system" else ""
    if system or thinking:
        parts.append("<|turn>system\n" + ("<|think|>\n" if thinking else "") + system + "<turn|>\n")
    for m in rest:
        role = "model" if m.role == "assistant" else m.role
        parts.append(f"<|turn>{role}\n{m.content.strip()}<turn|>\n")
    parts.append("<|turn>model\n" + ("" if thinking else THOUGHT_OPEN + "thought\n" + THOUGHT_CLOSE))
    return "".join(parts)


def _render_gemma(messages: Sequence[ChatMessage]) -> str:
    """Gemma 2/3 turn format. These have no system role: the system text opens the first user turn."""
    parts: list[str] = []
    system = ""
    for m in messages:
        if m.role == "system":
            system = m.content.strip()
            continue
        role = "model" if m.role == "assistant" else "user"
        text = m.content.strip()
        if system and role == "user":
            text, system = f"{system}\n\n{text}", ""
        parts.append(f"<start_of_turn>{role}\n{text}<end_of_turn>\n")
    parts.append("<start_of_turn>model\n")
    return "".join(parts)


def _render_plain(messages: Sequence[ChatMessage]) -> str:
    names = {"system": "System", "user": "User", "assistant": "Assistant"}
    body = "".join(f"{names[m.role]}: {m.content.strip()}\n\n" for m in messages)
    return body + "Assistant:"


class ThoughtParser:
    """Splits streamed model text into ("thought", text) and ("answer", text) pieces.

    A thought block is ``<|channel>NAME\\n … <channel|>``; the channel name line is dropped. A
    ``<channel|>`` outside a thought block is dropped too (llama.cpp's Gemma 4 parser does the same).
    Text that might be the start of a marker is held back until the next piece decides it, so markers
    split over several tokens are still recognised. Empty thought blocks produce nothing.
    """

    def __init__(self) -> None:
        self._pending = ""
        self._in_thought = False
        self._skip_channel_name = False
        self.answer = ""
        self.thoughts = ""

    def feed(self, text: str) -> list[tuple[str, str]]:
        self._pending += text
        out: list[tuple[str, str]] = []
        while self._pending:
            if self._skip_channel_name:
                newline = self._pending.find("\n")
                close = self._pending.find(THOUGHT_CLOSE)
                if newline < 0 and close < 0:
                    break  # channel name not complete yet
                cut = newline + 1 if newline >= 0 and (close < 0 or newline < close) else close
                self._pending = self._pending[cut:]
                self._skip_channel_name = False
                continue
            markers = (THOUGHT_CLOSE,) if self._in_thought else (THOUGHT_OPEN, THOUGHT_CLOSE)
            found = [(i, m) for m in markers if (i := self._pending.find(m)) >= 0]
            if found:
                idx, marker = min(found)
                self._emit(out, self._pending[:idx])
                self._pending = self._pending[idx + len(marker) :]
                if marker == THOUGHT_OPEN or self._in_thought:
                    self._in_thought = not self._in_thought
                    self._skip_channel_name = self._in_thought
                continue  # (a stray close marker in the answer is dropped)
            keep = max(_partial_suffix(self._pending, m) for m in markers)
            self._emit(out, self._pending[: len(self._pending) - keep])
            self._pending = self._pending[len(self._pending) - keep :]
            break
        return out

    def finish(self) -> list[tuple[str, str]]:
        """Flush what was held back (the stream ended inside a possible marker)."""
        out: list[tuple[str, str]] = []
        if not self._skip_channel_name:
            self._emit(out, self._pending)
        self._pending = ""
        return out

    def _emit(self, out: list[tuple[str, str]], text: str) -> None:
        if not text:
            return
        kind = "thought" if self._in_thought else "answer"
        if kind == "answer" and not self.answer:
            text = text.lstrip("\n")  # the newline after a thought block is not part of the answer
            if not text:
                return
        if kind == "thought":
            self.thoughts += text
        else:
            self.answer += text
        out.append((kind, text))


def _partial_suffix(text: str, marker: str) -> int:
    """Length of the longest end of ``text`` that is a proper start of ``marker``."""
    for n in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:n]):
            return n
    return 0


def split_thoughts(text: str) -> tuple[str, str]:
    """(answer, thoughts) of a complete reply text; convenient for stored or one-shot text."""
    parser = ThoughtParser()
    parser.feed(text)
    parser.finish()
    return parser.answer.strip(), parser.thoughts.strip()
