"""``gemmadesk-cli chat MODEL --image PATH [--image PATH] [--audio PATH] -p "…"`` through the real entry point,
real llama.cpp + mtmd, the synthetic Gemma 4 model and projector (issue 14 phase 2). Before this work the
CLI had no --image/--audio: every test here fails on the old code (argparse exits 2)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from gemmadesk.cli import main
from gemmadesk.core.history import HistoryStore
from gemmadesk.core.paths import app_paths
from gemmadesk.core.store import ModelStore
from tests.support.media_files import png, wav, write

pytestmark = pytest.mark.slow
FAST = ["--json", "--max-tokens", "3", "--ctx", "1024", "--seed", "1"]


def test_images_and_audio_in_one_message_are_counted_answered_and_saved(  # type: ignore[no-untyped-def]
    tmp_path: Path, tiny_model: Path, projectors: Callable[..., Path], capsys
) -> None:
    a = write(tmp_path, "first.png", png(96, 96, seed=1))
    b = write(tmp_path, "second.png", png(144, 96, seed=2))
    clip = write(tmp_path, "voice.wav", wav(0.5))
    code = main(["chat", str(tiny_model), "--mmproj", str(projectors("tiny")), "--image", str(a), "--image", str(b),
                 "--audio", str(clip), "-p", "Compare them.", *FAST])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    out = json.loads(captured.out)
    assert [(x["name"], x["kind"]) for x in out["attachments"]] == [
        ("first.png", "image"), ("second.png", "image"), ("voice.wav", "audio")]
    assert out["stats"]["prompt_tokens"] > 2 * 70  # two images of at least 70 tokens each, and the audio
    assert out["model"]["supports_images"] and out["model"]["supports_audio"]
    history = HistoryStore()
    try:
        user, reply = history.messages(out["conversation_id"])
        assert [x.name for x in user.attachments] == ["first.png", "second.png", "voice.wav"]
        assert all(x.path.is_relative_to(app_paths().data_dir / "attachments") and x.path.exists()
                   for x in user.attachments)
        assert reply.content == out["reply"]
    finally:
        history.close()
    assert a.read_bytes() == png(96, 96, seed=1), "the user's file is left as it was"


def test_an_installed_model_uses_its_installed_projector(  # type: ignore[no-untyped-def]
    tmp_path: Path, tiny_model: Path, projectors: Callable[..., Path], capsys
) -> None:
    store = ModelStore(app_paths())
    model = store.import_file(tiny_model)
    store.attach_mmproj(model.id, projectors("tiny"), None, owned=False)
    photo = write(tmp_path, "p.png", png(64, 64))
    assert main(["chat", model.id, "--image", str(photo), "-p", "What?", *FAST]) == 0
    assert json.loads(capsys.readouterr().out)["stats"]["prompt_tokens"] > 70


@pytest.mark.parametrize("case", ["no projector", "not an image", "audio as image", "missing file"])
def test_refusals_are_one_sentence_and_nothing_is_loaded_or_saved(  # type: ignore[no-untyped-def]
    tmp_path: Path, tiny_model: Path, case: str, capsys
) -> None:
    text = write(tmp_path, "notes.png", b"just some text, named like a picture")
    clip = write(tmp_path, "v.wav", wav(0.2))
    args = {"no projector": ["--image", str(write(tmp_path, "ok.png", png(32, 32)))],
            "not an image": ["--image", str(text)], "audio as image": ["--image", str(clip)],
            "missing file": ["--image", str(tmp_path / "nowhere.png")]}[case]
    assert main(["chat", str(tiny_model), *args, "-p", "Hi", *FAST]) == 1
    err = capsys.readouterr().err.strip()
    expected = {"no projector": "has no projector (mmproj) installed", "not an image": "is not an image or audio file",
                "audio as image": "pass it with --audio", "missing file": "cannot be read"}[case]
    assert expected in err and err.startswith("error: ") and err.count("\n") == 0
    history = HistoryStore()
    try:
        assert history.list_conversations() == []
    finally:
        history.close()


def test_audio_with_a_vision_only_projector_is_refused_after_loading(  # type: ignore[no-untyped-def]
    tmp_path: Path, tiny_model: Path, projectors: Callable[..., Path], capsys
) -> None:
    clip = write(tmp_path, "v.wav", wav(0.2))
    code = main(["chat", str(tiny_model), "--mmproj", str(projectors("tiny", audio=False)), "--audio", str(clip),
                 "-p", "Hear?", *FAST])
    assert code == 1
    assert "takes images but not audio" in capsys.readouterr().err
