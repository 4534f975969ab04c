"""The Engine: one loaded GGUF model and streaming chat on it (see the package docstring for the API)."""

from __future__ import annotations

import codecs
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from gemmadesk.core.attention import choose_attention, flash_attn_crashes_on_gpu
from gemmadesk.core.engine.chatformat import TURN_END_MARKERS, PromptFormat, ThoughtParser, prompt_format_for
from gemmadesk.core.engine.errors import (
    AttachmentError,
    ContextOverflowError,
    EngineError,
    GenerationError,
    LoadCancelled,
    ModelLoadError,
    ModelTooLargeError,
    NotLoadedError,
    UnsupportedModelError,
)
from gemmadesk.core.engine.gguf_meta import GGUFInfo, check_model_file
from gemmadesk.core.engine.llama_adapter import (
    NativeModel,
    Sampling,
    device_sampling,
    llama_module,
    load_progress,
    log_mark,
    log_since,
    templates_not_compiled,
)
from gemmadesk.core.engine.multimodal import Projector, ProjectorError
from gemmadesk.core.engine.prompt_tokens import PromptTokenizer
from gemmadesk.core.engine.trim import fit_messages
from gemmadesk.core.types import (
    BackendInfo,
    ChatMessage,
    ChunkKind,
    ContextTrimmed,
    KvType,
    LoadReport,
    LoadSettings,
    ReplyDone,
    ReplyStats,
    SamplingParams,
    StopReason,
    StreamEvent,
    TextChunk,
)
from gemmadesk.core.units import human_bytes

log = logging.getLogger(__name__)

_OOM = re.compile(r"out of memory|failed to allocate|unable to allocate|alloc\w* .*failed|cudaMalloc", re.I)
_UNKNOWN_ARCH = re.compile(r"unknown model architecture: '([^']*)'")
_GGML_TYPES = {KvType.F16: "GGML_TYPE_F16", KvType.Q8_0: "GGML_TYPE_Q8_0", KvType.Q4_0: "GGML_TYPE_Q4_0"}
MIN_REPLY_TOKENS = 64
_Part = TypeVar("_Part")


def _loaded(part: _Part | None) -> _Part:
    """``part`` of the loaded model, or the error that says no model is loaded."""
    if part is None:
        raise NotLoadedError("No model is loaded. Load a model first.")
    return part


def _ggml_type(name: str, lib: Any) -> int:
    if name not in _GGML_TYPES:
        raise ModelLoadError(f"Unknown KV-cache type “{name}”; use one of {', '.join(KvType)}.")
    return int(getattr(lib, _GGML_TYPES[KvType(name)]))


def default_threads() -> int:
    """Physical cores but one (``hardware.decode_threads``): hyper-threads only add contention, and one
    core left free keeps a busy neighbour process from stalling every token (benchmarks/bench_threads.py)."""
    import psutil

    from gemmadesk.core.hardware import decode_threads

    return decode_threads(psutil.cpu_count(logical=False) or os.cpu_count() or 1)


class Engine:
    """Owns at most one ``llama_cpp.Llama``. Not thread-safe: use it from one thread (the ModelHost's worker).

    Implements :class:`~gemmadesk.core.chat.backend.ChatBackend`."""

    def __init__(self) -> None:
        self._llm: Any = None
        self._native: NativeModel | None = None
        self._format: PromptFormat | None = None
        self._report: LoadReport | None = None
        self._projector: Projector | None = None
        self._projector_error = ""
        self._prompt_tokens: PromptTokenizer | None = None

    # ----------------------------------------------------------------- loading
    @property
    def report(self) -> LoadReport | None:
        return self._report

    @property
    def is_loaded(self) -> bool:
        return self._llm is not None

    @property
    def info(self) -> BackendInfo:
        """What a chat session needs to know about the loaded model (ChatBackend)."""
        report = self._report
        if report is None:
            return BackendInfo(name="", n_ctx=0)
        return BackendInfo(
            report.model_name, report.n_ctx, supports_thinking=report.supports_thinking,
            supports_images=report.supports_images, supports_audio=report.supports_audio,
        )  # fmt: skip

    def load(self, settings: LoadSettings, on_progress: Callable[[float], bool] | None = None) -> LoadReport:
        """Load ``settings.model_path``. ``on_progress(fraction)`` returning False cancels.

        The file is checked first (a bad file never unloads the current model); then the current model is
        unloaded and the new one loaded. If the GPU runs out of memory, the load is retried with half the
        layers, then on the CPU only; ``LoadReport.notes`` says so. Raises an :class:`EngineError`."""
        lib = llama_module()  # before anything that might import numpy (see gguf_file)
        info = check_model_file(settings.model_path)  # regular, complete, loadable: before llama.cpp opens it
        notes: list[str] = []
        n_model_layers = info.arch_int("block_count")
        requested_layers = settings.n_gpu_layers
        if requested_layers != 0 and not lib.llama_supports_gpu_offload():
            notes.append("This llama.cpp build cannot use a GPU; the model runs on the CPU.")
            requested_layers = 0
        self._check_memory(info, requested_layers)
        flash_attn, type_k, type_v, attention_notes = _resolve_attention(info, settings, requested_layers)
        notes += attention_notes
        self.unload()
        layer_tries = _layer_tries(requested_layers, n_model_layers)
        started = time.perf_counter()
        threads = settings.n_threads or default_threads()
        for i, n_layers in enumerate(layer_tries):
            try:
                self._llm = self._construct(lib, settings, n_layers, (flash_attn, type_k, type_v), threads, on_progress)
            except _OutOfMemory as exc:
                if i + 1 < len(layer_tries):
                    nxt = layer_tries[i + 1]
                    where = f"{nxt} layers on the GPU" if nxt else "the CPU only"
                    tried = "all" if n_layers < 0 else str(n_layers)
                    notes.append(f"Out of GPU memory with {tried} layers on the GPU; loaded with {where}.")
                    continue
                raise ModelTooLargeError(
                    f"“{info.name}” does not fit in this machine's memory with a context of "
                    f"{settings.n_ctx:,} tokens. Choose a smaller model or a shorter context.",
                    detail=exc.detail,
                ) from None
            else:
                break
        output_on_gpu = bool(lib.llama_supports_gpu_offload()) and (n_layers < 0 or n_layers > n_model_layers)
        self._native = NativeModel(self._llm, lib, sample_on_device=device_sampling(output_on_gpu))
        self._format = self._prompt_format(info)
        notes += self._load_projector(settings, n_layers, threads, flash_attn)
        self._report = LoadReport(
            model_path=str(settings.model_path),
            architecture=info.architecture,
            model_name=info.name,
            file_bytes=info.file_bytes,
            n_ctx=int(self._llm.n_ctx()),
            n_ctx_train=self._native.n_ctx_train,
            n_layers=info.arch_int("block_count"),
            n_gpu_layers=n_model_layers + 1 if n_layers < 0 else min(n_layers, n_model_layers + 1),
            flash_attn=flash_attn,
            type_k=type_k,
            type_v=type_v,
            n_threads=threads,
            chat_format=self._format.source,
            supports_thinking=self._format.supports_thinking,
            load_seconds=time.perf_counter() - started,
            notes=tuple(notes),
            mmproj_path=str(settings.mmproj_path) if self._projector else None,
            supports_images=bool(self._projector and self._projector.supports_images),
            supports_audio=bool(self._projector and self._projector.supports_audio),
        )
        log.info("loaded %s: %s", info.name, self._report)
        return self._report

    def _check_memory(self, info: GGUFInfo, n_gpu_layers: int) -> None:
        """Refuse a CPU load of a file larger than all RAM before llama.cpp tries (and swaps)."""
        import psutil

        ram = psutil.virtual_memory().total
        if n_gpu_layers == 0 and info.file_bytes > ram:
            raise ModelTooLargeError(
                f"“{info.name}” needs at least {human_bytes(info.file_bytes)} of memory; this machine has "
                f"{human_bytes(ram)} in all. Choose a smaller model."
            )

    def _construct(
        self,
        lib: Any,
        settings: LoadSettings,
        n_gpu_layers: int,
        attention: tuple[bool, str, str],
        threads: int,
        on_progress: Callable[[float], bool] | None,
    ) -> Any:
        flash_attn, type_k, type_v = attention
        cancelled = threading.Event()

        def progress(fraction: float) -> bool:
            keep_going = True if on_progress is None else on_progress(fraction) is not False
            if not keep_going:
                cancelled.set()
            return keep_going

        mark = log_mark()
        try:
            with load_progress(progress), templates_not_compiled():  # GemmaDesk renders templates itself
                return lib.Llama(
                    model_path=str(settings.model_path),
                    n_gpu_layers=n_gpu_layers,
                    main_gpu=settings.main_gpu,
                    n_ctx=settings.n_ctx,
                    n_batch=settings.n_batch,
                    n_ubatch=settings.n_ubatch,
                    n_threads=threads,
                    n_threads_batch=threads,
                    flash_attn=flash_attn,
                    swa_full=False,
                    type_k=_ggml_type(type_k, lib),
                    type_v=_ggml_type(type_v, lib),
                    logits_all=False,
                    verbose=False,
                )
        except EngineError:
            raise
        except Exception as exc:
            lines = log_since(mark)
            detail = "\n".join([*lines[-15:], repr(exc)])
            if cancelled.is_set():
                raise LoadCancelled("Loading was cancelled.", detail=detail) from None
            raise _classify_load_failure(settings, lines, exc, detail) from None

    def _prompt_format(self, info: GGUFInfo) -> PromptFormat:
        llm = self._llm
        bos = llm.detokenize([llm.token_bos()], special=True).decode("utf-8", "replace")
        eos = llm.detokenize([llm.token_eos()], special=True).decode("utf-8", "replace")
        return prompt_format_for(info.architecture, info.chat_template, bos, eos)

    def _load_projector(
        self, settings: LoadSettings, n_gpu_layers: int, threads: int, flash_attn: bool
    ) -> list[str]:
        """Load the vision/audio projector (mmproj) if the settings name one; on the GPU when the model's
        layers are. A projector that fails leaves the model loaded for text, with a note saying why."""
        self._projector, self._projector_error = None, ""
        if not settings.mmproj_path:
            return []
        use_gpu = n_gpu_layers != 0 and bool(llama_module().llama_supports_gpu_offload())
        for on_gpu in dict.fromkeys([use_gpu, False]):
            try:
                self._projector = Projector.load(
                    self._llm, settings.mmproj_path, use_gpu=on_gpu, n_threads=threads, flash_attn=flash_attn
                )
            except ProjectorError as exc:
                log.warning("projector not loaded (gpu=%s): %s %s", on_gpu, exc, exc.detail)
                self._projector_error = str(exc)
                if on_gpu and exc.out_of_memory:
                    continue  # the GPU is full: the encoder can still run on the CPU
                return [f"{exc} Images and audio are off; text chat works."]
            self._projector_error = ""
            return ["The projector runs on the CPU: the GPU had no room left for it."] if use_gpu and not on_gpu else []
        return [f"{self._projector_error} Images and audio are off; text chat works."]

    @property
    def projector(self) -> Projector | None:
        """The loaded projector (images/audio), or None."""
        return self._projector

    def unload(self) -> None:
        """Free the model, its projector and its context (idempotent)."""
        projector, self._projector, self._projector_error = self._projector, None, ""
        if projector is not None:
            projector.close()
        llm, self._llm, self._format, self._report = self._llm, None, None, None
        self._prompt_tokens = None
        native, self._native = self._native, None
        if native is not None:
            native.close()
        if llm is not None:
            llm.close()

    # ----------------------------------------------------------------- chatting
    @property
    def prompt_format(self) -> PromptFormat:
        if self._format is None:
            raise NotLoadedError("No model is loaded.")
        return self._format

    def tokenize_prompt(self, messages: Sequence[ChatMessage], thinking: bool = False) -> list[int]:
        """The exact tokens the model is given for ``messages`` (BOS added if the model wants it). Special-token
        strings typed or pasted into a message are plain text (see :mod:`prompt_tokens`)."""
        return self._tokenizer().tokenize(self.prompt_format, messages, thinking)

    def chat_stream(
        self,
        messages: Sequence[ChatMessage],
        params: SamplingParams | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[StreamEvent]:
        """Stream a reply to ``messages`` (the last one is the user's new message).

        Yields :class:`ContextTrimmed` first if older turns had to be left out, then :class:`TextChunk`
        pieces (answer or thought), and always ends with one :class:`ReplyDone` — also when ``stop`` is
        set (checked before every token; ``stats.stop_reason == "stopped"``). The KV cache of the previous
        reply is reused for the common prompt prefix."""
        llm = self._require()
        params = params or SamplingParams()
        started = time.perf_counter()
        n_ctx = int(llm.n_ctx())
        if any(m.attachments for m in messages):
            yield from self._media_stream(messages, params, stop, started, n_ctx)
            return
        fitted = fit_messages(
            messages,
            lambda ms: self.tokenize_prompt(ms, params.thinking),
            n_ctx,
            params.max_tokens,
            MIN_REPLY_TOKENS,
        )
        if fitted.dropped:
            yield ContextTrimmed(fitted.dropped, fitted.notice)
        tokens = fitted.tokens
        stats = ReplyStats(prompt_tokens=len(tokens), trimmed_messages=fitted.dropped)
        stats.prompt_tokens_evaluated = len(tokens) - self._prepare_prefix_reuse(tokens)
        budget = min(params.max_tokens, n_ctx - len(tokens))
        yield from self._generate(tokens, params, stop, stats, budget, started)

    def _media_stream(
        self, messages: Sequence[ChatMessage], params: SamplingParams, stop: threading.Event | None,
        started: float, n_ctx: int,
    ) -> Iterator[StreamEvent]:
        """:meth:`chat_stream` for a conversation with images or audio (see :mod:`.multimodal`)."""
        projector = self._require_projector()
        prompt = projector.prepare(
            messages, lambda ms, marker: self._media_prompt_segments(ms, params.thinking, marker), n_ctx,
            params.max_tokens, MIN_REPLY_TOKENS, stop,
        )
        if prompt.fitted.dropped:
            yield ContextTrimmed(prompt.fitted.dropped, prompt.fitted.notice)
        tokens = prompt.tokens
        stats = ReplyStats(prompt_tokens=len(tokens), trimmed_messages=prompt.fitted.dropped,
                           prompt_tokens_evaluated=prompt.evaluated)
        if prompt.stopped:
            yield ReplyDone("", "", _finish(stats, StopReason.STOPPED, started, 0.0, 0))
            return
        budget = min(params.max_tokens, n_ctx - len(tokens))
        # The projector evaluated every prompt position but the last (media embeddings included).
        yield from self._generate(tokens, params, stop, stats, budget, started, pending=tokens[-1:])

    def _media_prompt_segments(self, messages: Sequence[ChatMessage], thinking: bool, marker: str) -> list[list[int]]:
        """The prompt's text tokens cut at each media ``marker``, tokenized as :meth:`tokenize_prompt` does
        (special-token strings typed into a message stay plain text; BOS first when the model wants it)."""
        return self._tokenizer().segments(self.prompt_format, messages, thinking, marker)

    def _tokenizer(self) -> PromptTokenizer:
        if self._prompt_tokens is None:
            self._prompt_tokens = PromptTokenizer(self._require(), llama_module())
        return self._prompt_tokens

    def _require_projector(self) -> Projector:
        if self._projector is not None:
            return self._projector
        name = self._report.model_name if self._report else "This model"
        if self._projector_error:
            raise AttachmentError(f"Images and audio are off for “{name}”: {self._projector_error}")
        if self._report and self._report.architecture != "gemma4":
            raise AttachmentError(
                f"“{name}” reads text only; load a Gemma 4 model with its projector for images and audio."
            )
        raise AttachmentError(
            f"“{name}” was loaded without its projector (mmproj), so it cannot see images or hear audio. "
            "Download the projector in the model list, then load the model again."
        )
    def complete_stream(
        self,
        prompt: str,
        params: SamplingParams | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[StreamEvent]:
        """Continue a raw ``prompt`` (no chat template; control tokens in it are parsed, BOS added if the
        model wants one): :class:`TextChunk` answer pieces, then one :class:`ReplyDone`, as in
        :meth:`chat_stream`. For ``/v1/completions``."""
        llm = self._require()
        params = params or SamplingParams()
        started = time.perf_counter()
        n_ctx = int(llm.n_ctx())
        tokens: list[int] = list(llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True))
        if not tokens:
            raise GenerationError("The prompt is empty: there is nothing to continue.")
        if len(tokens) > n_ctx - MIN_REPLY_TOKENS:
            raise ContextOverflowError(
                f"The prompt is too long for this model's context window: it needs {len(tokens):,} tokens and "
                f"the window holds {n_ctx:,} (with room for a reply). Shorten it or load a longer context."
            )
        stats = ReplyStats(prompt_tokens=len(tokens))
        stats.prompt_tokens_evaluated = len(tokens) - self._prepare_prefix_reuse(tokens)
        budget = min(params.max_tokens, n_ctx - len(tokens))
        yield from self._generate(tokens, params, stop, stats, budget, started, raw=True)

    def count_prompt_tokens(self, messages: Sequence[ChatMessage], params: SamplingParams | None = None) -> int:
        """How many tokens the prompt for ``messages`` takes (before any trimming), image and audio included."""
        thinking = (params or SamplingParams()).thinking
        if any(m.attachments for m in messages):
            return self._require_projector().count(
                messages, lambda ms, marker: self._media_prompt_segments(ms, thinking, marker))
        return len(self.tokenize_prompt(messages, thinking))

    def count_text_tokens(self, prompt: str) -> int:
        """How many tokens a raw ``prompt`` takes in :meth:`complete_stream` (BOS included)."""
        return len(self._require().tokenize(prompt.encode("utf-8"), add_bos=True, special=True))

    def _require(self) -> Any:
        return _loaded(self._llm)

    def _native_model(self) -> NativeModel:
        return _loaded(self._native)

    def _prepare_prefix_reuse(self, tokens: list[int]) -> int:
        """Keep the cached KV of the longest common prefix with ``tokens`` (at least one token is always
        evaluated, for fresh logits) and return its length; forces a full re-evaluation when a
        sliding-window cache no longer holds the window the first new token needs (as llama-server does)."""
        native = self._native_model()
        common = 0
        for a, b in zip(native.cached_tokens, tokens, strict=False):
            if a != b:
                break
            common += 1
        reuse = common - 1 if common == len(tokens) else common
        if reuse > 0:
            n_swa = native.n_swa
            if n_swa > 0 and native.swa_pos_min() > max(0, reuse - n_swa):
                reuse = 0
        return native.keep_prefix(reuse)

    def _generate(
        self,
        tokens: list[int],
        params: SamplingParams,
        stop: threading.Event | None,
        stats: ReplyStats,
        budget: int,
        started: float,
        raw: bool = False,
        pending: Sequence[int] | None = None,
    ) -> Iterator[StreamEvent]:
        """Sample up to ``budget`` tokens after ``tokens`` (the whole prompt). ``pending``: the prompt tokens
        not in the KV cache yet (default: the last ``stats.prompt_tokens_evaluated``, as
        :meth:`_prepare_prefix_reuse` left it; the media path evaluates all but the last token itself)."""
        if pending is None:
            pending = tokens[len(tokens) - stats.prompt_tokens_evaluated :]
        native = self._native_model()
        sampling = Sampling(
            temperature=params.temperature,
            top_k=params.top_k,
            top_p=params.top_p,
            min_p=params.min_p,
            repeat_penalty=params.repeat_penalty,
            seed=params.seed,
        )
        reply = _ReplyText(native, parse_thoughts=not raw)
        reason = StopReason.LENGTH
        first_at = 0.0
        n_out = 0
        generator = native.generate(pending, sampling, budget, stop)
        try:
            while n_out < budget:
                if stop is not None and stop.is_set():
                    reason = StopReason.STOPPED
                    break
                try:
                    token = next(generator)
                except StopIteration:  # cannot happen before n_out == budget; kept for safety
                    reason = StopReason.EOS
                    break
                except Exception as exc:  # DecodeError, or anything llama.cpp's bindings raise
                    raise GenerationError("The model failed while generating a reply.", detail=repr(exc)) from exc
                if n_out == 0:
                    first_at = time.perf_counter()
                n_out += 1
                chunks = reply.push(token)
                if chunks is None:
                    reason = StopReason.EOS
                    break
                yield from chunks
            else:
                reason = StopReason.CONTEXT_FULL if budget < params.max_tokens else StopReason.LENGTH
        finally:
            generator.close()
        yield from reply.finish()
        yield ReplyDone(reply.answer, reply.thoughts, _finish(stats, reason, started, first_at, n_out))

    def decode_reply(self, tokens: Sequence[int]) -> tuple[list[TextChunk], str, str]:
        """Turn a reply's token ids into (chunks, answer, thoughts) exactly as :meth:`chat_stream` does
        (special tokens kept for the thought parser, end-of-turn stops it)."""
        self._require()
        reply = _ReplyText(self._native_model())
        chunks: list[TextChunk] = []
        for token in tokens:
            pushed = reply.push(token)
            if pushed is None:
                break
            chunks += pushed
        chunks += reply.finish()
        return chunks, reply.answer, reply.thoughts

    def tokenize(self, text: str, special: bool = True) -> list[int]:
        """Token ids of ``text`` without BOS; ``special`` parses control tokens such as ``<|channel>``."""
        return list(self._require().tokenize(text.encode("utf-8"), add_bos=False, special=special))


class _ReplyText:
    """Token ids → UTF-8 text → answer/thought pieces, one token at a time."""

    def __init__(self, native: NativeModel, parse_thoughts: bool = True) -> None:
        self._is_eog = native.is_eog
        self._bytes = native.token_bytes
        self._decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode
        self._parser = ThoughtParser() if parse_thoughts else None
        self._raw = ""

    def push(self, token: int) -> list[TextChunk] | None:
        """The pieces this token completes, or None if it ends the turn."""
        if self._is_eog(token):
            return None
        piece = self._decode(self._bytes(token))
        if piece in TURN_END_MARKERS:
            return None
        return self._pieces(piece)

    def finish(self) -> list[TextChunk]:
        tail = self._pieces(self._decode(b"", final=True))
        if self._parser is not None:
            tail += [TextChunk(ChunkKind(kind), text) for kind, text in self._parser.finish()]
        return tail

    def _pieces(self, piece: str) -> list[TextChunk]:
        if self._parser is None:  # a raw completion: all of it is answer, as generated
            self._raw += piece
            return [TextChunk(ChunkKind.ANSWER, piece)] if piece else []
        return [TextChunk(ChunkKind(kind), text) for kind, text in self._parser.feed(piece)]

    @property
    def answer(self) -> str:
        return self._raw if self._parser is None else self._parser.answer.strip()

    @property
    def thoughts(self) -> str:
        return "" if self._parser is None else self._parser.thoughts.strip()


def _resolve_attention(
    info: GGUFInfo, settings: LoadSettings, n_gpu_layers: int
) -> tuple[bool, KvType, KvType, list[str]]:
    """(flash_attn, type_k, type_v, notes) after :func:`gemmadesk.core.attention.choose_attention`."""
    try:
        choice = choose_attention(
            settings.flash_attn, settings.type_k, settings.type_v,
            crashes_on_gpu=flash_attn_crashes_on_gpu(info.architecture, info.arch_int("embedding_length")),
            on_gpu=n_gpu_layers != 0,
        )  # fmt: skip
    except ValueError as exc:
        raise ModelLoadError(f"{str(exc).capitalize()}.") from None
    return choice.flash_attn, choice.type_k, choice.type_v, list(choice.notes)


def _layer_tries(n_gpu_layers: int, n_layers: int) -> list[int]:
    """GPU layer counts to try in turn: as planned, then half, then CPU only (-1 means "all")."""
    if n_gpu_layers == 0:
        return [0]
    planned = n_gpu_layers if n_gpu_layers > 0 else n_layers + 1
    half = [planned // 2] if planned > 1 else []
    return list(dict.fromkeys([n_gpu_layers, *half, 0]))


def _finish(stats: ReplyStats, reason: StopReason, started: float, first_at: float, n_out: int) -> ReplyStats:
    now = time.perf_counter()
    stats = replace(stats, completion_tokens=n_out, stop_reason=reason, total_s=now - started)
    if n_out:
        stats.time_to_first_token_s = first_at - started
        stats.prompt_tokens_per_s = stats.prompt_tokens_evaluated / max(first_at - started, 1e-9)
        if n_out > 1:
            stats.generated_tokens_per_s = (n_out - 1) / max(now - first_at, 1e-9)
    return stats


class _OutOfMemory(EngineError):
    pass


def _classify_load_failure(settings: LoadSettings, lines: list[str], exc: Exception, detail: str) -> EngineError:
    name = Path(settings.model_path).name
    text = "\n".join(lines)
    if m := _UNKNOWN_ARCH.search(text):
        return UnsupportedModelError(
            f"“{name}” uses the model architecture “{m.group(1)}”, which this version of llama.cpp "
            "does not support. Update GemmaDesk, or choose another model.",
            detail=detail,
        )
    if _OOM.search(text):
        return _OutOfMemory("out of memory", detail=detail)
    if "llama_context" in str(exc):
        reason = next((line for line in reversed(lines) if line.startswith("llama_init_from_model")), "")
        return ModelLoadError(
            f"llama.cpp loaded “{name}” but could not set up its context with these settings"
            + (f" ({reason.split(': ', 1)[-1]})" if reason else "")
            + ". Try a shorter context or the default KV-cache type.",
            detail=detail,
        )
    return ModelLoadError(
        f"llama.cpp could not load “{name}”. The file may be damaged or made for a newer llama.cpp.",
        detail=detail,
    )
