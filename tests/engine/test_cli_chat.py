"""`gemmadesk chat`: one-shot JSON for scripts and the interactive loop, on the real Gemma 3 270M."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gemmadesk.cli import main
from gemmadesk.core.history import HistoryStore

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def _run(argv: list[str]) -> int:
    """``gemmadesk chat ARGV`` through the real command-line entry point, in this process."""
    return main(["chat", *argv])


def test_one_shot_json_prints_reply_and_stats_and_saves_history(gemma3_gguf: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = _run([str(gemma3_gguf), "-p", "The sky is", "--json", "--max-tokens", "8", "--ctx", "512", "--seed", "1"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert isinstance(out["reply"], str)
    assert 1 <= out["stats"]["completion_tokens"] <= 8
    assert out["model"]["architecture"] == "gemma3"
    assert out["model"]["n_ctx"] == 512
    store = HistoryStore()
    try:
        msgs = store.messages(out["conversation_id"])
        assert [m.role for m in msgs] == ["user", "assistant"]
        assert msgs[0].content == "The sky is"
        assert msgs[1].content == out["reply"]
    finally:
        store.close()


def test_one_shot_without_history(gemma3_gguf: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = _run([str(gemma3_gguf), "-p", "Hi", "--json", "--max-tokens", "2", "--ctx", "256", "--no-history"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["conversation_id"] is None
    store = HistoryStore()
    assert store.list_conversations() == []
    store.close()


def test_bad_model_file_is_a_clear_error(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"\0" * 1000)
    assert _run([str(bad), "-p", "Hi"]) == 1
    assert "not a GGUF" in capsys.readouterr().err


def test_unknown_model_id(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit, match="neither a file nor an installed model id"):
        _run(["no-such-model", "-p", "Hi"])


def test_interactive_session_over_stdin(gemma3_gguf: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gemmadesk", "chat", str(gemma3_gguf), "--ctx", "512", "--max-tokens", "6"],
        input="Hello there\n/think on\nSecond message\n/quit\n",
        capture_output=True, text=True, cwd=REPO, timeout=300, env={**os.environ},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("you> ") == 4
    assert "thinking on" in proc.stderr
    assert "prompt format fallback:gemma" in proc.stderr
    store = HistoryStore()
    try:
        (conv,) = store.list_conversations()
        assert [m.content for m in store.messages(conv.id) if m.role == "user"] == ["Hello there", "Second message"]
    finally:
        store.close()


def test_installed_model_id_is_resolved_through_the_store(gemma3_gguf: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from gemmadesk.core.store import ModelStore

    model = ModelStore().import_file(gemma3_gguf)
    assert not Path(model.id).exists()
    code = _run([model.id, "-p", "Hi", "--json", "--max-tokens", "2", "--ctx", "256", "--no-history"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert out["model"]["model_path"] == str(gemma3_gguf.resolve())
