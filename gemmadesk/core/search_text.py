"""What the user typed into the chat search, as search terms, an FTS5 query, and spans to highlight.

One rule for every part (SQLite FTS5's ``unicode61`` tokenizer, the LIKE fallback, the highlighted match in
the window): a term is a run of letters and digits; every term must appear, as the start of a word
(``rev`` finds "reverse"). Whatever else was typed (quotes, ``*``, ``NEAR``, ``AND``, brackets) is text, never
query syntax: each term is passed to FTS5 as a quoted string. Sizes are bounded: at most
:data:`MAX_TERMS` terms of :data:`MAX_TERM_CHARS` characters from the first :data:`MAX_QUERY_CHARS`.
"""

from __future__ import annotations

import re

MAX_QUERY_CHARS = 500
MAX_TERMS = 12
MAX_TERM_CHARS = 64
_TERM = re.compile(r"[^\W_]+")  # letters and digits; "_" and punctuation separate terms, as in unicode61


def search_terms(text: str) -> list[str]:
    """The distinct terms of ``text`` (case-folded), in the order typed."""
    terms: list[str] = []
    for match in _TERM.finditer(text[:MAX_QUERY_CHARS]):
        term = match.group(0).casefold()[:MAX_TERM_CHARS]
        if term not in terms:
            terms.append(term)
        if len(terms) == MAX_TERMS:
            break
    return terms


def fts_query(terms: list[str]) -> str:
    """An FTS5 MATCH expression: every term, as a quoted prefix (``"rev"* "str"*``); "" for no terms."""
    return " ".join('"' + term.replace('"', '""') + '"*' for term in terms)


def like_pattern(term: str) -> str:
    """A LIKE pattern (with ``ESCAPE '\\'``) that finds ``term`` anywhere, ``%`` and ``_`` literally."""
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def highlight_pattern(terms: list[str]) -> str:
    """A regular expression (Python ``re`` and Qt's PCRE2 alike; use it case-insensitively) matching each word
    that starts with one of the terms: what the window highlights. "" for no terms."""
    if not terms:
        return ""
    alternatives = "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True))
    return rf"(?<![^\W_])(?:{alternatives})[^\W_]*"


def match_spans(text: str, terms: list[str]) -> list[tuple[int, int]]:
    """(start, end) of every word of ``text`` that starts with a term."""
    pattern = highlight_pattern(terms)
    if not pattern:
        return []
    return [m.span() for m in re.finditer(pattern, text, re.IGNORECASE)]


def snippet(text: str, terms: list[str], width: int = 60) -> str:
    """One line of ``text`` around its first match (the start of the text when nothing matches)."""
    flat = " ".join(text.split())
    spans = match_spans(flat, terms)
    if not spans:
        return flat[: 2 * width] + ("…" if len(flat) > 2 * width else "")
    at, end = spans[0]
    start = max(0, at - width)
    stop = end + width
    return ("…" if start else "") + flat[start:stop] + ("…" if stop < len(flat) else "")
