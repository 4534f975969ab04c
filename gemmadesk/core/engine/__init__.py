"""GemmaDesk's LLM engine: load a GGUF with llama-cpp-python and chat with it, streaming.

llama_cpp is imported lazily (first :meth:`Engine.load`), so importing this package is cheap.

Public API::

    from gemmadesk.core.engine import Engine, EngineError
    from gemmadesk.core.types import ChatMessage, ContextTrimmed, LoadSettings, ReplyDone, SamplingParams, TextChunk

    engine = Engine()
    report = engine.load(plan.load_settings(path), on_progress=lambda f: True)   # -> LoadReport
    # (or LoadSettings(model_path=..., n_ctx=4096) by hand; return False from on_progress to cancel)
    stop = threading.Event()
    for ev in engine.chat_stream([ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")],
                                 SamplingParams(thinking=True), stop):
        match ev:
            case ContextTrimmed(dropped, notice): ...    # older turns left out; tell the user
            case TextChunk("thought", text): ...         # show apart; never send back
            case TextChunk("answer", text): ...
            case ReplyDone(answer, thoughts, stats): ... # always last, also after stop.set()
    engine.unload()

The Engine is a :class:`~gemmadesk.core.chat.backend.ChatBackend` (``info``, ``chat_stream``,
``complete_stream`` for raw prompts, ``count_prompt_tokens``); the app, the CLI and the server drive it
through :class:`~gemmadesk.core.chat.host.ModelHost`, never directly. The data types live in
:mod:`gemmadesk.core.types`; the stream types are re-exported here for the engine's callers.

- :class:`LoadReport` says what was loaded and how: layers on GPU, flash attention, KV types,
  ``chat_format`` ("gguf-template" or "fallback:gemma4|gemma|plain"), ``supports_thinking``, ``notes``
  (e.g. GPU out of memory → fewer layers; E4B flash attention turned off).
- :class:`ReplyStats`: time to first token, prompt/generated tokens per second, token counts,
  ``prompt_tokens_evaluated`` (lower than ``prompt_tokens`` when the KV prefix was reused),
  ``stop_reason`` ("eos" | "length" | "stopped" | "context_full"), ``trimmed_messages``.
- Errors are :class:`EngineError` subclasses whose ``str()`` is a user-facing sentence:
  ModelFileError (missing, not GGUF, truncated), UnsupportedModelError (unknown architecture),
  ModelTooLargeError, ModelLoadError, LoadCancelled, NotLoadedError, ContextOverflowError,
  GenerationError, ChatTemplateError (the GGUF's chat template failed or hit a limit: see
  docs/hostile-input.md). After any of them the Engine is still usable.
- Multi-turn: pass the whole conversation each time (without thoughts); the cached KV prefix is reused.
- Context overflow rule: see :mod:`gemmadesk.core.engine.trim`.
- Images and audio: ``ChatMessage("user", "What is this?", (Attachment("image", path, sha256, mime),))``
  with ``settings.mmproj_path`` set at load (``LoadReport.supports_images`` / ``supports_audio``); a
  refusal is an :class:`AttachmentError`. See :mod:`gemmadesk.core.engine.multimodal`.
"""

from gemmadesk.core.engine.chatformat import PromptFormat, ThoughtParser, split_thoughts
from gemmadesk.core.engine.engine import Engine, default_threads
from gemmadesk.core.engine.errors import (
    AttachmentError,
    ChatTemplateError,
    ContextOverflowError,
    EngineError,
    GenerationError,
    LoadCancelled,
    ModelFileError,
    ModelLoadError,
    ModelTooLargeError,
    NotLoadedError,
    UnsupportedModelError,
)
from gemmadesk.core.engine.gguf_meta import GGUFInfo, read_gguf_info
from gemmadesk.core.types import (
    Attachment,
    ChatMessage,
    ContextTrimmed,
    LoadReport,
    LoadSettings,
    ReplyDone,
    ReplyStats,
    SamplingParams,
    StreamEvent,
    TextChunk,
)

# The name earlier code used for hand-written load settings; there is one type, types.LoadSettings.
DirectLoadSettings = LoadSettings

__all__ = [
    "Attachment",
    "AttachmentError",
    "ChatMessage",
    "ChatTemplateError",
    "ContextOverflowError",
    "ContextTrimmed",
    "DirectLoadSettings",
    "Engine",
    "EngineError",
    "GGUFInfo",
    "GenerationError",
    "LoadCancelled",
    "LoadReport",
    "LoadSettings",
    "ModelFileError",
    "ModelLoadError",
    "ModelTooLargeError",
    "NotLoadedError",
    "PromptFormat",
    "ReplyDone",
    "ReplyStats",
    "SamplingParams",
    "StreamEvent",
    "TextChunk",
    "ThoughtParser",
    "UnsupportedModelError",
    "default_threads",
    "read_gguf_info",
    "split_thoughts",
]
