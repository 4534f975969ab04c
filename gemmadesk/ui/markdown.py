"""Model output → safe rich text for QTextBrowser.

Model text is untrusted. Everything is HTML-escaped first and only a small Markdown subset becomes
markup (headings, lists, quotes, emphasis, inline code, fenced code blocks, http(s)/mailto links), so
no HTML from the model ever reaches Qt. Images are shown as links, never fetched; :class:`SafeBrowser`
additionally refuses every resource load. Fenced code is highlighted with Pygments and gets a
"Copy" link (``copy:N``) that the view turns into a clipboard copy.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

from PySide6.QtCore import QUrl, Signal
from PySide6.QtWidgets import QTextBrowser, QWidget

_FENCE = re.compile(r"^\s*(```|~~~)\s*([\w+#.-]*)\s*$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*(\d+)[.)]\s+(.*)$")
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_IMAGE = re.compile(r"!\[([^\]\n]*)\]\(([^)\s]+)\)")
_LINK = re.compile(r"\[([^\]\n]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*|__(.+?)__")
_ITALIC = re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])|(?<![\w])_(?!\s)(.+?)(?<!\s)_(?![\w])")
_SAFE_SCHEMES = ("http://", "https://", "mailto:")


@dataclass
class Rendered:
    html: str
    code_blocks: list[str] = field(default_factory=list)


def _safe_url(url: str) -> str | None:
    """The (already escaped) URL if its scheme is one a click may open, else None."""
    return url if url.lower().startswith(_SAFE_SCHEMES) else None


def _inline(escaped: str) -> str:
    """Inline Markdown on already-escaped text. Inline code is protected from the other rules."""
    codes: list[str] = []

    def stash(m: re.Match[str]) -> str:
        codes.append(f"<code style='background-color: rgba(127,127,127,0.18)'>{m.group(1)}</code>")
        return f"\x00{len(codes) - 1}\x00"

    text = _INLINE_CODE.sub(stash, escaped)

    def image(m: re.Match[str]) -> str:
        url = _safe_url(m.group(2))
        label = f"[image: {m.group(1) or 'untitled'}]"
        return f"<a href='{url}'>{label}</a>" if url else label

    def link(m: re.Match[str]) -> str:
        url = _safe_url(m.group(2))
        return f"<a href='{url}'>{m.group(1)}</a>" if url else m.group(0)

    text = _IMAGE.sub(image, text)
    text = _LINK.sub(link, text)
    text = _BOLD.sub(lambda m: f"<b>{m.group(1) or m.group(2)}</b>", text)
    text = _ITALIC.sub(lambda m: f"<i>{m.group(1) or m.group(2)}</i>", text)
    return re.sub("\x00(\\d+)\x00", lambda m: codes[int(m.group(1))], text)


def highlight(code: str, language: str, dark: bool) -> str:
    """Pygments with inline styles (Qt's rich text has no stylesheet classes); plain escape as fallback."""
    from pygments import highlight as pyg_highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import TextLexer, get_lexer_by_name
    from pygments.util import ClassNotFound

    try:
        lexer = get_lexer_by_name(language) if language else TextLexer()
    except ClassNotFound:
        lexer = TextLexer()
    formatter = HtmlFormatter(nowrap=True, noclasses=True, style="monokai" if dark else "default")
    return str(pyg_highlight(code, lexer, formatter)).rstrip("\n")


def _code_block(code: str, language: str, index: int, dark: bool) -> str:
    bg = "#272822" if dark else "#f4f5f7"
    fg = "#f8f8f2" if dark else "#1f2328"
    label = html.escape(language) if language else "code"
    return (
        f"<table width='100%' cellspacing='0' cellpadding='8' style='background-color:{bg}; margin: 6px 0'>"
        f"<tr><td><span style='color:#8b949e'>{label}</span>&nbsp;&nbsp;"
        f"<a href='copy:{index}'>Copy</a>"
        f"<pre style='color:{fg}; font-family: monospace'>{highlight(code, language, dark)}</pre>"
        "</td></tr></table>"
    )


def render_markdown(text: str, dark: bool = False) -> Rendered:
    """Render a (possibly still streaming, so possibly unterminated) Markdown reply."""
    out: list[str] = []
    codes: list[str] = []
    lines = text.split("\n")
    i = 0
    para: list[str] = []
    list_kind: str | None = None

    def flush_para() -> None:
        if para:
            out.append("<p>" + "<br>".join(_inline(html.escape(p)) for p in para) + "</p>")
            para.clear()

    def close_list() -> None:
        nonlocal list_kind
        if list_kind:
            out.append(f"</{list_kind}>")
            list_kind = None

    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            flush_para()
            close_list()
            body: list[str] = []
            i += 1
            while i < len(lines) and not lines[i].strip().startswith(fence.group(1)):
                body.append(lines[i])
                i += 1
            codes.append("\n".join(body))
            out.append(_code_block(codes[-1], fence.group(2), len(codes) - 1, dark))
            i += 1
            continue
        heading, bullet, numbered = _HEADING.match(line), _BULLET.match(line), _NUMBERED.match(line)
        if not line.strip():
            flush_para()
            close_list()
        elif heading:
            flush_para()
            close_list()
            level = min(len(heading.group(1)) + 2, 6)  # replies read better without giant headings
            out.append(f"<h{level}>{_inline(html.escape(heading.group(2)))}</h{level}>")
        elif bullet or numbered:
            flush_para()
            kind = "ul" if bullet else "ol"
            if list_kind != kind:
                close_list()
                out.append(f"<{kind}>")
                list_kind = kind
            item = bullet.group(1) if bullet else numbered.group(2)  # type: ignore[union-attr]
            out.append(f"<li>{_inline(html.escape(item))}</li>")
        elif line.lstrip().startswith(">"):
            flush_para()
            close_list()
            quote = html.escape(line.lstrip()[1:].strip())
            out.append(f"<blockquote style='color:#8b949e'>{_inline(quote)}</blockquote>")
        else:
            close_list()
            para.append(line)
        i += 1
    flush_para()
    close_list()
    return Rendered("".join(out), codes)


class SafeBrowser(QTextBrowser):
    """A read-only rich-text view that never loads a resource and never follows a link by itself.

    ``link_clicked`` reports every click; the owner decides (copy a code block, open http(s) in the
    system browser). ``loadResource`` returning None means no image, stylesheet or file is ever read.
    """

    link_clicked = Signal(QUrl)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.anchorClicked.connect(self.link_clicked)

    def loadResource(self, type: int, name: QUrl | str) -> object:  # noqa: A002 - Qt's signature
        return None
