"""Plain data every layer shares: messages, sampling, load settings and report, stream events.

This is the leaf of GemmaDesk's layers (an import-linter contract enforces it): it imports nothing from
``gemmadesk`` and nothing heavy, so the window, the command line, the server, the history and the engine
can all use these types without pulling each other in.

Enum-like strings are :class:`~enum.StrEnum` members: they compare equal to (and serialise as) their
plain string values, so ``stats.stop_reason == "stopped"`` and JSON written by older versions keep working.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]


def _plain(value: Any) -> Any:
    if isinstance(value, StrEnum):
        return str(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def as_json(obj: Any) -> dict[str, Any]:
    """A dataclass as plain JSON data: enum members as their strings, tuples as lists, paths as strings."""
    return {key: _plain(value) for key, value in asdict(obj).items()}


class KvType(StrEnum):
    """Element type of llama.cpp's KV cache."""

    F16 = "f16"
    Q8_0 = "q8_0"
    Q4_0 = "q4_0"


class FlashAttnMode(StrEnum):
    """The user's flash-attention choice; ``AUTO`` lets :mod:`gemmadesk.core.attention` decide."""

    AUTO = "auto"
    ON = "on"
    OFF = "off"


class StopReason(StrEnum):
    """Why a reply ended."""

    EOS = "eos"  # the model ended its turn
    LENGTH = "length"  # max_tokens reached
    STOPPED = "stopped"  # the user (or a client) asked to stop
    CONTEXT_FULL = "context_full"  # the context window filled up
    STOP_STRING = "stop_string"  # one of SamplingParams.stop appeared in the answer


class ChunkKind(StrEnum):
    ANSWER = "answer"  # shown as the reply
    THOUGHT = "thought"  # shown apart, never fed back to the model


class ModelSource(StrEnum):
    """How an installed model came to be listed."""

    DOWNLOAD = "download"  # downloaded by GemmaDesk into its models folder
    IMPORT = "import"  # the user's own file, referenced where it is
    HF_CACHE = "hf-cache"  # found in (or downloaded into) the Hugging Face cache

    @classmethod
    def parse(cls, value: object) -> ModelSource:
        """A manifest's value; anything unknown counts as a download (the most cautious reading)."""
        return cls(value) if isinstance(value, str) and value in set(cls) else cls.DOWNLOAD


class AttachmentKind(StrEnum):
    IMAGE = "image"
    AUDIO = "audio"


@dataclass(frozen=True)
class Attachment:
    """An image or audio file attached to a user message, as stored (content-addressed) by
    :class:`gemmadesk.core.attachments.AttachmentStore`. The engine re-checks the file's kind and sha256
    before the model sees it."""

    kind: AttachmentKind
    path: Path
    sha256: str
    mime: str
    # The file's name when it was attached: shown to the person, never used as a path, not part of equality
    # (the same content attached under two names is one attachment).
    name: str = field(default="", compare=False)

    @property
    def display_name(self) -> str:
        return self.name or Path(self.path).name


@dataclass(frozen=True)
class ChatMessage:
    """One turn as the model sees it. Thoughts are deliberately not part of it: they are never fed back."""

    role: Role
    content: str
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True)
class SamplingParams:
    """Gemma's recommended defaults (model card): temperature 1.0, top_p 0.95, top_k 64.

    ``stop``: the answer ends before the first of these strings (OpenAI's ``stop``). ``seed`` None: a new
    random seed per reply."""

    temperature: float = 1.0
    top_p: float = 0.95
    top_k: int = 64
    seed: int | None = None
    min_p: float = 0.0
    repeat_penalty: float = 1.0
    max_tokens: int = 2048
    stop: tuple[str, ...] = ()
    thinking: bool = False

    def to_dict(self) -> dict[str, Any]:
        return as_json(self)


@dataclass(frozen=True)
class LoadSettings:
    """Everything the engine passes to ``llama_cpp.Llama`` (besides the fixed ``swa_full=False``).

    Made by ``fit.Plan.load_settings``, or by hand (tests, the CLI for a file without a plan) with these
    defaults: CPU only, 4096 tokens of context."""

    model_path: str
    n_ctx: int = 4096
    n_gpu_layers: int = 0  # llama.cpp order: the output layer first, then the last layers; -1 = all
    flash_attn: bool = False
    type_k: KvType = KvType.F16
    type_v: KvType = KvType.F16
    n_threads: int | None = None
    n_batch: int = 512
    n_ubatch: int = 512
    main_gpu: int = 0
    mmproj_path: str | None = None


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
        return as_json(self)


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
    stop_reason: StopReason = StopReason.EOS
    trimmed_messages: int = 0

    def to_dict(self) -> dict[str, Any]:
        return as_json(self)


@dataclass(frozen=True)
class BackendInfo:
    """What a chat backend (the local engine, a remote server) offers, as a session needs to know it."""

    name: str  # the loaded model's name; "" when nothing is loaded
    n_ctx: int  # its context window in tokens (0: unknown / nothing loaded)
    supports_thinking: bool = False
    supports_images: bool = False
    supports_audio: bool = False
    is_remote: bool = False


# ------------------------------------------------------------------ stream events (chat and completion)
@dataclass(frozen=True)
class TextChunk:
    """A piece of the reply: ``kind`` "answer" (shown) or "thought" (shown apart, never fed back)."""

    kind: ChunkKind
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


# ------------------------------------------------------------------ load events (ModelHost.load)
@dataclass(frozen=True)
class LoadProgress:
    fraction: float  # 0.0 … 1.0


@dataclass(frozen=True)
class Loaded:
    report: LoadReport


LoadEvent = LoadProgress | Loaded
