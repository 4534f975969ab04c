"""Plain data the engine takes and gives: messages, sampling, load settings/report, stream events.

Nothing here imports llama_cpp, so the GUI can import these types at start-up for free.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from gemmadesk.core.fit import LoadSettings
from gemmadesk.core.media import Attachment as Attachment  # re-exported: a message's images/audio

Role = Literal["system", "user", "assistant"]
StopReason = Literal["eos", "length", "stopped", "context_full"]
KV_TYPES = ("f16", "q8_0", "q4_0")


# One settings type for every load: ``fit.LoadSettings`` (built from a fit plan, or written by hand with
# its defaults: CPU only, 4096 tokens). The two names below are what the engine's callers import.
LoadSettingsLike = LoadSettings
DirectLoadSettings = LoadSettings


@dataclass(frozen=True)
class ChatMessage:
    """One turn as the model sees it. Thoughts are deliberately not part of it: they are never fed back.
    ``attachments`` (images, audio) go before the text, as Gemma 4's model card recommends."""

    role: Role
    content: str
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True)
class SamplingParams:
    """Gemma's recommended defaults (model card): temperature 1.0, top_p 0.95, top_k 64."""

    temperature: float = 1.0
    top_p: float = 0.95
    top_k: int = 64
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    max_tokens: int = 2048
    seed: int | None = None
    thinking: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LoadReport:
    """What was actually loaded, and how (shown in the UI, stored with each reply)."""

    model_path: str
    architecture: str
    model_name: str
    file_bytes: int
    n_ctx: int
    n_ctx_train: int
    n_layers: int
    n_gpu_layers: int
    flash_attn: bool
    type_k: str
    type_v: str
    n_threads: int | None
    chat_format: str  # "gguf-template" or "fallback:<format>"
    supports_thinking: bool
    load_seconds: float
    notes: tuple[str, ...] = ()
    mmproj_path: str | None = None  # the projector that loaded (images/audio), if any
    supports_images: bool = False
    supports_audio: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ReplyStats:
    """Per-reply numbers. ``prompt_tokens_evaluated`` < ``prompt_tokens`` means the KV prefix was reused."""

    prompt_tokens: int = 0
    prompt_tokens_evaluated: int = 0
    completion_tokens: int = 0
    time_to_first_token_s: float = 0.0
    prompt_tokens_per_s: float = 0.0
    generated_tokens_per_s: float = 0.0
    total_s: float = 0.0
    stop_reason: StopReason = "eos"
    trimmed_messages: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TextChunk:
    """A piece of the reply: ``kind`` "answer" (shown) or "thought" (shown apart, never fed back)."""

    kind: Literal["answer", "thought"]
    text: str


@dataclass(frozen=True)
class ContextTrimmed:
    """Older turns were left out of the prompt so the conversation fits; ``notice`` says so in words."""

    dropped_messages: int
    notice: str


@dataclass(frozen=True)
class ReplyDone:
    """The last event of every stream (also after a stop): the whole answer, thoughts and stats."""

    answer: str
    thoughts: str
    stats: ReplyStats = field(default_factory=ReplyStats)


StreamEvent = TextChunk | ContextTrimmed | ReplyDone
