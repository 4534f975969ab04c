"""``gemmadesk serve`` as a user runs it: a child process, OpenAI's client, Ctrl+C."""

from __future__ import annotations

import signal
from pathlib import Path

import openai
import pytest

from tests.hostile.conftest import run_cli
from tests.support.serving import gemmadesk_serve_process, wait_loaded

pytestmark = pytest.mark.slow


def test_serve_answers_openai_clients_and_stops_on_ctrl_c(gemma3_gguf: Path) -> None:
    with gemmadesk_serve_process(str(gemma3_gguf), "--ctx", "1024", env={"GEMMADESK_API_KEY": "k1"}) as (proc, url):
        assert url.startswith("http://127.0.0.1:")
        wait_loaded(url)
        client = openai.OpenAI(base_url=url, api_key="k1", max_retries=0, timeout=60)
        model = client.models.list().data[0].id
        assert model == gemma3_gguf.name.removesuffix(".gguf")
        reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
        assert reply.usage is not None and reply.usage.completion_tokens >= 1
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url, api_key="other", max_retries=0).models.list()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--host", "0.0.0.0"], "--allow-network"),
        (["--host", "0.0.0.0", "--allow-network"], "--api-key"),
        (["--host", "192.0.2.1", "--api-key", "k"], "--allow-network"),
    ],
)
def test_serve_refuses_other_addresses_without_flag_and_key(gemma3_gguf: Path, args: list[str], needle: str) -> None:
    result = run_cli("serve", str(gemma3_gguf), *args, timeout=60)
    assert result.returncode == 2
    assert needle in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_serve_missing_model_is_one_sentence(tmp_path: Path) -> None:
    result = run_cli("serve", str(tmp_path / "nothing-here.gguf"), timeout=60)
    assert result.returncode == 1
    assert "does not exist" in result.stderr and result.stderr.count("\n") == 1, result.stderr
