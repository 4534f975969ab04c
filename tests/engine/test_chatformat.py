"""Prompt rendering (real Gemma 4 template from the GGUF, fallbacks) and thought parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from gemmadesk.core.engine import ChatMessage, ThoughtParser, read_gguf_info, split_thoughts
from gemmadesk.core.engine.chatformat import prompt_format_for

CONVERSATION = [
    ChatMessage("system", "You are terse."),
    ChatMessage("user", "What is 2+2?"),
    ChatMessage("assistant", "4"),
    ChatMessage("user", "And 3+3?"),
]


@pytest.fixture(scope="module")
def gemma4_format(gemma4_tiny: Path):  # type: ignore[no-untyped-def]
    info = read_gguf_info(gemma4_tiny)
    assert info.chat_template
    assert "<|turn>" in info.chat_template
    return prompt_format_for(info.architecture, info.chat_template, "<bos>", "<eos>")


def test_gemma4_template_with_and_without_thinking(gemma4_format) -> None:  # type: ignore[no-untyped-def]
    on = gemma4_format.render(CONVERSATION, thinking=True)
    off = gemma4_format.render(CONVERSATION, thinking=False)
    assert gemma4_format.source == "gguf-template"
    assert gemma4_format.supports_thinking
    assert on.startswith("<bos><|turn>system\n<|think|>")
    assert "You are terse." in on
    assert "<|think|>" not in off
    assert off.startswith("<bos><|turn>system\nYou are terse.")
    assert on.endswith("<|turn>model\n")
    # Thinking off: the template pre-fills an empty thought block so the model answers directly.
    assert off.endswith("<|turn>model\n<|channel>thought\n<channel|>")
    assert "<|turn>user\nAnd 3+3?<turn|>" in on
    assert "<|turn>model\n4<turn|>" in on


def test_template_strips_thoughts_from_earlier_replies(gemma4_format) -> None:  # type: ignore[no-untyped-def]
    convo = [
        ChatMessage("user", "Hi"),
        ChatMessage("assistant", "<|channel>thought\nsecret plan<channel|>Hello!"),
        ChatMessage("user", "Bye"),
    ]
    text = gemma4_format.render(convo)
    assert "secret plan" not in text
    assert "<|turn>model\nHello!<turn|>" in text


def test_parser_on_model_output_following_the_real_template(gemma4_format) -> None:  # type: ignore[no-untyped-def]
    prompt = gemma4_format.render(CONVERSATION, thinking=True)
    output = "<|channel>thought\nThe user wants 3+3.\nThat is 6.<channel|>6, of course."
    for size in (1, 2, 3, 5, 7, 64):
        parser = ThoughtParser()
        kinds: list[str] = []
        for i in range(0, len(output), size):
            kinds += [k for k, _ in parser.feed(output[i : i + size])]
        kinds += [k for k, _ in parser.finish()]
        assert parser.thoughts == "The user wants 3+3.\nThat is 6.", size
        assert parser.answer == "6, of course.", size
        assert kinds[0] == "thought"
        assert kinds[-1] == "answer"
    assert "<|channel>" not in prompt  # thinking on: the model, not the template, opens the block


def test_empty_thought_block_gives_no_thought_chunks() -> None:
    parser = ThoughtParser()
    pieces = parser.feed("<|channel>thought\n<channel|>") + parser.feed("\nJust the answer") + parser.finish()
    assert pieces == [("answer", "Just the answer")]
    assert split_thoughts("<|channel>thought\n<channel|>Hi") == ("Hi", "")


def test_text_that_only_looks_like_a_marker_is_kept() -> None:
    parser = ThoughtParser()
    out = parser.feed("a <|chan") + parser.feed("nel is not a marker here") + parser.finish()
    # "<|channel" without ">" is not the marker.
    assert "".join(t for _, t in out) == "a <|channel is not a marker here"
    assert {k for k, _ in out} == {"answer"}
    assert parser.thoughts == ""


def test_a_stray_closing_marker_after_the_answer_is_dropped() -> None:
    """Issue 10 item 10: Gemma 4 sometimes emits ``<channel|>`` after its answer; llama.cpp's parser drops
    it, and so must we (it was kept in the answer and saved to the history)."""
    for size in (1, 3, 64):
        parser = ThoughtParser()
        text = "<|channel>thought\nplan<channel|>The answer.<channel|>"
        out = [p for i in range(0, len(text), size) for p in parser.feed(text[i : i + size])] + parser.finish()
        assert parser.answer == "The answer.", size
        assert parser.thoughts == "plan", size
        assert "<channel|>" not in "".join(t for _, t in out)
    assert split_thoughts("Hi<channel|> there<channel|>") == ("Hi there", "")
    # Only the exact marker goes: text that merely resembles it stays.
    assert split_thoughts("a <channel| b <channel> c") == ("a <channel| b <channel> c", "")


def test_unterminated_partial_marker_is_flushed_at_the_end() -> None:
    parser = ThoughtParser()
    parser.feed("answer ends with <|chan")
    parser.finish()
    assert parser.answer == "answer ends with <|chan"


def test_gemma3_fallback_puts_system_text_into_the_first_user_turn() -> None:
    fmt = prompt_format_for("gemma3", None, "<bos>", "<eos>")
    text = fmt.render(CONVERSATION)
    assert fmt.source == "fallback:gemma"
    assert not fmt.supports_thinking
    assert text.startswith("<start_of_turn>user\nYou are terse.\n\nWhat is 2+2?<end_of_turn>\n")
    assert text.endswith("<start_of_turn>user\nAnd 3+3?<end_of_turn>\n<start_of_turn>model\n")


def test_gemma4_fallback_matches_the_documented_turn_format() -> None:
    fmt = prompt_format_for("gemma4", None, "<bos>", "<eos>")
    assert fmt.source == "fallback:gemma4"
    assert fmt.supports_thinking
    text = fmt.render(CONVERSATION[:2], thinking=True)
    assert text == "<|turn>system\n<|think|>\nYou are terse.<turn|>\n<|turn>user\nWhat is 2+2?<turn|>\n<|turn>model\n"


def test_unknown_architecture_falls_back_to_a_plain_transcript() -> None:
    fmt = prompt_format_for("llama", None, "<s>", "</s>")
    assert fmt.source == "fallback:plain"
    assert fmt.render(CONVERSATION).endswith("User: And 3+3?\n\nAssistant:")
