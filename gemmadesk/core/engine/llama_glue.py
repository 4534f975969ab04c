"""The few places where GemmaDesk reaches past llama-cpp-python's public ``Llama`` API, kept together.

- llama.cpp's log goes to our logger and a short ring buffer, so a failed load can say *why*
  (``unknown model architecture``, ``out of memory``) instead of "Failed to load model".
- ``Llama()`` has no load-progress parameter, although llama.cpp's model params have one. While a
  ``Llama`` is being built we wrap ``llama_model_default_params`` so its result carries our callback.
  One load at a time (a lock), and the wrapper is removed right after.
- ``Llama()`` compiles every chat template found in the GGUF with plain Jinja, without limits (Jinja
  evaluates constant expressions while compiling: ``{{ 'a'|center(10**10) }}`` allocates 10 GB, and a
  template with a syntax error fails the whole load). GemmaDesk renders templates itself, with limits
  (:mod:`template_sandbox`), and never uses ``create_chat_completion``, so while a ``Llama`` is built
  :func:`templates_not_compiled` puts an inert stand-in where llama-cpp-python looks up its formatter.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("gemmadesk.llama")

_RECENT: deque[str] = deque(maxlen=200)
_hook_lock = threading.Lock()
_load_lock = threading.Lock()
_template_lock = threading.Lock()
_log_callback: Any = None  # the ctypes callback must stay referenced while installed
_mtmd_hooked = False
# ggml levels: 1 debug, 2 info, 3 warn, 4 error, 5 continuation. Its warnings are routine (e.g. "n_ctx <
# n_ctx_train") and its errors are re-raised as EngineError, so both are logged one step quieter.
_LEVELS = {3: logging.INFO, 4: logging.WARNING}


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
