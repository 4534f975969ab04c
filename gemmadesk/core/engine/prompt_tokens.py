"""Prompt text → token ids, with control tokens only where the template put them (issue 10 item 10).

Rendering a conversation and tokenizing the text with special parsing on turned ``<|turn>``, ``<turn|>``,
``<|think|>`` or ``<bos>`` typed by a user into real control tokens (a forged system turn), and
``<|channel>``/``<channel|>`` (user-defined tokens, matched by llama.cpp even without special parsing) into
thought markers. Here each message is asked for such strings (llama.cpp's own tokenizer finds them, once per
message text); :meth:`PromptFormat.render_pieces` marks them; marked pieces are tokenized as plain text and
the rest as before. A conversation without such strings is one piece, tokenized exactly as it always was,
so its ids and the KV-cache prefix reuse are unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from gemmadesk.core.engine.chatformat import PromptFormat
from gemmadesk.core.types import ChatMessage

_MARKER_TEXT = re.compile(r"<\|[^<>]*>|<[^<>]*\|>")  # Gemma 4's marker spelling: <|turn>, <turn|>, <|"|>
_CACHE_SIZE = 4096


class PromptTokenizer:
    """Token ids of prompts for one loaded ``Llama`` (caches are per model)."""

    def __init__(self, llm: Any, lib: Any) -> None:
        self._llm, self._lib = llm, lib
        self._vocab = lib.llama_model_get_vocab(llm.model)
        self._marker: dict[int, bool] = {}
        self._found: dict[str, list[str]] = {}

    def tokenize(self, fmt: PromptFormat, messages: Sequence[ChatMessage], thinking: bool) -> list[int]:
        """The exact tokens the model is given (BOS added if the model wants it and the text lacks it)."""
        llm = self._llm
        pieces = fmt.render_pieces(messages, thinking=thinking, specials=self.specials_in)
        if not any(p.literal for p in pieces):
            text = "".join(p.text for p in pieces)
            tokens: list[int] = llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        else:
            tokens = []
            for piece in pieces:
                if piece.literal:
                    tokens += self.plain(piece.text)
                else:
                    tokens += llm.tokenize(piece.text.encode("utf-8"), add_bos=False, special=True)
        bos = llm.token_bos()
        if self._lib.llama_vocab_get_add_bos(self._vocab) and bos >= 0 and (not tokens or tokens[0] != bos):
            tokens.insert(0, bos)
        return tokens

    def segments(
        self, fmt: PromptFormat, messages: Sequence[ChatMessage], thinking: bool, separator: str
    ) -> list[list[int]]:
        """:meth:`tokenize` for a prompt with attachments: the token ids cut at each ``separator`` in the
        rendered text (the places the media go; one list more than separators). Text is tokenized as by
        :meth:`tokenize` (special-token strings from messages as plain text), each run between separators
        on its own (as mtmd does around its media markers); BOS starts the first list if the model wants it."""
        llm = self._llm
        out: list[list[int]] = [[]]
        for piece in fmt.render_pieces(messages, thinking=thinking, specials=self.specials_in):
            if piece.literal:  # a special-token string from a message (never contains the separator)
                out[-1] += self.plain(piece.text)
                continue
            for i, part in enumerate(piece.text.split(separator)):
                if i:
                    out.append([])
                if part:
                    out[-1] += llm.tokenize(part.encode("utf-8"), add_bos=False, special=True)
        bos = llm.token_bos()
        first = out[0]
        if self._lib.llama_vocab_get_add_bos(self._vocab) and bos >= 0 and (not first or first[0] != bos):
            first.insert(0, bos)
        return out

    def is_marker(self, token: int) -> bool:
        """Whether a message must never produce ``token``: a control or unknown token, or a user-defined
        one spelled like a marker (``<|channel>``). Other user-defined tokens (runs of spaces, HTML tags
        in Gemma 3) are ordinary text."""
        hit = self._marker.get(token)
        if hit is None:
            lib = self._lib
            attr = int(lib.llama_vocab_get_attr(self._vocab, token))
            hit = bool(attr & (lib.LLAMA_TOKEN_ATTR_CONTROL | lib.LLAMA_TOKEN_ATTR_UNKNOWN))
            if not hit and attr & lib.LLAMA_TOKEN_ATTR_USER_DEFINED:
                hit = _MARKER_TEXT.fullmatch(self._piece(token)) is not None
            self._marker[token] = hit
        return hit

    def _piece(self, token: int) -> str:
        return bytes(self._llm.detokenize([token], special=True)).decode("utf-8", "replace")

    def specials_in(self, text: str) -> list[str]:
        """The special-token strings llama.cpp finds in ``text`` (cached per message text)."""
        if not text:
            return []
        found = self._found.get(text)
        if found is None:
            tokens = self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
            found = sorted({self._piece(t) for t in tokens if self.is_marker(t)})
            if len(self._found) >= _CACHE_SIZE:
                self._found.clear()
            self._found[text] = found
        return found

    def plain(self, text: str) -> list[int]:
        """``text`` as plain text: special parsing off, and a user-defined marker such as ``<|channel>`` (which
        llama.cpp matches even then) cut after its first character, so it is spelled out in ordinary tokens."""
        llm = self._llm
        out: list[int] = []
        while text:
            tokens: list[int] = llm.tokenize(text.encode("utf-8"), add_bos=False, special=False)
            markers = {self._piece(t) for t in tokens if self.is_marker(t)}
            if not markers:
                return out + tokens
            cut = min((i for m in markers if (i := text.find(m)) >= 0), default=-1)
            head = text[: cut + 1] if cut >= 0 else ""
            head_tokens: list[int] = llm.tokenize(head.encode("utf-8"), add_bos=False, special=False)
            if cut < 0 or any(self.is_marker(t) for t in head_tokens):  # not seen; character by character then
                return out + [t for ch in text for t in llm.tokenize(ch.encode("utf-8"), add_bos=False, special=False)]
            out += head_tokens
            text = text[cut + 1 :]
        return out
