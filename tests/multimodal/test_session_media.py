"""Images through the chat core (issue 14 phase 2): ChatSession saves attachments with the user message and
a reloaded conversation re-sends them. Real ModelHost worker, real llama.cpp + mtmd, the synthetic Gemma 4
model and projector, real SQLite and the real AttachmentStore.

image in → tokens counted → reply streamed → history → reload → turn 2 re-uses the cached prefix.
On the old code the session saved no attachments (a reloaded conversation lost its image) and every test
here fails.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gemmadesk.core.attachments import AttachmentStore
from gemmadesk.core.chat import ChatSession, ModelHost
from gemmadesk.core.engine import Engine
from gemmadesk.core.engine.errors import AttachmentError
from gemmadesk.core.history import HistoryStore
from gemmadesk.core.types import (
    Attachment,
    ChatMessage,
    ContextTrimmed,
    LoadSettings,
    ReplyDone,
    SamplingParams,
    TextChunk,
)
from tests.support.media_files import png, wav

pytestmark = pytest.mark.slow
PARAMS = SamplingParams(max_tokens=6, seed=3)


def _events(handle: object) -> tuple[list[object], ReplyDone]:
    events = list(handle)  # type: ignore[call-overload]
    assert isinstance(events[-1], ReplyDone) and sum(isinstance(e, ReplyDone) for e in events) == 1
    return events, events[-1]


def _load(host: ModelHost, model: Path, mmproj: Path | None, n_ctx: int = 2048) -> Engine:
    settings = LoadSettings(model_path=str(model), n_ctx=n_ctx, n_threads=2,
                            mmproj_path=str(mmproj) if mmproj else None)
    for _ in host.load("gemma4-tiny", settings):
        pass
    engine = host._engine  # the test reads counters while the worker is idle
    assert isinstance(engine, Engine)
    return engine


@pytest.fixture
def host() -> Iterator[ModelHost]:
    h = ModelHost(Engine())
    worker = threading.Thread(target=h.run_forever, name="test-host", daemon=True)
    worker.start()
    yield h
    assert h.shutdown(timeout=120)
    worker.join(10)


@pytest.fixture
def history(tmp_path: Path) -> Iterator[HistoryStore]:
    store = HistoryStore(tmp_path / "data" / "chats.sqlite3")
    yield store
    store.close()


@pytest.fixture
def picked(tmp_path: Path) -> Callable[[bytes, str], Attachment]:
    """A file the user picked (outside GemmaDesk's folders), as an Attachment not yet stored."""
    folder = tmp_path / "users-pictures"
    folder.mkdir()

    def pick(data: bytes, name: str) -> Attachment:
        (folder / name).write_bytes(data)
        return AttachmentStore(root=tmp_path / "scratch").put(folder / name)

    return pick


def test_image_in_tokens_counted_reply_streamed_saved_reloaded_and_turn_two_reuses_the_prefix(
    host: ModelHost, history: HistoryStore, tiny_model: Path, projectors: Callable[..., Path],
    picked: Callable[[bytes, str], Attachment],
) -> None:  # fmt: skip
    engine = _load(host, tiny_model, projectors("tiny"))
    photo = picked(png(640, 480, seed=1), "Cat on the sofa.png")
    session = ChatSession(host, history)
    cid = session.new("Be brief.")
    text_only = engine.tokenize_prompt([ChatMessage("system", "Be brief."), ChatMessage("user", "What is this?")])

    handle = session.send("What is this?", PARAMS, attachments=(photo,))
    events, done = _events(handle)
    assert done.stats.prompt_tokens == len(text_only) + 130 + 2  # 13 × 10 patches + <|image> <image|>
    assert any(isinstance(e, TextChunk) for e in events) or done.stats.stop_reason == "eos"
    assert engine.projector is not None and engine.projector.encode_count == 1

    # Saved: the user message references the file, copied into the history's own attachment store.
    user, reply = history.messages(cid)
    [stored] = user.attachments
    assert stored.sha256 == photo.sha256 and stored.name == "Cat on the sofa.png"
    assert stored.path.parent.parent == history.attachments.root and stored.path.exists()
    assert reply.content == done.answer and reply.status == "complete"

    # Reload (a new history object on the same file, a new session: the app started again).
    history.close()
    reopened = HistoryStore(history.path)
    try:
        again = ChatSession(host, reopened)
        again.open(cid)
        assert again.prompt_messages()[1] == ChatMessage("user", "What is this?", (stored,))
        _, done2 = _events(again.send("Say more.", PARAMS))
        assert done2.stats.prompt_tokens > done.stats.prompt_tokens
        assert done2.stats.prompt_tokens_evaluated < 25, "the image and the first turn came from the KV cache"
        assert engine.projector.encode_count == 1

        # A fresh model (the image's embeddings are gone): the conversation re-sends and re-encodes it.
        engine = _load(host, tiny_model, projectors("tiny"))
        _, done3 = _events(again.send("And now?", PARAMS))
        assert engine.projector is not None and engine.projector.encode_count == 1
        assert done3.stats.prompt_tokens > done2.stats.prompt_tokens > 130
    finally:
        reopened.close()


def test_a_message_with_only_an_image_and_no_text(
    host: ModelHost, history: HistoryStore, tiny_model: Path, projectors: Callable[..., Path],
    picked: Callable[[bytes, str], Attachment],
) -> None:  # fmt: skip
    _load(host, tiny_model, projectors("tiny"))
    session = ChatSession(host, history)
    _, done = _events(session.send("", PARAMS, attachments=(picked(png(96, 96), "only.png"),)))
    assert done.stats.prompt_tokens > 70
    assert [len(m.attachments) for m in session.prompt_messages()] == [1, 0]


def test_a_file_missing_from_the_store_is_left_out_with_a_notice(
    host: ModelHost, history: HistoryStore, tiny_model: Path, projectors: Callable[..., Path],
    picked: Callable[[bytes, str], Attachment],
) -> None:  # fmt: skip
    _load(host, tiny_model, projectors("tiny"))
    session = ChatSession(host, history)
    _events(session.send("Look", PARAMS, attachments=(picked(png(64, 64), "gone.png"),)))
    [stored] = session.messages()[0].attachments
    stored.path.unlink()  # deleted by hand, or a disk cleaner
    events, done = _events(session.send("Still there?", PARAMS))
    notices = [e.notice for e in events if isinstance(e, ContextTrimmed)]
    assert notices and "“gone.png” is missing" in notices[0]
    assert done.stats.completion_tokens > 0


def test_without_the_projector_earlier_images_are_left_out_and_new_ones_refused_before_saving(
    host: ModelHost, history: HistoryStore, tiny_model: Path, projectors: Callable[..., Path],
    picked: Callable[[bytes, str], Attachment],
) -> None:  # fmt: skip
    _load(host, tiny_model, projectors("tiny"))
    session = ChatSession(host, history)
    cid = session.new()
    _events(session.send("Look", PARAMS, attachments=(picked(png(64, 64), "earlier.png"),)))
    _load(host, tiny_model, None)  # the same model, loaded without its projector: text chat still works
    events, done = _events(session.send("Text only now", PARAMS))
    notices = [e.notice for e in events if isinstance(e, ContextTrimmed)]
    assert notices and "“earlier.png” from earlier messages was left out" in notices[0]
    assert done.stats.completion_tokens > 0
    rows = len(history.messages(cid))
    with pytest.raises(AttachmentError, match="loaded without its projector .* download its projector"):
        session.send("And this?", PARAMS, attachments=(picked(png(32, 32), "new.png"),))
    assert len(history.messages(cid)) == rows, "nothing saved for a refused message"


def test_audio_refused_by_a_vision_only_projector_before_saving(
    host: ModelHost, history: HistoryStore, tiny_model: Path, projectors: Callable[..., Path],
    picked: Callable[[bytes, str], Attachment],
) -> None:  # fmt: skip
    _load(host, tiny_model, projectors("tiny", audio=False))
    session = ChatSession(host, history)
    with pytest.raises(AttachmentError, match="takes images but not audio"):
        session.send("Hear this", PARAMS, attachments=(picked(wav(0.3), "v.wav"),))
    assert history.list_conversations() == []


def test_images_count_when_a_long_chat_is_trimmed(
    host: ModelHost, history: HistoryStore, tiny_model: Path, projectors: Callable[..., Path],
    picked: Callable[[bytes, str], Attachment],
) -> None:  # fmt: skip
    _load(host, tiny_model, projectors("tiny"), n_ctx=512)
    session = ChatSession(host, history)
    trims = []
    for i in range(4):  # ~280 image tokens each (480 × 480): two never fit in 512 with room for a reply
        events, done = _events(session.send(f"Picture {i}", PARAMS, attachments=(picked(png(480, 480, seed=i),
                                                                                       f"{i}.png"),)))
        trims += [e for e in events if isinstance(e, ContextTrimmed) and e.dropped_messages]
        assert done.stats.prompt_tokens <= 512 - 64
    assert trims, "older turns with their images were trimmed"
