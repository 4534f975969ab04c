"""The one place where GemmaDesk goes past llama-cpp-python's ``Llama`` object (issue 12, item 5).

Tested with llama-cpp-python 0.3.36 (pinned ``==`` in pyproject.toml; tests/engine/test_llama_adapter.py
checks each reach below against the installed version). Everything else in GemmaDesk uses ``Llama``'s
public methods only.

What is reached, and why:

- **llama.cpp's log** goes to our logger and a short ring buffer (:func:`log_mark`, :func:`log_since`),
  so a failed load can say *why* (``unknown model architecture``, ``out of memory``).
- **Load progress** (:func:`load_progress`): ``Llama()`` has no progress parameter although llama.cpp's
  model params have one. While a ``Llama`` is being built, ``llama_cpp.llama_cpp.llama_model_default_params``
  is wrapped so its result carries our callback: one load at a time (a lock), removed right after.
- **Generation** (:class:`NativeModel`): ``Llama.generate`` costs about a millisecond per token on top of
  llama.cpp (issue 15): a Python ``eval``/``sample`` round per token, the full 262,144-entry candidate
  array built and partially sorted on the CPU for top-k. :class:`NativeModel` drives llama.cpp's C API
  through the public ``Llama.ctx``/``Llama.model`` pointers instead: ``llama_decode`` on a one-token
  batch, the same native sampler chain as ``Llama.generate`` (same samplers, order and seed, so the same
  tokens), top-k run on the device that computed the logits (llama.cpp's backend sampling; only the k
  best candidates come back to the CPU), and the next token's decode queued *before* the caller turns
  the current one into text, so on a GPU the Python work overlaps the model's.
- **Chat templates are not compiled** while a ``Llama`` is built (:func:`templates_not_compiled`):
  ``Llama()`` compiles every chat template in the GGUF with plain Jinja, without limits (Jinja evaluates
  constant expressions while compiling: ``{{ 'a'|center(10**10) }}`` allocates 10 GB, and a template
  with a syntax error fails the whole load). GemmaDesk renders templates itself, with limits
  (:mod:`template_sandbox`), and never uses ``create_chat_completion``, so an inert stand-in takes the
  place where llama-cpp-python looks up its formatter (``llama_chat_format.Jinja2ChatFormatter``).
- **libmtmd's log** (:func:`mtmd_module`) joins llama.cpp's (otherwise it goes to stderr).
- **The KV record**: ``Llama.input_ids[:n_tokens]`` (public attributes) says which tokens the context's
  KV cache holds, and stays the one record: :class:`NativeModel` reads it at the start of each
  operation, works on a list while generating (no numpy per token) and writes it back at the end, so
  ``Llama``'s own ``eval`` and anything else that keeps that record (media evaluated into the context)
  stay consistent with the native loop.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("gemmadesk.llama")

TESTED_VERSION = "0.3.36"  # the llama-cpp-python version every reach here was checked against

_RECENT: deque[str] = deque(maxlen=200)
_hook_lock = threading.Lock()
_load_lock = threading.Lock()
_template_lock = threading.Lock()
_mtmd_hooked = False
_log_callback: Any = None  # the ctypes callback must stay referenced while installed
# ggml levels: 1 debug, 2 info, 3 warn, 4 error, 5 continuation. Its warnings are routine (e.g. "n_ctx <
# n_ctx_train") and its errors are re-raised as EngineError, so both are logged one step quieter.
_LEVELS = {3: logging.INFO, 4: logging.WARNING}
# llama-cpp-python's sampler chain keeps this many recent tokens for the repeat penalty (Llama's
# default ``last_n_tokens_size``); Llama.generate passes it as ``penalty_last_n``.
PENALTY_LAST_N = 64


def llama_module() -> Any:
    """Import llama_cpp (slow: loads the native library) and install the log hook once."""
    import llama_cpp

    global _log_callback
    with _hook_lock:
        if _log_callback is None:

            def _on_log(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
                line = text.decode("utf-8", "replace").rstrip("\n")
                if line:
                    _RECENT.append(line)
                    log.log(_LEVELS.get(level, logging.DEBUG), "%s", line)

            _log_callback = llama_cpp.llama_log_callback(_on_log)
            llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
    return llama_cpp


def mtmd_module() -> Any:
    """Import llama-cpp-python's binding of llama.cpp's multimodal library (libmtmd) and send its log
    (which otherwise goes to stderr) to the same logger and ring buffer as llama.cpp's."""
    llama_module()
    import llama_cpp.mtmd_cpp as mtmd

    global _mtmd_hooked
    with _hook_lock:
        if not _mtmd_hooked:
            mtmd.mtmd_helper_log_set(_log_callback, ctypes.c_void_p(0))
            _mtmd_hooked = True
    return mtmd


def log_mark() -> int:
    """A position in the log ring buffer; pass it to :func:`log_since`."""
    return len(_RECENT) if len(_RECENT) < (_RECENT.maxlen or 0) else -1


def log_since(mark: int) -> list[str]:
    lines = list(_RECENT)
    return lines[mark:] if mark >= 0 else lines


def clear_log() -> None:
    """Forget the buffered log lines (tests use it to see that new lines still arrive)."""
    _RECENT.clear()


def recent_log() -> list[str]:
    return list(_RECENT)


@contextmanager
def load_progress(on_progress: Callable[[float], bool] | None) -> Iterator[None]:
    """While active, models loaded through ``llama_cpp.Llama`` report progress to ``on_progress``
    (0.0 … 1.0); returning False from it aborts the load."""
    lib = llama_module()
    with _load_lock:
        if on_progress is None:
            yield
            return

        def _cb(progress: float, _user: ctypes.c_void_p) -> bool:
            try:
                return bool(on_progress(float(progress)))
            except Exception:  # a broken callback must not abort inside C code with a traceback
                log.exception("load progress callback failed")
                return True

        c_callback = lib.llama_progress_callback(_cb)
        original = lib.llama_cpp.llama_model_default_params

        def _params_with_progress() -> Any:
            params = original()
            params.progress_callback = c_callback
            return params

        lib.llama_cpp.llama_model_default_params = _params_with_progress
        try:
            yield
        finally:
            lib.llama_cpp.llama_model_default_params = original


class _UncompiledTemplate:
    """Stands in for ``llama_chat_format.Jinja2ChatFormatter`` while a ``Llama`` is built (see the module
    docstring): keeps the template text, compiles nothing."""

    def __init__(self, template: str, *args: Any, **kwargs: Any) -> None:
        self.template = template

    def to_chat_handler(self) -> Callable[..., Any]:
        def handler(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("GemmaDesk renders chat templates itself (core/engine/template_sandbox.py)")

        return handler


@contextmanager
def templates_not_compiled() -> Iterator[None]:
    """While active, ``llama_cpp.Llama()`` does not compile the GGUF's chat templates."""
    import importlib

    formats: Any = importlib.import_module("llama_cpp.llama_chat_format")
    with _template_lock:
        original = formats.Jinja2ChatFormatter
        formats.Jinja2ChatFormatter = _UncompiledTemplate
        try:
            yield
        finally:
            formats.Jinja2ChatFormatter = original


def device_sampling(output_on_gpu: bool) -> bool:
    """Whether to sample on the device: by default where the output layer runs on a GPU (there it saves
    the host-side top-k over the whole vocabulary and the logits' copy). ``GEMMADESK_DEVICE_SAMPLING=0``
    turns it off (llama.cpp marks backend sampling experimental: this is the way out if a build
    misbehaves), ``=1`` forces it on also for the CPU (benchmarks)."""
    value = os.environ.get("GEMMADESK_DEVICE_SAMPLING", "").strip()
    if value in ("0", "1"):
        return value == "1"
    return output_on_gpu


@dataclass(frozen=True)
class Sampling:
    """The sampler settings ``Llama.generate`` takes (GemmaDesk uses no others)."""

    temperature: float
    top_k: int
    top_p: float
    min_p: float
    repeat_penalty: float
    seed: int | None


class DecodeError(RuntimeError):
    """llama_decode returned an error code (the message names it)."""


class NativeModel:
    """A loaded ``Llama`` driven through llama.cpp's C API: facts, the KV record, and generation.

    ``sample_on_device``: run top-k (or greedy) where the logits are (llama.cpp backend sampling); pays
    off when the output layer is on a GPU. Not thread-safe: one thread (the engine's) uses it."""

    def __init__(self, llm: Any, lib: Any, sample_on_device: bool = False) -> None:
        self._llm, self._lib = llm, lib
        self._ctx = llm.ctx
        self._model = llm.model
        self.vocab = lib.llama_model_get_vocab(self._model)
        self._mem = lib.llama_get_memory(self._ctx)
        self._n_vocab = int(lib.llama_vocab_n_tokens(self.vocab))
        self._n_batch = int(llm.n_batch)
        self._cached: list[int] = []
        self._sample_on_device = sample_on_device
        self._device_chain: Any = None  # attached to the context (seq 0) while not None
        self._device_key: tuple[str, int] | None = None
        self._one = (ctypes.c_int32 * 1)()
        self._one_batch = lib.llama_batch_get_one(self._one, 1)
        self._pieces: dict[int, bytes] = {}
        self._piece_buf = ctypes.create_string_buffer(256)

    # ------------------------------------------------------------------ facts
    @property
    def n_ctx_train(self) -> int:
        return int(self._lib.llama_model_n_ctx_train(self._model))

    @property
    def n_swa(self) -> int:
        """Sliding-window size of the model's SWA layers (0: none)."""
        return int(self._lib.llama_model_n_swa(self._model))

    @property
    def add_bos(self) -> bool:
        return bool(self._lib.llama_vocab_get_add_bos(self.vocab))

    def is_eog(self, token: int) -> bool:
        return bool(self._lib.llama_vocab_is_eog(self.vocab, token))

    def token_bytes(self, token: int) -> bytes:
        """The token's text bytes, special tokens included (``<|channel>`` must reach the thought parser).
        Cached per token id: a reply repeats tokens, and each lookup is otherwise a C call and a copy."""
        piece = self._pieces.get(token)
        if piece is None:
            piece = token_bytes(self._lib, self.vocab, token, self._piece_buf)
            self._pieces[token] = piece
        return piece

    # ------------------------------------------------------------------ the KV record
    @property
    def cached_tokens(self) -> list[int]:
        """The tokens whose KV the context holds for sequence 0, in order."""
        return self._pull()

    def _pull(self) -> list[int]:
        """Read the KV record from ``Llama`` (someone else may have evaluated into the context)."""
        llm = self._llm
        self._cached = [int(t) for t in llm.input_ids[: llm.n_tokens].tolist()]
        return list(self._cached)

    def swa_pos_min(self) -> int:
        """The smallest position still in the (sliding-window) KV cache of sequence 0 (-1: empty)."""
        return int(self._lib.llama_memory_seq_pos_min(self._mem, 0))

    def keep_prefix(self, n: int) -> int:
        """Drop the KV of every position from ``n`` on; returns how many cached tokens are kept (0 if the
        cache cannot drop a suffix and was cleared instead)."""
        self._pull()
        n = max(0, min(n, len(self._cached)))
        if n == 0 or not self._lib.llama_memory_seq_rm(self._mem, -1, n, -1):
            self._lib.llama_memory_clear(self._mem, True)
            n = 0
        del self._cached[n:]
        self._publish()
        return n

    def reset(self) -> None:
        self.keep_prefix(0)

    def _publish(self) -> None:
        """Write the KV record back into ``Llama`` (``input_ids``/``n_tokens``)."""
        n = len(self._cached)
        if n:
            self._llm.input_ids[:n] = self._cached
        self._llm.n_tokens = n

    # ------------------------------------------------------------------ generation
    def decode_prompt(self, tokens: Sequence[int]) -> None:
        """Evaluate ``tokens`` after the cached ones (in ``n_batch`` pieces; logits for the last only)."""
        self._pull()
        try:
            self._decode_tokens(tokens)
        finally:
            self._publish()

    def _decode_tokens(self, tokens: Sequence[int]) -> None:
        lib = self._lib
        for i in range(0, len(tokens), self._n_batch):
            piece = list(tokens[i : i + self._n_batch])
            arr = (ctypes.c_int32 * len(piece))(*piece)
            rc = int(lib.llama_decode(self._ctx, lib.llama_batch_get_one(arr, len(piece))))
            if rc != 0:
                self._publish()
                self.keep_prefix(len(self._cached))  # drop whatever a failed batch left behind
                raise DecodeError(f"llama_decode returned {rc} for the prompt")
            self._cached.extend(piece)

    def generate(
        self,
        tokens: Sequence[int],
        sampling: Sampling,
        n_max: int,
        stop: threading.Event | None = None,
    ) -> Generator[int, None, None]:
        """Evaluate ``tokens`` (a suffix of the prompt: the rest is already cached, see
        :meth:`keep_prefix`) and yield up to ``n_max`` sampled tokens, the last one possibly an
        end-of-generation token. Each yielded token is already queued for decoding (unless it is the
        last: ``n_max`` reached, end of generation, or ``stop`` set), so on a GPU the caller's work on
        it overlaps the model's. The caller may stop iterating at any time; the KV record stays right."""
        lib = self._lib
        self._pull()
        host_chain = self._chains(sampling)
        try:
            self._decode_tokens(tokens)
            ctx, vocab, one, batch = self._ctx, self.vocab, self._one, self._one_batch
            sample, decode, is_eog = lib.llama_sampler_sample, lib.llama_decode, lib.llama_vocab_is_eog
            cached = self._cached
            n = 0
            while True:
                token = int(sample(host_chain, ctx, -1))
                n += 1
                more = n < n_max and not is_eog(vocab, token) and not (stop is not None and stop.is_set())
                if more:
                    one[0] = token
                    rc = decode(ctx, batch)
                    if rc != 0:
                        raise DecodeError(f"llama_decode returned {rc} after {n} generated tokens")
                    cached.append(token)
                yield token
                if not more:
                    return
        finally:
            lib.llama_sampler_free(host_chain)
            self._publish()

    def _chains(self, s: Sampling) -> Any:
        """The host sampler chain for this reply; attaches (or detaches) the device part first.

        The samplers are ``Llama.generate``'s, in its order (penalties, top-k, typical, top-p, min-p,
        temperature, dist). With device sampling, the device runs top-k (or the greedy argmax) and the
        host chain runs on the k candidates that come back: top-k again (sorts those k, so every later
        sum runs in the same order as on the full array: bit-identical probabilities), then the rest."""
        lib = self._lib
        seed = lib.LLAMA_DEFAULT_SEED if s.seed is None else s.seed & 0xFFFFFFFF
        neutral_penalty = s.repeat_penalty == 1.0
        if self._sample_on_device and neutral_penalty and s.temperature == 0.0:
            self._attach(("greedy", 0))
        elif self._sample_on_device and neutral_penalty and s.temperature > 0.0 and s.top_k > 0:
            self._attach(("top_k", s.top_k))
        else:
            self._attach(None)
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        add = lib.llama_sampler_chain_add
        add(chain, lib.llama_sampler_init_penalties(self._n_vocab, PENALTY_LAST_N, s.repeat_penalty, 0.0, 0.0))
        if s.temperature < 0.0:
            add(chain, lib.llama_sampler_init_dist(seed))
        elif s.temperature == 0.0:
            add(chain, lib.llama_sampler_init_greedy())
        else:
            add(chain, lib.llama_sampler_init_top_k(s.top_k))
            add(chain, lib.llama_sampler_init_typical(1.0, 1))
            add(chain, lib.llama_sampler_init_top_p(s.top_p, 1))
            add(chain, lib.llama_sampler_init_min_p(s.min_p, 1))
            add(chain, lib.llama_sampler_init_temp(s.temperature))
            add(chain, lib.llama_sampler_init_dist(seed))
        return chain

    def _attach(self, key: tuple[str, int] | None) -> None:
        """Keep the device chain for ``key`` attached to sequence 0 (None: none). Device chains are
        stateless (top-k, argmax), so one stays attached across replies; changing it makes llama.cpp
        re-plan its compute graph once."""
        if key == self._device_key:
            return
        lib = self._lib
        old = self._device_chain
        if old is not None:
            lib.llama_set_sampler(self._ctx, 0, None)
            lib.llama_sampler_free(old)
            self._device_chain, self._device_key = None, None
        if key is None:
            return
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        kind, k = key
        lib.llama_sampler_chain_add(
            chain, lib.llama_sampler_init_greedy() if kind == "greedy" else lib.llama_sampler_init_top_k(k)
        )
        if not lib.llama_set_sampler(self._ctx, 0, chain):
            log.info("device sampling not available here; sampling on the CPU")
            lib.llama_set_sampler(self._ctx, 0, None)
            lib.llama_sampler_free(chain)
            self._sample_on_device = False
            return
        self._device_chain, self._device_key = chain, key

    @property
    def samples_on_device(self) -> bool:
        return self._device_key is not None

    def close(self) -> None:
        """Detach and free the device sampler (before the ``Llama`` is closed)."""
        if self._device_chain is not None:
            self._attach(None)


def token_bytes(lib: Any, vocab: Any, token: int, buf: Any) -> bytes:
    """One token's text bytes, special tokens included (``llama_token_to_piece``)."""
    n = int(lib.llama_token_to_piece(vocab, token, buf, len(buf), 0, True))
    if n < 0:  # buffer too small: llama.cpp returns the needed size, negated
        buf = ctypes.create_string_buffer(-n)
        n = int(lib.llama_token_to_piece(vocab, token, buf, len(buf), 0, True))
    return bytes(buf.raw[:n])
