"""Real inference through the Engine on the real Gemma 3 270M and on a synthetic Gemma 4 GGUF."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from gemmadesk.core.engine import (
    ChatMessage,
    ContextOverflowError,
    ContextTrimmed,
    Engine,
    LoadCancelled,
    LoadSettings,
    NotLoadedError,
    ReplyDone,
    SamplingParams,
    TextChunk,
)
from gemmadesk.core.types import KvType

pytestmark = pytest.mark.slow


def _run(engine: Engine, messages: list[ChatMessage], **params: object) -> tuple[list[object], ReplyDone]:
    events: list[object] = list(engine.chat_stream(messages, SamplingParams(**params)))  # type: ignore[arg-type]
    assert isinstance(events[-1], ReplyDone), "every stream ends with ReplyDone"
    assert sum(isinstance(e, ReplyDone) for e in events) == 1
    return events, events[-1]


def test_load_reports_settings_and_progress(gemma3_gguf: Path) -> None:
    progress: list[float] = []
    engine = Engine()
    report = engine.load(
        LoadSettings(model_path=str(gemma3_gguf), n_ctx=768, type_k=KvType.Q8_0, type_v=KvType.Q8_0, flash_attn=True),
        on_progress=lambda f: bool(progress.append(f) or True),  # type: ignore[func-returns-value]
    )
    try:
        assert report.architecture == "gemma3"
        assert report.n_layers == 18
        assert report.n_ctx == 768
        assert report.n_ctx_train == 32768
        assert (report.type_k, report.type_v, report.flash_attn) == ("q8_0", "q8_0", True)
        assert report.chat_format == "fallback:gemma", "the 270M base model has no chat template"
        assert progress
        assert progress[-1] == pytest.approx(1.0)
        assert progress == sorted(progress)
    finally:
        engine.unload()
    assert not engine.is_loaded


def test_stream_yields_chunks_then_stats(engine3: Engine) -> None:
    events, done = _run(engine3, [ChatMessage("user", "Write a sentence about the sea.")], max_tokens=24, seed=7)
    chunks = [e for e in events if isinstance(e, TextChunk)]
    assert chunks
    assert {c.kind for c in chunks} == {"answer"}
    assert "".join(c.text for c in chunks).strip() == done.answer
    s = done.stats
    assert s.stop_reason in ("eos", "length")
    assert 1 <= s.completion_tokens <= 24
    assert s.prompt_tokens == s.prompt_tokens_evaluated > 5
    assert s.time_to_first_token_s > 0
    assert s.prompt_tokens_per_s > 0
    assert s.completion_tokens < 2 or s.generated_tokens_per_s > 0


def test_max_tokens_ends_with_length(engine3: Engine) -> None:
    _, done = _run(engine3, [ChatMessage("user", "Count: 1, 2, 3,")], max_tokens=5, temperature=0.0)
    assert done.stats.completion_tokens <= 5
    assert done.stats.stop_reason == "length" or done.stats.completion_tokens < 5


def test_stop_flag_ends_the_reply_early(engine3: Engine) -> None:
    stop = threading.Event()
    seen = 0
    done = None
    for event in engine3.chat_stream([ChatMessage("user", "Tell a long story.")], SamplingParams(max_tokens=500), stop):
        if isinstance(event, TextChunk):
            seen += 1
            if seen == 3:
                stop.set()
        elif isinstance(event, ReplyDone):
            done = event
    assert done is not None
    assert done.stats.stop_reason == "stopped"
    assert done.stats.completion_tokens <= 10
    # The engine is still usable after a stop.
    _, again = _run(engine3, [ChatMessage("user", "Hi")], max_tokens=3)
    assert again.stats.completion_tokens >= 1


def test_second_turn_reuses_the_cached_prefix(engine3: Engine) -> None:
    history = [ChatMessage("system", "Be brief."), ChatMessage("user", "Name a colour.")]
    _, first = _run(engine3, history, max_tokens=12, seed=1)
    history += [ChatMessage("assistant", first.answer), ChatMessage("user", "Name another one.")]
    _, second = _run(engine3, history, max_tokens=12, seed=1)
    s = second.stats
    assert s.prompt_tokens > first.stats.prompt_tokens
    assert s.prompt_tokens_evaluated < s.prompt_tokens - first.stats.prompt_tokens // 2


def test_same_prompt_again_reuses_all_but_one_token(engine3: Engine) -> None:
    msgs = [ChatMessage("user", "Say hello.")]
    _run(engine3, msgs, max_tokens=4)
    _, again = _run(engine3, msgs, max_tokens=4)
    assert again.stats.prompt_tokens_evaluated == 1


def test_overflow_drops_oldest_turns_and_says_so(gemma3_gguf: Path) -> None:
    engine = Engine()
    engine.load(LoadSettings(model_path=str(gemma3_gguf), n_ctx=256))
    try:
        msgs = [ChatMessage("system", "SYSTEM-PROMPT-KEPT")]
        for i in range(12):
            msgs += [ChatMessage("user", f"Question {i}: " + "words " * 12), ChatMessage("assistant", f"Answer {i}.")]
        msgs.append(ChatMessage("user", "NEWEST-QUESTION"))
        events, done = _run(engine, msgs, max_tokens=8)
        trimmed = [e for e in events if isinstance(e, ContextTrimmed)]
        assert len(trimmed) == 1
        assert events[0] is trimmed[0]
        assert trimmed[0].dropped_messages >= 2
        assert "oldest" in trimmed[0].notice
        assert done.stats.trimmed_messages == trimmed[0].dropped_messages
        assert done.stats.prompt_tokens <= 256 - 64
        prompt = engine.prompt_format.render(msgs[:1] + msgs[1 + trimmed[0].dropped_messages :])
        assert "SYSTEM-PROMPT-KEPT" in prompt
        assert "NEWEST-QUESTION" in prompt
        assert "Question 0:" not in prompt
    finally:
        engine.unload()


def test_a_message_longer_than_the_context_is_refused_not_cut(gemma3_gguf: Path) -> None:
    engine = Engine()
    engine.load(LoadSettings(model_path=str(gemma3_gguf), n_ctx=256))
    try:
        with pytest.raises(ContextOverflowError, match="too long"):
            list(engine.chat_stream([ChatMessage("user", "word " * 400)], SamplingParams(max_tokens=8)))
        _, done = _run(engine, [ChatMessage("user", "Short one.")], max_tokens=3)
        assert done.stats.completion_tokens >= 1
    finally:
        engine.unload()


def test_cancelled_load_leaves_the_engine_usable(gemma3_gguf: Path) -> None:
    engine = Engine()
    with pytest.raises(LoadCancelled):
        engine.load(LoadSettings(model_path=str(gemma3_gguf), n_ctx=256), on_progress=lambda f: f < 0.3)
    assert not engine.is_loaded
    with pytest.raises(NotLoadedError):
        list(engine.chat_stream([ChatMessage("user", "Hi")]))
    engine.load(LoadSettings(model_path=str(gemma3_gguf), n_ctx=256))
    assert engine.is_loaded
    engine.unload()


def test_gemma4_loads_with_its_own_template(engine4: Engine) -> None:
    report = engine4.report
    assert report is not None
    assert report.architecture == "gemma4"
    assert report.n_layers == 4
    assert report.chat_format == "gguf-template"
    assert report.supports_thinking
    tokens = engine4.tokenize_prompt([ChatMessage("user", "Hi")], thinking=True)
    text = engine4.prompt_format.render([ChatMessage("user", "Hi")], thinking=True)
    assert "<|think|>" in text
    assert engine4.tokenize("<|think|>")[0] in tokens, "<|think|> must be one special token in the prompt"


def test_gemma4_streams_with_thinking_on_and_off(engine4: Engine) -> None:
    for thinking in (True, False):
        events, done = _run(engine4, [ChatMessage("user", "Hi")], max_tokens=6, thinking=thinking, seed=3)
        assert done.stats.completion_tokens >= 1
        assert done.stats.stop_reason in ("eos", "length")
        text = "".join(e.text for e in events if isinstance(e, TextChunk))
        assert text.strip() == (done.thoughts + done.answer).strip() or done.thoughts


def test_gemma4_reply_tokens_are_split_into_thoughts_and_answer(engine4: Engine) -> None:
    """The engine's own token → text path (special tokens kept) with the real Gemma 4 vocabulary."""
    reply = "<|channel>thought\nLet me add: 2+2=4.<channel|>The answer is 4.<turn|>ignored after end of turn"
    tokens = engine4.tokenize(reply)
    assert len(tokens) < len(reply) // 2, "markers must be single special tokens"
    chunks, answer, thoughts = engine4.decode_reply(tokens)
    assert thoughts == "Let me add: 2+2=4."
    assert answer == "The answer is 4."
    assert [c.kind for c in chunks][0] == "thought"
    assert chunks[-1].kind == "answer"
    assert "ignored" not in "".join(c.text for c in chunks)


def test_gemma4_empty_thought_block_is_stripped(engine4: Engine) -> None:
    chunks, answer, thoughts = engine4.decode_reply(engine4.tokenize("<|channel>thought\n<channel|>Hello"))
    assert (answer, thoughts) == ("Hello", "")
    assert {c.kind for c in chunks} == {"answer"}


def test_gpu_layers_on_a_cpu_only_build_are_reported_honestly(gemma3_gguf: Path) -> None:
    import llama_cpp

    engine = Engine()
    report = engine.load(LoadSettings(model_path=str(gemma3_gguf), n_ctx=256, n_gpu_layers=-1))
    engine.unload()
    if llama_cpp.llama_supports_gpu_offload():
        assert report.n_gpu_layers == report.n_layers + 1, "-1 means every layer, output included"
    else:
        assert report.n_gpu_layers == 0
        assert any("cannot use a GPU" in note for note in report.notes)
