"""The llama.cpp adapter (gemmadesk/core/engine/llama_adapter.py) on the real Gemma 3 270M.

Every reach past ``Llama``'s public API lives in that module; these tests pin each one to the installed
llama-cpp-python and check that the native generation loop samples exactly the tokens
``Llama.generate`` samples (same samplers, same seeds), with top-k on the host and on the "device"
(llama.cpp's backend sampling, which runs on the CPU backend here: the same code path a GPU takes).
"""

from __future__ import annotations

import ast
import importlib.metadata
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gemmadesk.core.engine import ChatMessage, DirectLoadSettings, Engine, ReplyDone, SamplingParams
from gemmadesk.core.engine import llama_adapter as adapter
from gemmadesk.core.engine.llama_adapter import NativeModel, Sampling

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PROMPT = b"<start_of_turn>user\nWrite a story about a lighthouse keeper.<end_of_turn>\n<start_of_turn>model\n"
N_TOKENS = 24


@pytest.fixture(scope="module")
def llm(gemma3_gguf: Path) -> Iterator[Any]:
    lib = adapter.llama_module()
    model = lib.Llama(str(gemma3_gguf), n_ctx=512, n_threads=2, n_threads_batch=2, swa_full=False, verbose=False)
    yield model
    model.close()


def _reference(llm: Any, prompt: list[int], s: Sampling) -> list[int]:
    """Today's path: llama-cpp-python's own generate loop, as the engine used it before issue 15."""
    llm.reset()
    llm.set_seed(s.seed)
    out: list[int] = []
    for token in llm.generate(prompt, top_k=s.top_k, top_p=s.top_p, min_p=s.min_p, temp=s.temperature,
                              repeat_penalty=s.repeat_penalty, reset=True):
        out.append(token)
        if len(out) == N_TOKENS:
            break
    return out


def _native(llm: Any, prompt: list[int], s: Sampling, on_device: bool) -> tuple[list[int], NativeModel]:
    native = NativeModel(llm, adapter.llama_module(), sample_on_device=on_device)
    native.reset()
    out = list(native.generate(prompt, s, N_TOKENS))
    native.close()
    return out, native


SAMPLINGS = [
    Sampling(temperature=1.0, top_k=64, top_p=0.95, min_p=0.0, repeat_penalty=1.0, seed=1),
    Sampling(temperature=0.7, top_k=40, top_p=0.9, min_p=0.05, repeat_penalty=1.0, seed=2),
    Sampling(temperature=1.5, top_k=200, top_p=0.99, min_p=0.0, repeat_penalty=1.0, seed=3),
    Sampling(temperature=0.0, top_k=64, top_p=0.95, min_p=0.0, repeat_penalty=1.0, seed=4),
    Sampling(temperature=1.0, top_k=64, top_p=0.95, min_p=0.0, repeat_penalty=1.3, seed=5),
]


@pytest.mark.parametrize("s", SAMPLINGS, ids=lambda s: f"t{s.temperature}-k{s.top_k}-rp{s.repeat_penalty}")
def test_native_loop_samples_the_same_tokens_as_llama_generate(llm: Any, s: Sampling) -> None:
    prompt = llm.tokenize(PROMPT, add_bos=True, special=True)
    expected = _reference(llm, prompt, s)
    assert len(expected) == N_TOKENS
    host, _ = _native(llm, prompt, s, on_device=False)
    device, native = _native(llm, prompt, s, on_device=True)
    assert host == expected
    assert device == expected
    if s.repeat_penalty == 1.0:
        assert not native.samples_on_device, "close() detaches the device sampler"


def test_device_sampling_is_really_used_for_top_k(llm: Any) -> None:
    native = NativeModel(llm, adapter.llama_module(), sample_on_device=True)
    native.reset()
    list(native.generate(llm.tokenize(b"Hello", add_bos=True), SAMPLINGS[0], 2))
    assert native.samples_on_device
    assert adapter.llama_module().llama_get_sampled_candidates_count_ith(llm.ctx, -1) == 64
    native.close()
    assert not native.samples_on_device


def test_kv_record_follows_every_decoded_token_also_after_a_stop(llm: Any) -> None:
    lib = adapter.llama_module()
    native = NativeModel(llm, lib, sample_on_device=False)
    native.reset()
    prompt = llm.tokenize(PROMPT, add_bos=True, special=True)
    stop = threading.Event()
    got: list[int] = []
    for token in native.generate(prompt, SAMPLINGS[0], 100, stop):
        got.append(token)
        if len(got) == 5:
            stop.set()  # the token in hand was already queued: the record must include it
    assert len(got) == 6, "the stop is seen before the next token is queued"
    cached = native.cached_tokens
    assert cached[: len(prompt)] == prompt
    assert cached[len(prompt) :] == got[:5]
    assert int(lib.llama_memory_seq_pos_max(lib.llama_get_memory(llm.ctx), 0)) == len(cached) - 1
    assert list(llm.input_ids[: llm.n_tokens]) == cached, "Llama's own record is kept in step"
    assert native.keep_prefix(len(prompt)) == len(prompt)
    assert int(lib.llama_memory_seq_pos_max(lib.llama_get_memory(llm.ctx), 0)) == len(prompt) - 1
    native.close()


def test_token_text_is_cached_and_keeps_special_tokens(llm: Any) -> None:
    native = NativeModel(llm, adapter.llama_module())
    eot = llm.tokenize(b"<end_of_turn>", add_bos=False, special=True)
    assert len(eot) == 1
    assert native.token_bytes(eot[0]) == b"<end_of_turn>"
    assert native.token_bytes(eot[0]) is native.token_bytes(eot[0])
    assert native.is_eog(llm.token_eos())
    assert native.n_ctx_train == 32768
    assert native.n_swa == 512


def test_load_progress_wraps_the_default_params_only_while_loading(gemma3_gguf: Path) -> None:
    lib = adapter.llama_module()
    original = lib.llama_cpp.llama_model_default_params
    seen: list[float] = []
    def progress(fraction: float) -> bool:
        seen.append(fraction)
        return True

    with adapter.load_progress(progress):
        assert lib.llama_cpp.llama_model_default_params is not original
        model = lib.Llama(str(gemma3_gguf), n_ctx=256, verbose=False)
    model.close()
    assert lib.llama_cpp.llama_model_default_params is original
    assert seen and seen[-1] == pytest.approx(1.0)


def test_the_adapter_is_pinned_to_the_installed_llama_cpp_python() -> None:
    assert importlib.metadata.version("llama-cpp-python") == adapter.TESTED_VERSION
    pyproject = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert f'"llama-cpp-python=={adapter.TESTED_VERSION}"' in pyproject


def test_no_private_llama_attribute_is_used_outside_the_adapter() -> None:
    """``Llama._model``, ``._ctx``, ``._input_ids`` … and ``llama_cpp.llama_cpp`` only in llama_adapter.py."""
    offenders = []
    for path in (REPO / "gemmadesk").rglob("*.py"):
        if path.name == "llama_adapter.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in {"_model", "_ctx", "_input_ids",
                                                                   "_sampler", "_seed", "_scores", "llama_cpp"}:
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} .{node.attr}")
    assert not offenders, offenders


def test_sliding_window_cache_forces_a_full_prompt_when_the_window_is_gone(gemma3_gguf: Path) -> None:
    """Gemma 3's sliding-window layers keep only the last n_swa + n_ubatch = 512 + 64 positions (rounded up
    to 768 cells; swa_full=False): after a ~960-token turn, a conversation that shares only an early prefix
    cannot reuse it (the window it needs is gone), so the whole prompt is evaluated, and the reply is the
    one a fresh cache gives."""
    long_text = "The lighthouse stood on the rock. " * 120  # ~960 tokens, beyond the 768 cells of the SWA cache
    early = [ChatMessage("user", "Hello there. " + long_text)]
    edited = [ChatMessage("user", "Hello there! Something else entirely.")]
    greedy = SamplingParams(temperature=0.0, max_tokens=8)

    def reply(engine: Engine, messages: list[ChatMessage]) -> ReplyDone:
        done = list(engine.chat_stream(messages, greedy))[-1]
        assert isinstance(done, ReplyDone)
        return done

    settings = DirectLoadSettings(model_path=str(gemma3_gguf), n_ctx=1024, n_batch=64, n_ubatch=64, n_threads=2)
    engine = Engine()
    engine.load(settings)
    try:
        reply(engine, early)
        after_long = reply(engine, edited)
        assert after_long.stats.prompt_tokens_evaluated == after_long.stats.prompt_tokens
        follow_up = edited + [ChatMessage("assistant", after_long.answer), ChatMessage("user", "More.")]
        continued = reply(engine, follow_up)
        assert continued.stats.prompt_tokens_evaluated < continued.stats.prompt_tokens
        engine.unload()
        engine.load(settings)
        fresh = reply(engine, edited)
        assert fresh.answer == after_long.answer
        assert reply(engine, follow_up).answer == continued.answer
    finally:
        engine.unload()


def test_device_sampling_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GEMMADESK_DEVICE_SAMPLING", raising=False)
    assert adapter.device_sampling(True) and not adapter.device_sampling(False)
    monkeypatch.setenv("GEMMADESK_DEVICE_SAMPLING", "0")
    assert not adapter.device_sampling(True)
    monkeypatch.setenv("GEMMADESK_DEVICE_SAMPLING", "1")
    assert adapter.device_sampling(False)
    monkeypatch.setenv("GEMMADESK_DEVICE_SAMPLING", "maybe")
    assert adapter.device_sampling(True) and not adapter.device_sampling(False)


def test_engine_replies_the_same_with_top_k_in_the_graph(gemma3_gguf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine path a GPU takes (device sampling), forced on the CPU backend, streams the same reply."""
    messages = [ChatMessage("user", "Write a sentence about the sea.")]
    replies = []
    for value in ("0", "1"):
        monkeypatch.setenv("GEMMADESK_DEVICE_SAMPLING", value)
        engine = Engine()
        engine.load(DirectLoadSettings(model_path=str(gemma3_gguf), n_ctx=512, n_threads=2))
        try:
            done = list(engine.chat_stream(messages, SamplingParams(max_tokens=20, seed=11)))[-1]
            assert isinstance(done, ReplyDone)
            replies.append((done.answer, done.stats.completion_tokens))
        finally:
            engine.unload()
    assert replies[0] == replies[1]
    assert replies[0][1] >= 1


def test_a_prompt_beyond_the_context_is_a_decode_error_and_the_record_stays_true(llm: Any) -> None:
    """A real llama_decode failure (no room left in the KV cache): DecodeError, nothing half-recorded."""
    lib = adapter.llama_module()
    native = NativeModel(llm, lib)
    native.reset()
    too_long = llm.tokenize(b"word " * 700, add_bos=True)
    assert len(too_long) > 512
    with pytest.raises(adapter.DecodeError, match="llama_decode returned"):
        list(native.generate(too_long, SAMPLINGS[0], 4))
    cached = native.cached_tokens
    assert cached == too_long[: len(cached)]
    assert int(lib.llama_memory_seq_pos_max(lib.llama_get_memory(llm.ctx), 0)) == len(cached) - 1
    assert llm.n_tokens == len(cached)
    native.reset()
    assert native.cached_tokens == [] and llm.n_tokens == 0


def test_the_kv_record_is_llamas_own_so_other_evaluators_stay_in_step(llm: Any) -> None:
    """Anything that evaluates into the context through ``Llama.eval`` (the multimodal path does) keeps
    ``Llama.input_ids[:n_tokens]``; the native loop continues from that record, not from a stale copy."""
    native = NativeModel(llm, adapter.llama_module())
    native.reset()
    prompt = llm.tokenize(PROMPT, add_bos=True, special=True)
    llm.eval(prompt[:-1])  # someone else evaluates most of the prompt
    assert native.cached_tokens == prompt[:-1]
    greedy = SAMPLINGS[3]
    continued = list(native.generate(prompt[-1:], greedy, 8))
    native.reset()
    fresh = list(native.generate(prompt, greedy, 8))
    assert continued == fresh
    assert list(llm.input_ids[: llm.n_tokens]) == native.cached_tokens == prompt + fresh[:7]
