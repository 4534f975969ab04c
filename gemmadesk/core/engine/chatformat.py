"""Turning a conversation into prompt text, and the model's output back into answer and thoughts.

Prompt: the model's own GGUF chat template (``tokenizer.chat_template``, Jinja) is used whenever it is
present, rendered like Hugging Face/llama-cpp-python do (sandboxed, ``bos_token``,
``add_generation_prompt``, ``enable_thinking``). A model without a template (base models such as the
Gemma 3 270M test model) gets a fallback chosen by architecture; :attr:`PromptFormat.source` says which.

Gemma 4 specifics handled here:
- thinking is switched on with ``enable_thinking=True`` (the template then puts ``<|think|>`` at the top
  of the system turn); the fallback writes ``<|think|>`` itself;
- thoughts arrive as ``<|channel>thought\\n … <channel|>`` and are split from the answer by
  :class:`ThoughtParser` (which works on a stream, marker split across tokens included);
- thoughts are never put back into the history: :class:`ChatMessage` has no place for them.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gemmadesk.core.types import ChatMessage

THOUGHT_OPEN = "<|channel>"
THOUGHT_CLOSE = "<channel|>"
# Text that ends a turn even if the tokenizer does not flag it as end-of-generation.
TURN_END_MARKERS = ("<turn|>", "<end_of_turn>", "<eos>")

_FALLBACKS: dict[str, str] = {"gemma4": "gemma4", "gemma3": "gemma", "gemma2": "gemma", "gemma": "gemma"}


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
        template does; the engine adds BOS itself when it is missing and the model wants one."""
        if self.template is not None:
            return _render_jinja(self.template, messages, self.bos_token, self.eos_token, thinking)
        kind = self.source.removeprefix("fallback:")
        if kind == "gemma4":
            return _render_gemma4(messages, thinking)
        if kind == "gemma":
            return _render_gemma(messages)
        return _render_plain(messages)


def prompt_format_for(architecture: str, template: str | None, bos_token: str, eos_token: str) -> PromptFormat:
    if template:
        return PromptFormat("gguf-template", template, bos_token, eos_token)
    kind = _FALLBACKS.get(architecture, "plain")
    return PromptFormat(f"fallback:{kind}", None, bos_token, eos_token)


@functools.lru_cache(maxsize=4)
def _compiled(template: str) -> Any:
    """Compile once per template (compiling Gemma 4's 12 kB template takes ~20 ms)."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        loader=jinja2.BaseLoader(),
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=["jinja2.ext.loopcontrols"],
    )
    env.filters["tojson"] = lambda x, indent=None, **_: json.dumps(x, ensure_ascii=False, indent=indent)
    return env.from_string(template)


def _render_jinja(template: str, messages: Sequence[ChatMessage], bos: str, eos: str, thinking: bool) -> str:
    import jinja2

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    kwargs: dict[str, Any] = {
        "messages": [{"role": m.role, "content": m.content} for m in messages],
        "bos_token": bos,
        "eos_token": eos,
        "add_generation_prompt": True,
        "enable_thinking": thinking,
        "raise_exception": raise_exception,
        "strftime_now": lambda fmt: datetime.now().strftime(fmt),
    }
    return str(_compiled(template).render(**kwargs))


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

    A thought block is ``<|channel>NAME\\n … <channel|>``; the channel name line is dropped. Text that
    might be the start of a marker is held back until the next piece decides it, so markers split over
    several tokens are still recognised. Empty thought blocks produce nothing.
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
            marker = THOUGHT_CLOSE if self._in_thought else THOUGHT_OPEN
            if self._skip_channel_name:
                newline = self._pending.find("\n")
                close = self._pending.find(THOUGHT_CLOSE)
                if newline < 0 and close < 0:
                    break  # channel name not complete yet
                cut = newline + 1 if newline >= 0 and (close < 0 or newline < close) else close
                self._pending = self._pending[cut:]
                self._skip_channel_name = False
                continue
            idx = self._pending.find(marker)
            if idx >= 0:
                self._emit(out, self._pending[:idx])
                self._pending = self._pending[idx + len(marker) :]
                self._in_thought = not self._in_thought
                self._skip_channel_name = self._in_thought
                continue
            keep = _partial_suffix(self._pending, marker)
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
