"""Model output (Markdown) → safe HTML for Qt's rich text, cut into pieces so that streaming stays cheap.

Parsing is markdown-it-py (CommonMark plus GFM tables and strikethrough): pure Python, linear in its input
and with raw HTML switched off, so every character of the model's text reaches Qt escaped and only markup
this module writes becomes markup. Links are kept only for http(s)/mailto; images become links, never
fetched. Fenced code is highlighted with Pygments and gets a "Copy" link (``copy:N``).

Why pieces: a reply grows while it streams, and re-rendering all of it on every batch of tokens is
quadratic (the old renderer froze the window on long replies). :class:`Segmenter` cuts the text, left to
right and only from what has already arrived, into pieces that never change once a later line confirms
where they end: blocks separated by a blank line, fenced code blocks (themselves cut every
``CODE_PIECE_LINES`` lines), tables every ``TABLE_ROWS`` rows, and slices of over-long lines.
:class:`MarkdownRenderer` renders each finished piece once and re-renders only the open tail piece (at
most about ``PIECE_CHARS`` characters), so the work per batch stays constant however long the reply gets
(``gemmadesk.ui.markdown.MarkdownView`` puts the pieces into a QTextDocument). A finished message is cut
the same way, so what streamed and what is reloaded from history look the same. Over-long lines are also
why Qt stays fast: its line breaker is quadratic in a block without break opportunities (a 1 MB line took
minutes), and no block here is longer than ``LINE_CHARS``.

A piece that fails to render (a bug, a pathological input) is shown as escaped plain text.

No Qt here (gemmadesk.core): pure functions and plain classes.
"""

from __future__ import annotations

import html
import logging
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token

log = logging.getLogger(__name__)

PIECE_CHARS = 2000  # a piece is cut at the next line boundary past this (tables: TABLE_CHARS)
LINE_CHARS = 2000  # longer lines are sliced (at a space when there is one in the last half)
CODE_PIECE_LINES = 12  # highlighting a piece when it is committed costs ~0.5 ms per line
# Qt lays out a table at about 0.5 ms per row, so a long table goes on as a new table (header repeated)
# every TABLE_ROWS rows.
TABLE_ROWS = 40
TABLE_CHARS = 8000
CURSOR = " ▍"  # shown at the end of a reply that is still streaming
_SAFE_SCHEMES = ("http://", "https://", "mailto:")

_FENCE_OPEN = re.compile(r" {0,3}(?:(`{3,})([^`]*)|(~{3,})(.*))")
_FENCE_CLOSE = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*")
_LANG = re.compile(r"[\w+#.-]{1,40}")
_TABLE_DELIMITER = re.compile(r" {0,3}\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*")


# --------------------------------------------------------------------------------------------- segmenting


@dataclass(frozen=True)
class Piece:
    """One independently rendered part of a message.

    ``kind``: "md" (Markdown blocks), "cont" (the next slice of an over-long line: inline Markdown only, shown
    as a continuation of the line before) or "code" (lines of a fenced code block; ``block`` numbers the
    block in :attr:`Segmenter.code_blocks`, ``first`` marks the piece that carries the language and Copy).
    """

    kind: str
    text: str
    lang: str = ""
    block: int = -1
    first: bool = False


def _fence_open(line: str) -> tuple[str, int, str] | None:
    """(fence char, fence length, language) when ``line`` opens a fenced code block."""
    m = _FENCE_OPEN.fullmatch(line)
    if not m:
        return None
    fence, info = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    lang = _LANG.match(info.strip())
    return fence[0], len(fence), lang.group(0) if lang else ""


def _slice_end(line: str, start: int) -> int:
    """Where the slice of an over-long ``line`` that begins at ``start`` ends: after the last space in its
    second half, else after LINE_CHARS characters. Depends only on line[start:start + LINE_CHARS]."""
    end = start + LINE_CHARS
    space = line.rfind(" ", start + LINE_CHARS // 2, end)
    return space + 1 if space >= 0 else end


class Segmenter:
    """Cuts a growing Markdown text into :class:`Piece` objects, left to right.

    ``feed(text)`` takes the whole text so far (it must extend what was fed before) and returns the pieces
    that became final; :meth:`tail` is the still-open rest. Every decision depends only on text that has
    arrived, and a piece is final only once a later line (or the end) confirms where it ends, so feeding a
    text in any number of steps gives exactly the pieces that feeding it at once gives. Work per call is
    proportional to the new text plus the tail.
    """

    def __init__(self) -> None:
        self.text = ""
        self.code_blocks: list[list[str]] = []  # source lines of each top-level fenced code block
        self._line = 0  # start of the current (not yet complete) line in self.text
        self._cut = 0  # how much of the current line went out in slices already (over-long lines)
        self._scan = 0  # where to look for the next newline
        self._open: list[str] = []  # lines of the open piece
        self._open_len = 0
        self._blank_before = False  # Markdown: the last line of the open piece is blank
        self._table_head: list[str] = []  # Markdown: the header rows when the open piece is a table
        self._fence: tuple[str, int] | None = None  # inside a fenced code block: its char and length
        self._lang = ""
        self._first = True  # code: the open piece is the first of its block
        self.done = False

    # -------------------------------------------------------------- public
    def feed(self, text: str, *, final: bool = False) -> list[Piece]:
        if not text.startswith(self.text) or self.done:
            raise ValueError("the text must extend what was fed before")
        self.text = text
        out: list[Piece] = []
        while (nl := text.find("\n", self._scan)) >= 0:
            self._complete_line(text[self._line + self._cut : nl], out)
            self._line = self._scan = nl + 1
            self._cut = 0
        self._scan = len(text)
        if final:
            if self._line < len(text):
                self._complete_line(text[self._line + self._cut :], out)
                self._line = len(text)
                self._cut = 0
            self._commit(out)
            self.done = True
        else:
            self._partial_line(out)
        return out

    def tail(self) -> list[Piece]:
        """The open piece plus the incomplete last line, to be re-rendered on every update."""
        partial = self.text[self._line + self._cut :]
        if self._fence is not None:
            lines = [*self._open, partial] if partial else list(self._open)
            if not lines:
                return []
            return [Piece("code", "\n".join(lines), self._lang, len(self.code_blocks) - 1, self._first)]
        if self._cut:  # the rest of an over-long line
            return [Piece("cont", partial)] if partial else []
        text = "\n".join([*self._open, partial]) if self._open else partial
        return [Piece("md", text)] if text else []

    def code_text(self, block: int) -> str:
        """The source of top-level code block ``block`` so far (with its incomplete last line)."""
        lines = list(self.code_blocks[block])
        if block == len(self.code_blocks) - 1 and self._fence is not None:
            partial = self.text[self._line :]
            if partial:
                lines.append(partial)
        return "\n".join(lines)

    # -------------------------------------------------------------- lines
    def _complete_line(self, line: str, out: list[Piece]) -> None:
        """``line`` is the uncut rest of a finished line."""
        if self._fence is not None:
            self._code_line(line, out)
        elif self._cut:  # the last slice of an over-long Markdown line
            self._md_slices(line, out, complete=True)
        else:
            self._md_line(line, out)

    def _partial_line(self, out: list[Piece]) -> None:
        """Apply to the incomplete last line the decisions that its finished form will make too."""
        rest = self.text[self._line + self._cut :]
        if self._fence is not None:
            while len(rest) > LINE_CHARS:
                end = _slice_end(rest, 0)
                self._code_display_line(rest[:end], out)
                self._cut += end
                rest = rest[end:]
            return
        if self._cut or len(rest) > LINE_CHARS:
            if not self._cut:
                self._commit(out)
            self._md_slices(rest, out, complete=False)
        elif self._open and self._open_len + len(rest) > (TABLE_CHARS if self._table_head else PIECE_CHARS):
            # The finished line makes the same cut: it is at least this long, and its limit is no larger
            # (whether it continues a table is not known until it is complete).
            self._commit(out)

    def _limit(self, line: str) -> int:
        return TABLE_CHARS if self._table_head and "|" in line else PIECE_CHARS

    def _md_line(self, line: str, out: list[Piece]) -> None:
        fence = _fence_open(line) if len(line) <= LINE_CHARS else None
        if fence is not None:
            self._commit(out)
            self._fence = (fence[0], fence[1])
            self._lang = fence[2]
            self._first = True
            self.code_blocks.append([])
            return
        if len(line) > LINE_CHARS:
            self._commit(out)
            self._md_slices(line, out, complete=True)
            return
        if not self._open and not line.strip():
            return  # blank lines between pieces belong to neither
        starts_block = bool(line) and line[0] not in " \t"
        if self._open and self._blank_before and starts_block:
            self._commit(out)
        elif self._open and (
            self._open_len + len(line) > self._limit(line)
            or (self._table_head and "|" in line and len(self._open) >= TABLE_ROWS + 2)
        ):
            head = self._table_head if self._table_head and "|" in line else []
            self._commit(out)
            for row in head:  # a long table goes on as a new table with the same header
                self._append(row)
            self._table_head = list(head)
        self._append(line)
        if len(self._open) == 2 and "|" in self._open[0] and _TABLE_DELIMITER.fullmatch(self._open[1]):
            self._table_head = list(self._open)
        self._blank_before = not line.strip()

    def _md_slices(self, rest: str, out: list[Piece], *, complete: bool) -> None:
        """Slices of an over-long Markdown line: the first is Markdown, the rest continue it inline."""
        while len(rest) > LINE_CHARS:
            end = _slice_end(rest, 0)
            out.append(Piece("cont" if self._cut else "md", rest[:end]))
            self._cut += end
            rest = rest[end:]
        if complete and rest:
            out.append(Piece("cont" if self._cut else "md", rest))
        if complete:
            self._blank_before = False

    def _code_line(self, line: str, out: list[Piece]) -> None:
        assert self._fence is not None
        whole = self.text[self._line : self._line + self._cut] + line
        char, length = self._fence
        close = _FENCE_CLOSE.fullmatch(whole) if len(whole) <= LINE_CHARS else None
        if close and close.group(1)[0] == char and len(close.group(1)) >= length:
            self._commit(out)
            self._fence = None
            self._blank_before = False
            return
        self.code_blocks[-1].append(whole)
        while len(line) > LINE_CHARS:
            end = _slice_end(line, 0)
            self._code_display_line(line[:end], out)
            line = line[end:]
        self._code_display_line(line, out)

    def _code_display_line(self, line: str, out: list[Piece]) -> None:
        if self._open and (len(self._open) >= CODE_PIECE_LINES or self._open_len + len(line) > PIECE_CHARS):
            self._commit(out)
        self._append(line)

    def _append(self, line: str) -> None:
        self._open.append(line)
        self._open_len += len(line) + 1

    def _commit(self, out: list[Piece]) -> None:
        if self._fence is not None:
            if self._open or self._first:
                out.append(Piece("code", "\n".join(self._open), self._lang, len(self.code_blocks) - 1, self._first))
                self._first = False
        elif self._open:
            out.append(Piece("md", "\n".join(self._open)))
        self._open = []
        self._open_len = 0
        self._blank_before = False
        self._table_head = []


# --------------------------------------------------------------------------------------------- rendering


def _safe_url(url: str) -> bool:
    return url.strip().lower().startswith(_SAFE_SCHEMES)


@lru_cache(maxsize=64)
def _lexer(language: str) -> Any:
    from pygments.lexers import TextLexer, get_lexer_by_name
    from pygments.util import ClassNotFound

    try:
        return get_lexer_by_name(language) if language else TextLexer()
    except ClassNotFound:
        return TextLexer()


@lru_cache(maxsize=2)
def _formatter(dark: bool) -> Any:
    from pygments.formatters import HtmlFormatter

    return HtmlFormatter(nowrap=True, noclasses=True, style="monokai" if dark else "default")


def highlight(code: str, language: str, dark: bool) -> str:
    """Pygments with inline styles (Qt's rich text has no stylesheet classes); plain escape as fallback."""
    from pygments import highlight as pyg_highlight

    try:
        return str(pyg_highlight(code, _lexer(language.lower()), _formatter(dark))).removesuffix("\n")
    except Exception:  # a lexer bug must not lose the code
        log.exception("highlighting %s code failed", language or "plain")
        return html.escape(code)


def _colours(dark: bool) -> tuple[str, str]:
    return ("#272822", "#f8f8f2") if dark else ("#f4f5f7", "#1f2328")


def code_html(code: str, language: str, dark: bool, index: int | None, *, colour: bool = True) -> str:
    """Lines of a code block: a background per line (no table, so pieces join seamlessly), wrapped long lines.
    ``index`` set: the block's header with its language and the ``copy:N`` link. ``colour`` False: no
    syntax highlighting (the streaming tail: Pygments costs ~1 ms per line, too much on every batch)."""
    bg, fg = _colours(dark)
    head = ""
    if index is not None:
        label = html.escape(language) if language else "code"
        head = (
            f"<p style='background-color:{bg}; margin-top:8px; margin-bottom:0'>"
            f"<span style='color:#8b949e'>&nbsp;{label}</span>&nbsp;&nbsp;<a href='copy:{index}'>Copy</a></p>"
        )
    body = (highlight(code, language, dark) if colour else html.escape(code)) if code else ""
    return (
        f"{head}<pre style='background-color:{bg}; color:{fg}; margin-top:0; margin-bottom:0;"
        f" white-space:pre-wrap'>{body}</pre>"
    )


def _plain_html(text: str) -> str:
    return "<p>" + html.escape(text).replace("\n", "<br>") + "</p>"


def _attrs(token: Token) -> dict[str, str]:
    return {k: str(v) for k, v in token.attrs.items()}


class _Env(dict[str, Any]):
    """markdown-it's per-render env: the dark flag and the code blocks met on the way (for Copy)."""


class _SafeMarkdownIt(MarkdownIt):
    def validateLink(self, url: str) -> bool:  # noqa: N802 - markdown-it's name
        """Links and images only for http(s)/mailto; anything else stays literal text."""
        return _safe_url(url)


def _build_parser() -> MarkdownIt:
    md = _SafeMarkdownIt("commonmark", {"html": False, "breaks": True, "linkify": False, "typographer": False})
    md.enable(["table", "strikethrough"])
    rules: dict[str, Callable[..., str]] = {}

    def rule(name: str) -> Callable[[Callable[..., str]], Callable[..., str]]:
        def register(fn: Callable[..., str]) -> Callable[..., str]:
            rules[name] = fn
            return fn

        return register

    @rule("fence")
    def fence(_self: Any, tokens: Sequence[Token], idx: int, _opts: Any, env: _Env) -> str:
        token = tokens[idx]
        lang = _LANG.match(token.info.strip())
        return _nested_code(token.content.removesuffix("\n"), lang.group(0) if lang else "", env)

    @rule("code_block")
    def code_block(_self: Any, tokens: Sequence[Token], idx: int, _opts: Any, env: _Env) -> str:
        return _nested_code(tokens[idx].content.removesuffix("\n"), "", env)

    @rule("code_inline")
    def code_inline(_self: Any, tokens: Sequence[Token], idx: int, _opts: Any, _env: _Env) -> str:
        content = html.escape(tokens[idx].content)
        return f"<code style='background-color: rgba(127,127,127,0.18)'>{content}</code>"

    @rule("image")
    def image(_self: Any, tokens: Sequence[Token], idx: int, _opts: Any, _env: _Env) -> str:
        token = tokens[idx]
        alt = html.escape(token.content) or "untitled"
        src = html.escape(str(token.attrGet("src") or ""), quote=True)
        return f"<a href='{src}'>[image: {alt}]</a>"

    @rule("heading_open")
    def heading_open(_self: Any, tokens: Sequence[Token], idx: int, _opts: Any, _env: _Env) -> str:
        level = min(int(tokens[idx].tag[1]) + 2, 6)  # replies read better without giant headings
        return f"<h{level}>"

    @rule("heading_close")
    def heading_close(_self: Any, tokens: Sequence[Token], idx: int, _opts: Any, _env: _Env) -> str:
        return f"</h{min(int(tokens[idx].tag[1]) + 2, 6)}>"

    @rule("paragraph_open")
    def paragraph_open(_self: Any, tokens: Sequence[Token], idx: int, _opts: Any, _env: _Env) -> str:
        return "" if tokens[idx].hidden else "<p style='margin-top:8px; margin-bottom:0'>"

    @rule("table_open")
    def table_open(_self: Any, _tokens: Sequence[Token], _idx: int, _opts: Any, _env: _Env) -> str:
        return "<table border='1' cellspacing='0' cellpadding='4' style='margin-top:8px'>"  # collapse: 2x slower

    @rule("blockquote_open")
    def blockquote_open(_self: Any, _tokens: Sequence[Token], _idx: int, _opts: Any, _env: _Env) -> str:
        return "<blockquote style='color:#8b949e'>"

    for name, fn in rules.items():
        md.add_render_rule(name, fn)
    return md


def _nested_code(code: str, lang: str, env: _Env) -> str:
    """A code block inside Markdown (in a list, a quote, or indented): numbered after the pieces before it."""
    codes: list[str] = env["codes"]
    codes.append(code)
    return code_html(code, lang, bool(env["dark"]), int(env["base"]) + len(codes) - 1, colour=bool(env["colour"]))


_PARSER: MarkdownIt | None = None
_WARM: threading.Thread | None = None
# Loaded ahead in a thread: the first use of a Pygments lexer imports its module (up to ~100 ms for the
# JavaScript one), which would otherwise stall the window the first time a reply shows such a block.
COMMON_LANGUAGES = ("python", "javascript", "typescript", "bash", "json", "c", "cpp", "rust", "go", "java",
                    "html", "css", "sql", "yaml", "text")  # fmt: skip


def warm_up() -> threading.Thread:
    """Build the parser and load the common lexers on a background thread, once per process."""
    global _WARM
    if _WARM is None:

        def work() -> None:
            try:
                _parser()
                for language in COMMON_LANGUAGES:
                    highlight("x = 1", language, False)
            except Exception:  # only a head start: a failure shows up (and is handled) on first real use
                log.exception("preloading the Markdown renderer failed")

        _WARM = threading.Thread(target=work, name="markdown-warm-up")
        _WARM.start()
    return _WARM


def _parser() -> MarkdownIt:
    global _PARSER
    if _PARSER is None:
        _PARSER = _build_parser()
    return _PARSER


def render_piece(piece: Piece, dark: bool, code_index: int, *, colour: bool = True) -> tuple[str, list[str]]:
    """HTML for one piece and the code blocks met inside it, numbered from ``code_index``.

    For a top-level code piece the block's own index is ``code_index`` (used only by its first piece).
    ``colour`` False: code without syntax highlighting. Any failure gives the piece as escaped plain text.
    """
    try:
        if piece.kind == "code":
            index = code_index if piece.first else None
            return code_html(piece.text, piece.lang, dark, index, colour=colour), []
        md = _parser()
        env = _Env(codes=[], dark=dark, base=code_index, colour=colour)
        if piece.kind == "cont":
            inline = md.renderInline(piece.text, env).replace("\n", "")
            return f"<p style='margin-top:0; margin-bottom:0'>{inline}</p>", []
        return md.render(piece.text, env).replace("\n", ""), list(env["codes"])
    except Exception:
        log.exception("rendering a %s piece of %d characters failed; shown as plain text", piece.kind, len(piece.text))
        return (f"<pre>{html.escape(piece.text)}</pre>" if piece.kind == "code" else _plain_html(piece.text)), []


@dataclass
class Update:
    """What changed: ``reset`` (start from an empty document), pieces to append for good, the new tail."""

    reset: bool
    commit: list[str]
    tail: list[str]


class MarkdownRenderer:
    """One message's text → :class:`Update` objects; keeps the code blocks for the Copy links."""

    def __init__(self, dark: bool = False) -> None:
        self.dark = dark
        self._seg = Segmenter()
        # Code blocks by Copy index: text (nested in Markdown) or a Segmenter block number (top-level fence).
        self._codes: list[str | int] = []
        self._tail_codes: list[str | int] = []

    @property
    def text(self) -> str:
        return self._seg.text

    @property
    def finished(self) -> bool:
        """The last update was final: any further text starts a new render."""
        return self._seg.done

    def update(self, text: str, *, final: bool) -> Update:
        reset = self._seg.done or not text.startswith(self._seg.text)
        if reset:
            self._seg = Segmenter()
            self._codes = []
        pieces = self._seg.feed(text, final=final)
        commit = [self._render(p, self._codes) for p in pieces]
        tail_codes = list(self._codes)
        # The tail changes on every batch: its code is coloured once it is committed.
        tail = [self._render(p, tail_codes, colour=False) for p in self._seg.tail()]
        self._tail_codes = tail_codes[len(self._codes) :]
        return Update(reset, commit, tail)

    def _render(self, piece: Piece, codes: list[str | int], *, colour: bool = True) -> str:
        html_text, nested = render_piece(piece, self.dark, len(codes), colour=colour)
        if piece.kind == "code" and piece.first:
            codes.append(piece.block)
        codes.extend(nested)
        return html_text

    def code_blocks(self) -> list[str]:
        return [self._seg.code_text(c) if isinstance(c, int) else c for c in (*self._codes, *self._tail_codes)]

    def code_block(self, index: int) -> str | None:
        codes = (*self._codes, *self._tail_codes)
        if not 0 <= index < len(codes):
            return None
        code = codes[index]
        return self._seg.code_text(code) if isinstance(code, int) else code


@dataclass
class Rendered:
    html: str
    code_blocks: list[str] = field(default_factory=list)


def render_markdown(text: str, dark: bool = False) -> Rendered:
    """A whole (finished) text as one HTML string: the same pieces :class:`MarkdownView` shows."""
    renderer = MarkdownRenderer(dark)
    update = renderer.update(text, final=True)
    return Rendered("".join(update.commit + update.tail), renderer.code_blocks())


