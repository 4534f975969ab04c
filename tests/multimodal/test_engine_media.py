"""Images and audio through the real engine: real llama.cpp + mtmd, synthetic Gemma 4 weights (garbage
replies), real PNG/WAV files stored by the real AttachmentStore.

Before this work the engine ignored attachments (it had no ``attachments`` at all): every test here that
counts image/audio tokens or encodes fails on that code.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from gemmadesk.core.engine import (
    Attachment,
    AttachmentError,
    ChatMessage,
    ContextTrimmed,
    Engine,
    ReplyDone,
    SamplingParams,
    StreamEvent,
    TextChunk,
)
from gemmadesk.core.types import AttachmentKind
from tests.support.media_files import png, wav

pytestmark = pytest.mark.slow
PARAMS = SamplingParams(max_tokens=6, seed=7)
IMAGE_MIN_TOKENS = 70  # Gemma 4's smallest image budget (clip.cpp: set_limit_image_tokens(70, 1120))


def run(engine: Engine, messages: Sequence[ChatMessage], params: SamplingParams = PARAMS,
        stop: threading.Event | None = None) -> tuple[list[StreamEvent], ReplyDone]:
    events = list(engine.chat_stream(messages, params, stop))
    assert isinstance(events[-1], ReplyDone)
    assert sum(isinstance(e, ReplyDone) for e in events) == 1
    return events, events[-1]


def test_image_counted_streamed_reused_next_turn_and_encoded_once(
    load_engine: Callable[..., Engine], projectors: Callable[..., Path], attach: Callable[[bytes, str], Attachment]
) -> None:
    engine = load_engine(projectors("tiny"))
    report = engine.report
    assert report is not None and report.supports_images and report.supports_audio
    assert engine.projector is not None
    photo = attach(png(640, 480, seed=1), "photo.png")
    system = ChatMessage("system", "Be brief.")
    text_only = engine.tokenize_prompt([system, ChatMessage("user", "What is this?")])

    events, done = run(engine, [system, ChatMessage("user", "What is this?", (photo,))])
    # 640 × 480 → 13 × 10 patches of 48 px = 130 image tokens, plus <|image> and <image|>
    assert done.stats.prompt_tokens == len(text_only) + 130 + 2
    assert done.stats.prompt_tokens_evaluated == done.stats.prompt_tokens
    assert done.stats.completion_tokens > 0
    assert any(isinstance(e, TextChunk) for e in events) or done.stats.stop_reason == "eos"
    assert engine.projector.encode_count == 1

    history = [system, ChatMessage("user", "What is this?", (photo,)), ChatMessage("assistant", done.answer)]
    _, done2 = run(engine, [*history, ChatMessage("user", "Say more.")])
    # Turn 2 re-uses everything up to the new text: the image is neither encoded nor decoded again.
    assert done2.stats.prompt_tokens > done.stats.prompt_tokens
    assert done2.stats.prompt_tokens_evaluated < 25
    assert engine.projector.encode_count == 1

    second = attach(png(200, 900, seed=2), "scan.png")
    history += [ChatMessage("user", "Say more."), ChatMessage("assistant", done2.answer)]
    _, done3 = run(engine, [*history, ChatMessage("user", "And this one?", (second,))])
    assert engine.projector.encode_count == 2
    new_tokens = done3.stats.prompt_tokens - done2.stats.prompt_tokens
    # What is evaluated: the new turn, and (as for text) the previous reply from where its re-rendered
    # text tokenizes differently from what was generated.
    assert IMAGE_MIN_TOKENS < done3.stats.prompt_tokens_evaluated <= new_tokens + done2.stats.completion_tokens + 4

    # Regenerating the same reply needs nothing but the last prompt token again.
    _, again = run(engine, [*history, ChatMessage("user", "And this one?", (second,))])
    assert again.stats.prompt_tokens == done3.stats.prompt_tokens
    assert again.stats.prompt_tokens_evaluated == 1
    assert engine.projector.encode_count == 2


def test_changed_earlier_turn_reuses_cached_embeddings_instead_of_encoding(
    load_engine: Callable[..., Engine], projectors: Callable[..., Path], attach: Callable[[bytes, str], Attachment]
) -> None:
    """An edit before the image invalidates the KV cache from there on; the image's embeddings are still
    cached for this model, so it is decoded into the cache again without running the encoder."""
    engine = load_engine(projectors("tiny"))
    photo = attach(png(320, 240, seed=3), "cat.png")
    run(engine, [ChatMessage("system", "One"), ChatMessage("user", "Look", (photo,))])
    assert engine.projector is not None and engine.projector.encode_count == 1
    _, done = run(engine, [ChatMessage("system", "Two"), ChatMessage("user", "Look", (photo,))])
    assert done.stats.prompt_tokens_evaluated > IMAGE_MIN_TOKENS  # re-decoded into the KV cache …
    assert engine.projector.encode_count == 1  # … from the cached embeddings


def test_text_chat_after_an_image_chat_never_evaluates_image_positions(
    load_engine: Callable[..., Engine], projectors: Callable[..., Path], attach: Callable[[bytes, str], Attachment]
) -> None:
    engine = load_engine(projectors("tiny"))
    photo = attach(png(96, 96), "small.png")
    run(engine, [ChatMessage("user", "Look", (photo,))])
    _, done = run(engine, [ChatMessage("user", "Look"), ChatMessage("assistant", "ok"), ChatMessage("user", "Hi")])
    assert done.stats.completion_tokens > 0
    _, back = run(engine, [ChatMessage("user", "Look", (photo,))])
    assert back.stats.completion_tokens > 0


def test_audio_is_heard_and_reused(
    load_engine: Callable[..., Engine], projectors: Callable[..., Path], attach: Callable[[bytes, str], Attachment]
) -> None:
    engine = load_engine(projectors("tiny"))
    clip = attach(wav(2.0, rate=44100, channels=2), "voice.wav")
    text_only = engine.tokenize_prompt([ChatMessage("user", "Transcribe.")])
    _, done = run(engine, [ChatMessage("user", "Transcribe.", (clip,))])
    # 2 s at 16 kHz → 200 mel frames → two stride-2 convolutions → 50 audio tokens (+ <|audio>, <audio|>)
    assert done.stats.prompt_tokens == len(text_only) + 50 + 2
    assert done.stats.completion_tokens > 0
    history = [ChatMessage("user", "Transcribe.", (clip,)), ChatMessage("assistant", done.answer)]
    _, done2 = run(engine, [*history, ChatMessage("user", "Again.")])
    assert done2.stats.prompt_tokens_evaluated < 25
    assert engine.projector is not None and engine.projector.encode_count == 1


def test_long_audio_is_split_into_30_second_chunks(
    load_engine: Callable[..., Engine], projectors: Callable[..., Path], attach: Callable[[bytes, str], Attachment]
) -> None:
    engine = load_engine(projectors("tiny"), n_ctx=4096)
    clip = attach(wav(40.0, freq=220.0), "lecture.wav")
    _, done = run(engine, [ChatMessage("user", "Summarise.", (clip,))])
    text_only = engine.tokenize_prompt([ChatMessage("user", "Summarise.")])
    assert done.stats.prompt_tokens == len(text_only) + 750 + 250 + 2  # 30 s + 10 s at 25 tokens/s
    assert engine.projector is not None and engine.projector.encode_count == 2  # one per chunk
    _, again = run(engine, [ChatMessage("user", "Summarise.", (clip,))])
    assert again.stats.prompt_tokens_evaluated == 1 and engine.projector.encode_count == 2


def test_unified_12b_layout_image_and_audio_in_one_message(
    load_engine: Callable[..., Engine], projectors: Callable[..., Path], attach: Callable[[bytes, str], Attachment]
) -> None:
    """The 12B's encoder-free projectors (gemma4uv / gemma4ua); its image tokens are decoded non-causally."""
    engine = load_engine(projectors("tiny-unified"))
    photo = attach(png(480, 480, seed=4), "square.png")
    clip = attach(wav(1.0), "beep.wav")
    text_only = engine.tokenize_prompt([ChatMessage("user", "Both?")])
    _, done = run(engine, [ChatMessage("user", "Both?", (photo, clip))])
    # 480 × 480 → 10 × 10 = 100 image tokens; 1 s = 16,000 samples / 640 = 25 audio tokens
    assert done.stats.prompt_tokens == len(text_only) + (100 + 2) + (25 + 2)
    assert engine.projector is not None and engine.projector.encode_count == 2


def test_large_image_is_scaled_down_not_refused(
    load_engine: Callable[..., Engine], projectors: Callable[..., Path], attach: Callable[[bytes, str], Attachment]
) -> None:
    engine = load_engine(projectors("tiny"))
    photo = attach(png(4000, 3000, seed=5), "camera.png")
    text_only = engine.tokenize_prompt([ChatMessage("user", "Describe.")])
    _, done = run(engine, [ChatMessage("user", "Describe.", (photo,))])
    assert engine.projector is not None
    image_tokens = done.stats.prompt_tokens - len(text_only) - 2
    assert IMAGE_MIN_TOKENS <= image_tokens <= engine.projector.image_max_tokens == 280


def test_many_images_trim_oldest_turns_and_keep_the_newest(
    load_engine: Callable[..., Engine], projectors: Callable[..., Path], attach: Callable[[bytes, str], Attachment]
) -> None:
    engine = load_engine(projectors("tiny"), n_ctx=1024)
    messages = [ChatMessage("system", "Be brief.")]
    for i in range(8):  # 8 images of 130 tokens each do not fit in 1,024
        photo = attach(png(640, 480, seed=10 + i), f"p{i}.png")
        messages += [ChatMessage("user", f"Picture {i}?", (photo,)), ChatMessage("assistant", f"Answer {i}.")]
    newest = attach(png(640, 480, seed=99), "newest.png")
    messages.append(ChatMessage("user", "And the newest?", (newest,)))
    events, done = run(engine, messages)
    trimmed = [e for e in events if isinstance(e, ContextTrimmed)]
    assert len(trimmed) == 1 and trimmed[0].dropped_messages >= 2
    dropped = trimmed[0].dropped_messages
    assert done.stats.trimmed_messages == dropped and dropped % 2 == 0  # whole question/answer pairs
    assert done.stats.prompt_tokens <= 1024 - 64  # room for the reply (trim.py's rule)
    kept_images = 9 - dropped // 2
    assert kept_images * 132 < done.stats.prompt_tokens < (kept_images + 1) * 132 + 100
    # The oldest images were dropped before anything was encoded; every kept one was encoded once.
    assert engine.projector is not None and engine.projector.encode_count == kept_images


def test_stop_before_the_reply_still_ends_with_one_reply_done(
    load_engine: Callable[..., Engine], projectors: Callable[..., Path], attach: Callable[[bytes, str], Attachment]
) -> None:
    engine = load_engine(projectors("tiny"))
    first, second = attach(png(64, 64, seed=1), "a.png"), attach(png(64, 64, seed=2), "b.png")
    stop = threading.Event()
    stop.set()
    _, done = run(engine, [ChatMessage("user", "Two pictures", (first, second))], stop=stop)
    assert done.stats.stop_reason == "stopped" and done.stats.completion_tokens == 0
    # The engine stays usable and the KV cache consistent.
    _, after = run(engine, [ChatMessage("user", "Two pictures", (first, second))])
    assert after.stats.completion_tokens > 0


# ------------------------------------------------------------------------------------------ refusals


def test_model_loaded_without_projector_refuses_images_with_the_next_step(
    load_engine: Callable[..., Engine], attach: Callable[[bytes, str], Attachment]
) -> None:
    engine = load_engine()
    assert engine.report is not None and not engine.report.supports_images
    photo = attach(png(64, 64), "a.png")
    with pytest.raises(AttachmentError, match="without its projector .*Download the projector"):
        run(engine, [ChatMessage("user", "What is this?", (photo,))])
    _, done = run(engine, [ChatMessage("user", "Text still works")])
    assert done.stats.completion_tokens > 0


def test_gemma3_text_model_refuses_images(
    gemma3_gguf: Path, load_engine: Callable[..., Engine], attach: Callable[[bytes, str], Attachment]
) -> None:
    engine = load_engine(model=gemma3_gguf, n_ctx=512)
    with pytest.raises(AttachmentError, match="reads text only"):
        run(engine, [ChatMessage("user", "?", (attach(png(64, 64), "a.png"),))])


def test_vision_only_projector_refuses_audio(
    load_engine: Callable[..., Engine], projectors: Callable[..., Path], attach: Callable[[bytes, str], Attachment]
) -> None:
    """Like Gemma 4 26B A4B and 31B, whose projectors have no audio encoder."""
    engine = load_engine(projectors("tiny", audio=False))
    assert engine.report is not None and engine.report.supports_images and not engine.report.supports_audio
    with pytest.raises(AttachmentError, match="cannot take audio .*takes images"):
        run(engine, [ChatMessage("user", "Listen", (attach(wav(1.0), "a.wav"),))])
    _, done = run(engine, [ChatMessage("user", "Look", (attach(png(64, 64), "a.png"),))])
    assert done.stats.completion_tokens > 0


def test_projector_for_another_model_loads_text_only_and_says_why(
    load_engine: Callable[..., Engine], projectors: Callable[..., Path], attach: Callable[[bytes, str], Attachment]
) -> None:
    engine = load_engine(projectors("tiny", n_embd_text=64))
    report = engine.report
    assert report is not None and not report.supports_images and report.mmproj_path is None
    assert any("made for a model 64 wide" in note and "text chat works" in note for note in report.notes)
    with pytest.raises(AttachmentError, match="Images and audio are off .*64 wide"):
        run(engine, [ChatMessage("user", "?", (attach(png(64, 64), "a.png"),))])
    _, done = run(engine, [ChatMessage("user", "Text still works")])
    assert done.stats.completion_tokens > 0


def test_file_changed_on_disk_since_attached_is_refused(
    load_engine: Callable[..., Engine], projectors: Callable[..., Path], attach: Callable[[bytes, str], Attachment]
) -> None:
    engine = load_engine(projectors("tiny"))
    photo = attach(png(64, 64), "a.png")
    photo.path.chmod(0o644)
    photo.path.write_bytes(png(64, 64, seed=9))
    with pytest.raises(AttachmentError, match="has changed since it was attached"):
        run(engine, [ChatMessage("user", "?", (photo,))])


def test_text_renamed_to_png_and_damaged_png_are_refused_in_one_sentence(
    load_engine: Callable[..., Engine], projectors: Callable[..., Path], tmp_path: Path
) -> None:
    import hashlib

    engine = load_engine(projectors("tiny"))
    fake = tmp_path / "notes.png"
    fake.write_text("not a picture at all")
    att = Attachment(AttachmentKind.IMAGE, fake, hashlib.sha256(fake.read_bytes()).hexdigest(), "image/png")
    with pytest.raises(AttachmentError, match="is not an image or audio file"):
        run(engine, [ChatMessage("user", "?", (att,))])
    broken = tmp_path / "broken.png"
    data = png(64, 64)
    broken.write_bytes(data[:40] + b"\x00" * 50)  # a valid header, then garbage
    att = Attachment(AttachmentKind.IMAGE, broken, hashlib.sha256(broken.read_bytes()).hexdigest(), "image/png")
    with pytest.raises(AttachmentError, match="could not be decoded as an image") as info:
        run(engine, [ChatMessage("user", "?", (att,))])
    assert str(info.value).count(". ") <= 1
    _, done = run(engine, [ChatMessage("user", "Still fine")])
    assert done.stats.completion_tokens > 0
