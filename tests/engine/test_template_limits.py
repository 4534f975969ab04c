"""Chat templates run with limits (issue 10 item 7): every failure is a ChatTemplateError with one sentence,
within seconds and bounded memory; the real Gemma 4 template is unaffected; the engine stays usable."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from gemmadesk.core.engine import ChatMessage, DirectLoadSettings, Engine, EngineError, SamplingParams
from gemmadesk.core.engine.chatformat import prompt_format_for
from gemmadesk.core.engine.errors import ChatTemplateError
from gemmadesk.core.engine.template_sandbox import MAX_TEMPLATE_CHARS
from gemmadesk.core.gguf_file import GGUFFile
from tests.support.gguf_craft import with_chat_template

HI = [ChatMessage("user", "hi")]


def _render(template: str, messages: list[ChatMessage] = HI) -> str:
    return prompt_format_for("gemma4", template, "<bos>", "<eos>").render(messages)


@pytest.mark.parametrize(("template", "words"), [
    ("{{ raise_exception('Conversation roles must alternate user/assistant') }}",
     "refused this conversation: “Conversation roles must alternate user/assistant”."),
    ("{{ raise_exception('\x1b[2J<b>\nbold') }}", "“?[2J<b>?bold”"),
    ("{% if %}", "not valid Jinja"),
    ("{{ messages[0].__class__.__mro__ }}", "unsafe"),
    ("{{ messages[3].content }}", "failed (UndefinedError"),
    ("{% set x = 'A' * 100000000 %}{{ x|length }}", "tried to build a value of 95.4 MiB"),
    ("{{ 'x' * 10 | center(100000000) }}", "tried to build"),
    ("{{ '%0100000000d' % 1 }}", "tried to build"),
    ("{{ '{:>100000000}'.format(1) }}", "tried to build"),
    ("{{ 7 ** 1000000 }}", "integer with too many digits"),
    ("{{ ('x' * 100000).replace('x', 'y' * 100) }}", "tried to build"),
    ("{{ lipsum(100000000) }}", "'lipsum' is undefined"),
    ("{{ [1]|batch(1000000000, 'x')|list }}", "more than 100,000 groups"),
    ("{{ {'a': 1}|tojson(indent=1000000000) }}", "indent"),
    ("{{ strftime_now('%c' * 1000) }}", "256 characters"),
    ("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}", "too deeply nested"),
    ("x" * (MAX_TEMPLATE_CHARS + 1), "KiB allowed"),
])  # fmt: skip
def test_each_template_failure_is_one_clear_sentence(template: str, words: str) -> None:
    rss = psutil.Process().memory_info().rss
    started = time.monotonic()
    with pytest.raises(ChatTemplateError) as err:
        _render(template)
    message = str(err.value)
    assert words in message, message
    assert message.startswith("The model's chat template") and message.endswith(".")
    assert "\n" not in message and len(message) < 400
    assert time.monotonic() - started < 10
    assert psutil.Process().memory_info().rss - rss < 400 * 2**20


@pytest.mark.slow
def test_values_kept_alive_by_recursion_hit_the_memory_ceiling() -> None:
    """Each value is under the size cap, but deep recursion keeps hundreds of them alive."""
    rss = psutil.Process().memory_info().rss
    with pytest.raises(ChatTemplateError, match="needed more than 512 MiB of memory"):
        _render("{% macro m(n) %}{% set x = 'x' * 8000000 ~ n %}{{ m(n + 1) }}{{ x|length }}{% endmacro %}{{ m(1) }}")
    assert psutil.Process().memory_info().rss - rss < 700 * 2**20


@pytest.mark.slow
def test_endless_loops_stop_at_the_deadline() -> None:
    started = time.monotonic()
    with pytest.raises(ChatTemplateError, match="did not finish within 5 seconds"):
        _render("{% set l = range(100000)|list %}{% for a in l %}{% for b in l %}{% endfor %}{% endfor %}")
    assert 4.5 < time.monotonic() - started < 20


def test_a_long_real_conversation_renders_within_the_limits(gemma4_tiny: Path) -> None:
    """The Gemma 4 template on 600 turns of 2 kB each: same text as without limits, no false alarm."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    template = GGUFFile.open(gemma4_tiny).chat_template
    assert template
    messages = [ChatMessage("system", "Be brief.")] + [
        ChatMessage("user" if i % 2 == 0 else "assistant", f"turn {i} " + "lorem ipsum dolor " * 110)
        for i in range(599)
    ] + [ChatMessage("user", "last")]
    limited = _render(template, messages)
    env = ImmutableSandboxedEnvironment(loader=jinja2.BaseLoader(), trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    plain = env.from_string(template).render(messages=[{"role": m.role, "content": m.content} for m in messages],
                                             bos_token="<bos>", eos_token="<eos>", add_generation_prompt=True,
                                             enable_thinking=False)
    assert limited == plain
    assert len(limited) > 1_000_000


@pytest.mark.slow
def test_a_hostile_template_fails_the_reply_not_the_engine(gemma4_tiny: Path, tmp_path: Path) -> None:
    hostile = with_chat_template(gemma4_tiny, tmp_path / "loops.gguf",
                                 "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
    engine = Engine()
    engine.load(DirectLoadSettings(model_path=str(hostile), n_ctx=512, n_threads=2))
    with pytest.raises(ChatTemplateError, match="did not finish"):
        list(engine.chat_stream(HI, SamplingParams(max_tokens=2)))
    assert engine.is_loaded
    engine.load(DirectLoadSettings(model_path=str(gemma4_tiny), n_ctx=512, n_threads=2))
    done = list(engine.chat_stream(HI, SamplingParams(max_tokens=2)))[-1]
    assert done.stats.completion_tokens >= 1  # type: ignore[union-attr]
    engine.unload()


@pytest.mark.slow
@pytest.mark.parametrize("template", ["{% set x = 'a'|center(3000000000) %}{{ x }}", "{% for %}"])
def test_loading_does_not_compile_the_template(gemma4_tiny: Path, tmp_path: Path, template: str) -> None:
    """llama-cpp-python compiled every GGUF chat template at load with plain Jinja, which evaluates constant
    expressions while compiling (3 GB here) and fails the whole load on a syntax error. The load now
    succeeds in bounded memory and the template's problem is reported when it is used."""
    model = with_chat_template(gemma4_tiny, tmp_path / "t.gguf", template)
    engine = Engine()
    rss = psutil.Process().memory_info().rss
    engine.load(DirectLoadSettings(model_path=str(model), n_ctx=512, n_threads=2))
    assert psutil.Process().memory_info().rss - rss < 1024 * 2**20
    with pytest.raises(EngineError, match="chat template"):
        engine.tokenize_prompt(HI)
    engine.unload()


@pytest.mark.slow
def test_an_oversized_template_is_refused_before_loading(gemma4_tiny: Path, tmp_path: Path) -> None:
    model = with_chat_template(gemma4_tiny, tmp_path / "big.gguf", "{# x #}" * (MAX_TEMPLATE_CHARS // 7 + 10))
    with pytest.raises(EngineError, match="too large to be used safely"):
        Engine().load(DirectLoadSettings(model_path=str(model), n_ctx=512, n_threads=2))
