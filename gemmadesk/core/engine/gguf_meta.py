"""Check a GGUF file's header before llama.cpp sees it, so bad files get a clear message.

llama.cpp only says "failed to load model" for a truncated file, a text file renamed .gguf or a FIFO
named .gguf (on which it would block forever). The header is read by :mod:`gemmadesk.core.gguf_file` (the
one GGUF reader: milliseconds, no numpy, only regular files); this module gives its :class:`GGUFError` to
the engine's callers as a :class:`ModelFileError` with the same sentence.
"""

from __future__ import annotations

from pathlib import Path

from gemmadesk.core.engine.errors import ModelFileError, UnsupportedModelError
from gemmadesk.core.engine.template_sandbox import MAX_TEMPLATE_CHARS
from gemmadesk.core.gguf_file import GGUFError, GGUFFile, shown

GGUFInfo = GGUFFile  # the name the engine's callers and tests know


def read_gguf_info(path: str | Path) -> GGUFFile:
    """Parse the header and tensor table; raise :class:`ModelFileError` (``str()`` = the reader's sentence)."""
    try:
        return GGUFFile.open(path)
    except GGUFError as exc:
        raise ModelFileError(exc.message, detail=exc.detail) from exc


def check_model_file(path: str | Path) -> GGUFFile:
    """What :meth:`Engine.load` checks before llama.cpp opens the file: a regular, complete GGUF
    (:func:`read_gguf_info`) that is a loadable model (:meth:`GGUFFile.check_loadable`) with a chat template
    small enough to use. Raises :class:`ModelFileError`, or :class:`UnsupportedModelError` for an
    architecture this llama.cpp does not know."""
    info = read_gguf_info(path)
    try:
        info.check_loadable()
    except GGUFError as exc:
        error = UnsupportedModelError if exc.detail.startswith("unknown architecture") else ModelFileError
        raise error(exc.message, detail=exc.detail) from exc
    template = info.chat_template or ""
    if "tokenizer.chat_template" in info.oversized or len(template) > MAX_TEMPLATE_CHARS:
        raise ModelFileError(
            f"The chat template inside “{shown(info.path.name)}” is too large to be used safely (GemmaDesk "
            f"allows up to {MAX_TEMPLATE_CHARS >> 10} KiB): choose another model file.",
            detail="tokenizer.chat_template too large",
        )
    return info
