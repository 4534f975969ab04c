"""Which prompt tokens are Gemma 4 control markers, as llama.cpp itself sees them (the prompt-injection tests
of the text and the media path count them)."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

import llama_cpp

from gemmadesk.core.engine import Engine

# User-defined tokens that Gemma 4's template uses as markers (matched even without special-token parsing).
MARKERS = {"<|channel>", "<channel|>", "<|tool_call>", "<tool_call|>", "<|tool_response>", "<tool_response|>", '<|"|>'}


def marker_positions(engine: Engine, tokens: Sequence[int]) -> list[int]:
    """Indexes of control tokens, and of user-defined tokens that are Gemma 4 markers, per llama.cpp. Negative
    ids (media positions in the KV cache) are no vocabulary tokens and are skipped."""
    llm: Any = engine._llm
    vocab = llm._model.vocab
    buf = ctypes.create_string_buffer(256)
    out = []
    for i, t in enumerate(tokens):
        if t < 0:
            continue
        attr = llama_cpp.llama_vocab_get_attr(vocab, t)
        n = llama_cpp.llama_token_to_piece(vocab, t, buf, len(buf), 0, True)
        text = buf.raw[:n].decode("utf-8", "replace")
        if attr & (llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_UNKNOWN) or text in MARKERS:
            out.append(i)
    return out
