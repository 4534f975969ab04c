"""Hostile chat templates inside a GGUF (issue 10 item 7) through `gemmadesk-cli chat`: each ends with one clear
error line within seconds, in bounded memory, touching nothing outside GEMMADESK_HOME.

The model is the synthetic Gemma 4 GGUF (real vocabulary) with only its ``tokenizer.chat_template``
replaced (tests/support/gguf_craft.with_chat_template), so llama.cpp loads it for real and the engine
renders the hostile template for real."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.hostile.conftest import Decoy, run_cli
from tests.support.gguf_craft import with_chat_template
from tests.support.synth_gemma4 import write_gemma4_gguf

pytestmark = pytest.mark.slow

TEMPLATES = {
    # name: (template, words of the one error line)
    "nested-loops": ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{{ bos_token }}",
                     "did not finish within 5 seconds"),
    "a-gigabyte-string": ("{% set x = 'A' * 1000000000 %}{{ x }}", "tried to build"),
    "doubling": ("{% set ns = namespace(x='AAAA') %}{% for i in range(40) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}"
                 "{{ ns.x }}", "tried to build"),
    "filter-width": ("{{ 'a'|center(2000000000) }}", "tried to build"),
    "nested-references": ("{% set a = ['x','x','x','x','x','x','x','x','x','x'] %}{% set b = [a,a,a,a,a,a,a,a,a,a] %}"
                          "{% set c = [b,b,b,b,b,b,b,b,b,b] %}{% set d = [c,c,c,c,c,c,c,c,c,c] %}"
                          "{% set e = [d,d,d,d,d,d,d,d,d,d] %}{% set f = [e,e,e,e,e,e,e,e,e,e] %}"
                          "{% set g = [f,f,f,f,f,f,f,f,f,f] %}{% set h = [g,g,g,g,g,g,g,g,g,g] %}{{ h }}",
                          "tried to build"),
    "raise-exception": ("{{ raise_exception('<a href=\"x\">Conversation roles must alternate</a>') }}",
                        "refused this conversation: “<a href=\"x\">Conversation roles must alternate</a>”"),
    "syntax-error": ("{% for m in messages %}{{ m.content }", "not valid Jinja"),
    "sandbox-escape": ("{{ messages.__class__.__mro__[1].__subclasses__() }}", "unsafe"),
    "recursion": ("{% macro m(n) %}{{ m(n) }}{% endmacro %}{{ m(1) }}", "too deeply nested"),
}


@pytest.fixture(scope="module")
def gemma4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_gemma4_gguf(tmp_path_factory.mktemp("g4") / "gemma4-tiny.gguf", "tiny", seed=0)


@pytest.mark.parametrize("name", list(TEMPLATES))
def test_chat_with_a_hostile_template(gemma4: Path, tmp_path: Path, decoy: Decoy, name: str) -> None:
    template, words = TEMPLATES[name]
    model = with_chat_template(gemma4, tmp_path / f"{name}.gguf", template)
    r = run_cli("chat", str(model), "-p", "hi", "--no-history", "--max-tokens", "4", timeout=120, max_rss_mib=1024)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and words in errors[0], r.stderr
    assert "chat template" in errors[0]
    assert r.seconds < 60, r.seconds  # 5 s render deadline plus start-up and load on a shared machine
    decoy.assert_untouched()


def test_the_real_template_still_chats(gemma4: Path, decoy: Decoy) -> None:
    r = run_cli("chat", str(gemma4), "-p", "hi <|turn>system\nx<turn|>", "--no-history", "--max-tokens", "4",
                "--json", timeout=120)
    assert r.returncode == 0, r.stderr
    assert '"prompt_tokens"' in r.stdout
    decoy.assert_untouched()
