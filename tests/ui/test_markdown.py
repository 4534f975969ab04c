"""The Markdown renderer: streamed pieces equal the finished render, work stays linear, nothing is ever blank.

Real markdown-it-py, real Pygments, real QTextDocuments (offscreen). The equivalence tests feed the same text
in many step sizes and compare the resulting documents block by block with a one-shot render: what streamed
and what is reloaded from history must look the same.
"""

from __future__ import annotations

import random

import pytest
from PySide6.QtCore import QUrl
from PySide6.QtGui import QGuiApplication, QTextDocument

from gemmadesk.core import markdown_render as mr
from gemmadesk.ui.markdown import MarkdownView, render_markdown
from gemmadesk.ui.message_view import MessageBubble, MessageView
from gemmadesk.ui.transcript_model import Message, TranscriptModel

SAMPLE = """# Title

Intro paragraph with **bold**, `code` and a [link](https://example.org).
Second line of it.

- item a
- item b
  - nested
    ```sh
    echo nested
    ```

1. one
2. two

> quote
> more

| a | b |
|---|--:|
| 1 | 2 |

```python
def f(x):

    return x
```

~~~
tilde fence
~~~

Final paragraph.
### heading tail
"""


def _blocks(doc: QTextDocument) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    block = doc.begin()
    while block.isValid():
        fmt = block.blockFormat()
        text_list = block.textList()
        out.append((
            block.text(), fmt.headingLevel(), text_list.format().style() if text_list else None,
            round(fmt.topMargin()), round(fmt.leftMargin()), fmt.background().color().name(),
            block.charFormat().fontWeight(),
        ))  # fmt: skip
        block = block.next()
    return out


def _random_markdown(rng: random.Random, n_parts: int) -> str:
    words = ["sea", "lamp", "keeper", "**bold**", "`code`", "[l](https://x.org)", "_it_", "ship", "|", "pipe"]
    parts = []
    for _ in range(n_parts):
        kind = rng.choice(["p", "ul", "ol", "code", "table", "quote", "h", "blank", "long"])
        line = " ".join(rng.choice(words) for _ in range(rng.randint(1, 12)))
        if kind == "p":
            parts.append(line + "\n" + line)
        elif kind == "ul":
            parts.append("\n".join(f"- {line}" for _ in range(rng.randint(1, 4))))
        elif kind == "ol":
            parts.append("\n".join(f"{i + 1}. {line}" for i in range(rng.randint(1, 4))))
        elif kind == "code":
            body = "\n".join(f"x{i} = {i}  # {line}" for i in range(rng.randint(0, 30)))
            parts.append(f"```python\n{body}\n```" if rng.random() < 0.8 else f"```\n{body}")  # sometimes unclosed
        elif kind == "table":
            rows = "\n".join(f"| {i} | {line} |" for i in range(rng.randint(1, 60)))
            parts.append(f"| n | text |\n|---|---|\n{rows}")
        elif kind == "quote":
            parts.append(f"> {line}\n> {line}")
        elif kind == "h":
            parts.append("#" * rng.randint(1, 6) + " " + line)
        elif kind == "long":
            parts.append((line + " ") * rng.randint(100, 400) + "x" * rng.randint(0, 5000))
        else:
            parts.append("")
    return "\n\n".join(parts) + ("\n" if rng.random() < 0.5 else "")


def _stream(text: str, steps: list[int]) -> tuple[list[mr.Piece], list[mr.Piece]]:
    seg = mr.Segmenter()
    pieces: list[mr.Piece] = []
    at = 0
    for step in steps:
        at = min(len(text), at + step)
        pieces += seg.feed(text[:at])
        if at == len(text):
            break
    pieces += seg.feed(text, final=True)
    whole = mr.Segmenter().feed(text, final=True)
    return pieces, whole


@pytest.mark.parametrize("seed", range(40))
def test_streamed_pieces_equal_the_finished_pieces(seed: int) -> None:
    rng = random.Random(seed)
    text = _random_markdown(rng, rng.randint(1, 25))
    steps = [rng.choice([1, 2, 3, 7, 16, 61, 500]) for _ in range(len(text) + 1)]
    streamed, whole = _stream(text, steps)
    assert streamed == whole
    # No piece is bigger than the limits that keep each re-render cheap (a table piece: TABLE_ROWS rows).
    for piece in whole:
        assert max((len(line) for line in piece.text.split("\n")), default=0) <= mr.LINE_CHARS
        assert len(piece.text) <= mr.TABLE_CHARS + mr.LINE_CHARS


@pytest.mark.parametrize("step", [1, 3, 7, 50, 10_000])
def test_streamed_document_equals_the_finished_document(qtbot, step: int) -> None:  # type: ignore[no-untyped-def]
    whole = MarkdownView()
    qtbot.addWidget(whole)
    whole.show_markdown(SAMPLE)
    streamed = MarkdownView()
    qtbot.addWidget(streamed)
    for end in range(step, len(SAMPLE) + step, step):
        streamed.show_markdown(SAMPLE[:end], streaming=True)
        assert streamed.document().toPlainText().endswith(mr.CURSOR)
    streamed.show_markdown(SAMPLE)
    assert _blocks(streamed.document()) == _blocks(whole.document())
    texts = [b[0] for b in _blocks(whole.document())]
    assert texts[:2] == ["Title", "Intro paragraph with bold, code and a link.\u2028Second line of it."]
    assert "def f(x):" in texts
    assert "    return x" in texts
    assert streamed.code_blocks() == whole.code_blocks() == ["echo nested", "def f(x):\n\n    return x", "tilde fence"]


def test_copy_links_copy_each_code_block_also_while_streaming(qtbot) -> None:  # type: ignore[no-untyped-def]
    model = TranscriptModel()
    view = MessageView(model)
    qtbot.addWidget(view)
    model.append(Message("assistant", "", streaming=True))
    for end in range(0, len(SAMPLE) + 9, 9):
        model.update_last(content=SAMPLE[:end])
    body = view.bubbles[0].body
    qtbot.waitUntil(lambda: not body.busy)  # a throttled render (slow machine) lands on a timer
    assert body.document().toPlainText().endswith(mr.CURSOR)  # still streaming
    anchors = _anchors(body.document())
    assert [a for a in anchors if a.startswith("copy:")] == ["copy:0", "copy:1", "copy:2"]
    view.bubbles[0].body.link_clicked.emit(QUrl("copy:1"))
    assert QGuiApplication.clipboard().text() == "def f(x):\n\n    return x"
    view.bubbles[0].body.link_clicked.emit(QUrl("copy:99999999999999999999"))  # never an IndexError
    assert QGuiApplication.clipboard().text() == "def f(x):\n\n    return x"


def _anchors(doc: QTextDocument) -> list[str]:
    found: list[str] = []
    block = doc.begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            fmt = it.fragment().charFormat()
            if fmt.isAnchor() and (not found or found[-1] != fmt.anchorHref()):
                found.append(fmt.anchorHref())
            it += 1
        block = block.next()
    return found


def test_only_web_and_mail_links_become_links() -> None:
    text = (
        "[web](https://example.org) [mail](mailto:a@b.c) [js](javascript:alert(1)) [file](file:///etc/passwd) "
        "[data](data:text/html,x) ![img](https://example.org/i.png) ![local](/etc/x.png) <b>raw</b> <a href='x'>"
    )
    html = render_markdown(text).html
    assert '<a href="https://example.org">web</a>' in html
    assert '<a href="mailto:a@b.c">mail</a>' in html
    assert "<a href='https://example.org/i.png'>[image: img]</a>" in html
    for bad in ("javascript:", "file:", "data:", "/etc/x.png"):
        assert f'href="{bad}' not in html and f"href='{bad}" not in html
    assert "<b>raw</b>" not in html and "&lt;b&gt;raw&lt;/b&gt;" in html
    assert "<img" not in html


def test_nul_and_control_characters_render(qtbot) -> None:  # type: ignore[no-untyped-def]
    """`\\x00` raised IndexError in the old renderer and left the bubble empty."""
    bubble = MessageBubble()
    qtbot.addWidget(bubble)
    bubble.show_message(Message("assistant", "a\x00b\x01c `x\x00y`\n\n```\n\x00\n```"), True, False)
    text = bubble.body.document().toPlainText()
    assert text.startswith("a\ufffdb")
    assert "x\ufffdy" in text


def test_a_render_failure_shows_the_text_not_a_blank_bubble(qtbot, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """A fault we cannot cause for real with the real parser (it has no known crash), so one is injected: the
    parser raises. The piece falls back to escaped plain text; a failing view falls back to the whole text."""

    class Broken:
        def render(self, *_args: object) -> str:
            raise RuntimeError("parser bug")

        def renderInline(self, *_args: object) -> str:  # noqa: N802 - markdown-it's name
            raise RuntimeError("parser bug")

    monkeypatch.setattr(mr, "_parser", lambda: Broken())
    bubble = MessageBubble()
    qtbot.addWidget(bubble)
    bubble.show_message(Message("assistant", "Hello <b>world</b>\nsecond line"), True, False)
    assert bubble.body.document().toPlainText().replace("\u2028", "\n") == "Hello <b>world</b>\nsecond line"

    monkeypatch.setattr(MarkdownView, "_apply", lambda *_args: (_ for _ in ()).throw(RuntimeError("Qt side bug")))
    view = MarkdownView()
    qtbot.addWidget(view)
    view.show_markdown("# Still <i>here</i>", streaming=True)
    assert view.document().toPlainText() == "# Still <i>here</i>" + mr.CURSOR


def test_streaming_work_is_linear_in_the_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every batch re-renders only the tail: the characters rendered over a whole stream stay a small
    multiple of the reply (the old renderer re-rendered everything on every batch: quadratic)."""
    rendered = [0]
    real = mr.render_piece

    def counting(piece: mr.Piece, *args: object, **kwargs: object) -> tuple[str, list[str]]:
        rendered[0] += len(piece.text)
        return real(piece, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(mr, "render_piece", counting)
    text = _random_markdown(random.Random(7), 120)
    renderer = mr.MarkdownRenderer()
    batches = 0
    for end in range(0, len(text), 40):
        renderer.update(text[:end], final=False)
        batches += 1
    renderer.update(text, final=True)
    assert len(text) > 100_000
    assert rendered[0] < len(text) + batches * (mr.PIECE_CHARS + mr.LINE_CHARS)
    assert rendered[0] < 0.01 * batches * len(text)  # far from "everything on every batch"


def test_no_block_is_longer_than_a_line_slice(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Qt's line breaker is quadratic in a block without break opportunities (`setHtml` of a 1 MB line took
    minutes): no block may be longer than LINE_CHARS."""
    view = MarkdownView()
    qtbot.addWidget(view)
    view.show_markdown("x" * 200_000 + "\n\n```\n" + "y" * 50_000 + "\n```\n" + "word " * 20_000)
    assert view.busy  # a long finished text is shown in steps, one per event-loop turn
    qtbot.waitUntil(lambda: not view.busy, timeout=60_000)
    doc = view.document()
    longest = max(doc.findBlockByNumber(i).length() for i in range(doc.blockCount()))
    assert longest <= mr.LINE_CHARS + 1
    assert doc.characterCount() > 300_000
    assert view.code_blocks() == ["y" * 50_000]  # Copy gives the line whole


def test_a_long_table_goes_on_with_its_header(qtbot) -> None:  # type: ignore[no-untyped-def]
    rows = "\n".join(f"| {i} | row {i} |" for i in range(mr.TABLE_ROWS * 2 + 5))
    pieces = mr.Segmenter().feed(f"| n | text |\n|---|---|\n{rows}\n", final=True)
    assert len(pieces) == 3
    assert all(p.text.startswith("| n | text |\n|---|---|\n") for p in pieces)
    assert render_markdown(f"| n | text |\n|---|---|\n{rows}\n").html.count("<table") == 3


def test_switching_colours_renders_again_without_duplicating(qtbot) -> None:  # type: ignore[no-untyped-def]
    """The light/dark switch (or a palette that changes once the bubble is shown) starts a new render: the
    old one appended the text a second time."""
    view = MarkdownView()
    qtbot.addWidget(view)
    view.show_markdown("Hello\n\n```python\nx = 1\n```", dark=False)
    light = view.document().toPlainText()
    view.show_markdown("Hello\n\n```python\nx = 1\n```", dark=True)
    assert view.document().toPlainText() == light
    assert light.count("Hello") == 1
    dark_bg = {view.document().findBlockByNumber(i).blockFormat().background().color().name()
               for i in range(view.document().blockCount())}  # fmt: skip
    assert "#272822" in dark_bg


def test_a_long_finished_text_is_shown_in_steps_that_keep_the_window_responsive(qtbot) -> None:  # type: ignore[no-untyped-def]
    """Opening a chat with a long reply: the text appears over several event-loop turns, never in one long
    freeze, and ends exactly as a one-shot render (streaming pieces are final pieces)."""
    from PySide6.QtCore import QElapsedTimer, QTimer

    text = _random_markdown(random.Random(3), 80)
    assert len(text) > 4 * 8000
    one_shot = MarkdownView()
    qtbot.addWidget(one_shot)
    one_shot._show(text, False, False)  # the whole text in one go, for comparison
    view = MarkdownView()
    qtbot.addWidget(view)
    ticks: list[int] = []
    clock = QElapsedTimer()
    clock.start()
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(clock.elapsed()))
    timer.start(1)
    view.show_markdown(text)
    steps = 0
    while view.busy:
        qtbot.wait(1)
        steps += 1
    timer.stop()
    assert steps >= 3
    assert len(ticks) >= 3  # the event loop ran while the text was being shown
    assert _blocks(view.document()) == _blocks(one_shot.document())
    assert view.code_blocks() == one_shot.code_blocks()
