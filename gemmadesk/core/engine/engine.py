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
from typing import Any

from gemmadesk.core.engine.chatformat import TURN_END_MARKERS, PromptFormat, ThoughtParser, prompt_format_for
from gemmadesk.core.engine.errors import (
    EngineError,
    GenerationError,
    LoadCancelled,
    ModelLoadError,
    ModelTooLargeError,
    NotLoadedError,
    UnsupportedModelError,
)
from gemmadesk.core.engine.gguf_meta import GGUFInfo, read_gguf_info
from gemmadesk.core.engine.llama_adapter import (
    NativeModel,
    Sampling,
    device_sampling,
    llama_module,
    load_progress,
    log_mark,
    log_since,
)
from gemmadesk.core.engine.trim import fit_messages
from gemmadesk.core.engine.types import (
    KV_TYPES,
    ChatMessage,
    ContextTrimmed,
    LoadReport,
    LoadSettingsLike,
    ReplyDone,
    ReplyStats,
    SamplingParams,
    StopReason,
    StreamEvent,
    TextChunk,
)

log = logging.getLogger(__name__)

_OOM = re.compile(r"out of memory|failed to allocate|unable to allocate|alloc\w* .*failed|cudaMalloc", re.I)
_UNKNOWN_ARCH = re.compile(r"unknown model architecture: '([^']*)'")
_GGML_TYPES = {"f16": "GGML_TYPE_F16", "q8_0": "GGML_TYPE_Q8_0", "q4_0": "GGML_TYPE_Q4_0"}
MIN_REPLY_TOKENS = 64


def _ggml_type(name: str, lib: Any) -> int:
    if name not in KV_TYPES:
        raise ModelLoadError(f"Unknown KV-cache type “{name}”; use one of {', '.join(KV_TYPES)}.")
    return int(getattr(lib, _GGML_TYPES[name]))


def _is_e4b(info: GGUFInfo) -> bool:
    return info.architecture == "gemma4" and info.arch_int("embedding_length") == 2560


def default_threads() -> int:
    """Physical cores: llama.cpp's decode is memory-bound and hyper-threads only add contention."""
    import psutil

    return max(1, psutil.cpu_count(logical=False) or os.cpu_count() or 1)


class Engine:
    """Owns at most one ``llama_cpp.Llama``. Not thread-safe: use it from one thread (the LlmWorker's)."""

    def __init__(self) -> None:
        self._llm: Any = None
        self._native: NativeModel | None = None
        self._format: PromptFormat | None = None
        self._report: LoadReport | None = None

    # ----------------------------------------------------------------- loading
    @property
    def report(self) -> LoadReport | None:
        return self._report

    @property
    def is_loaded(self) -> bool:
        return self._llm is not None

    def load(self, settings: LoadSettingsLike, on_progress: Callable[[float], bool] | None = None) -> LoadReport:
        """Load ``settings.model_path``. ``on_progress(fraction)`` returning False cancels.

        The file is checked first (a bad file never unloads the current model); then the current model is
        unloaded and the new one loaded. If the GPU runs out of memory, the load is retried with half the
        layers, then on the CPU only; ``LoadReport.notes`` says so. Raises an :class:`EngineError`."""
        lib = llama_module()  # before anything that might import numpy (see gguf_header)
        info = read_gguf_info(settings.model_path)
        notes: list[str] = []
        n_model_layers = info.arch_int("block_count")
        requested_layers = settings.n_gpu_layers
        if requested_layers != 0 and not lib.llama_supports_gpu_offload():
            notes.append("This llama.cpp build cannot use a GPU; the model runs on the CPU.")
            requested_layers = 0
        self._check_memory(info, requested_layers)
        self.unload()
        flash_attn, type_k, type_v, attention_notes = _resolve_attention(info, settings, requested_layers)
        notes += attention_notes
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
        )
        log.info("loaded %s: %s", info.name, self._report)
        return self._report

    def _check_memory(self, info: GGUFInfo, n_gpu_layers: int) -> None:
        """Refuse a CPU load of a file larger than all RAM before llama.cpp tries (and swaps)."""
        import psutil

        ram = psutil.virtual_memory().total
        if n_gpu_layers == 0 and info.file_bytes > ram:
            raise ModelTooLargeError(
                f"“{info.name}” needs at least {info.file_bytes / 2**30:.1f} GiB of memory; this machine has "
                f"{ram / 2**30:.1f} GiB in all. Choose a smaller model."
            )

    def _construct(
        self,
        lib: Any,
        settings: LoadSettingsLike,
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
            with load_progress(progress):
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

    def unload(self) -> None:
        """Free the model and its context (idempotent)."""
        llm, self._llm, self._format, self._report = self._llm, None, None, None
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
        """The exact tokens the model is given for ``messages`` (BOS added if the model wants it)."""
        llm = self._require()
        text = self.prompt_format.render(messages, thinking=thinking)
        tokens: list[int] = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        bos = llm.token_bos()
        if self._native_model().add_bos and bos >= 0 and (not tokens or tokens[0] != bos):
            tokens.insert(0, bos)
        return tokens

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

    def _require(self) -> Any:
        if self._llm is None:
            raise NotLoadedError("No model is loaded. Load a model first.")
        return self._llm

    def _native_model(self) -> NativeModel:
        if self._native is None:
            raise NotLoadedError("No model is loaded. Load a model first.")
        return self._native

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
    ) -> Iterator[StreamEvent]:
        native = self._native_model()
        sampling = Sampling(
            temperature=params.temperature,
            top_k=params.top_k,
            top_p=params.top_p,
            min_p=params.min_p,
            repeat_penalty=params.repeat_penalty,
            seed=params.seed,
        )
        reply = _ReplyText(native)
        reason: StopReason = "length"
        first_at = 0.0
        n_out = 0
        generator = native.generate(tokens[len(tokens) - stats.prompt_tokens_evaluated :], sampling, budget, stop)
        try:
            while n_out < budget:
                if stop is not None and stop.is_set():
                    reason = "stopped"
                    break
                try:
                    token = next(generator)
                except StopIteration:  # cannot happen before n_out == budget; kept for safety
                    reason = "eos"
                    break
                except Exception as exc:  # DecodeError, or anything llama.cpp's bindings raise
                    raise GenerationError("The model failed while generating a reply.", detail=repr(exc)) from exc
                if n_out == 0:
                    first_at = time.perf_counter()
                n_out += 1
                chunks = reply.push(token)
                if chunks is None:
                    reason = "eos"
                    break
                yield from chunks
            else:
                reason = "context_full" if budget < params.max_tokens else "length"
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

    def __init__(self, native: NativeModel) -> None:
        self._is_eog = native.is_eog
        self._bytes = native.token_bytes
        self._decode = codecs.getincrementaldecoder("utf-8")(errors="replace").decode
        self._parser = ThoughtParser()

    def push(self, token: int) -> list[TextChunk] | None:
        """The pieces this token completes, or None if it ends the turn."""
        if self._is_eog(token):
            return None
        piece = self._decode(self._bytes(token))
        if piece in TURN_END_MARKERS:
            return None
        return [TextChunk(kind, text) for kind, text in self._parser.feed(piece)]  # type: ignore[arg-type]

    def finish(self) -> list[TextChunk]:
        tail = self._parser.feed(self._decode(b"", final=True)) + self._parser.finish()
        return [TextChunk(kind, text) for kind, text in tail]  # type: ignore[arg-type]

    @property
    def answer(self) -> str:
        return self._parser.answer.strip()

    @property
    def thoughts(self) -> str:
        return self._parser.thoughts.strip()


def _resolve_attention(
    info: GGUFInfo, settings: LoadSettingsLike, n_gpu_layers: int
) -> tuple[bool, str, str, list[str]]:
    """(flash_attn, type_k, type_v, notes) after the rules llama.cpp and Gemma 4 impose."""
    flash_attn, type_k, type_v = settings.flash_attn, settings.type_k, settings.type_v
    notes: list[str] = []
    if flash_attn and n_gpu_layers != 0 and _is_e4b(info):
        flash_attn = False
        notes.append("Flash attention is off for Gemma 4 E4B on the GPU: it crashes llama.cpp's CUDA kernels.")
    if type_v != "f16" and not flash_attn:
        notes.append(f"The V cache stays f16 ({type_v} was asked for): a quantized V cache needs flash attention.")
        type_v = "f16"
    return flash_attn, type_k, type_v, notes


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


def _classify_load_failure(settings: LoadSettingsLike, lines: list[str], exc: Exception, detail: str) -> EngineError:
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
