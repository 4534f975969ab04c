"""model_check: what makes a file a model GemmaDesk can run, and the guards on the lists it relies on."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from gemmadesk.core.model_check import KNOWN_ARCHITECTURES, ModelFileError, check_model_file
from tests.support.tiny_gguf import projector_gguf, write_gguf

REPO = Path(__file__).resolve().parents[2]


def test_every_known_architecture_is_in_the_installed_llama_cpp() -> None:
    """KNOWN_ARCHITECTURES is copied from llama.cpp's source of the pinned llama-cpp-python: each name must
    still be a string in the installed libllama (an upgrade that drops or renames one is noticed here)."""
    import llama_cpp

    libs = [p for p in (Path(llama_cpp.__file__).parent / "lib").iterdir() if "llama" in p.name and p.is_file()]
    assert libs, "libllama not found beside llama_cpp"
    data = max((p.read_bytes() for p in libs), key=len)
    missing = sorted(a for a in KNOWN_ARCHITECTURES if a.encode() + b"\0" not in data)
    assert missing == []
    assert "gemma4" in KNOWN_ARCHITECTURES and "clip" not in KNOWN_ARCHITECTURES


def test_the_real_gemma3_and_a_gemma4_shaped_file_pass(gemma3_gguf: Path, tmp_path: Path) -> None:
    assert check_model_file(gemma3_gguf, architecture="gemma3", n_layer=18).architecture == "gemma3"
    assert check_model_file(write_gguf(tmp_path / "e2b.gguf"), architecture="gemma4", n_layer=35)
    assert check_model_file(projector_gguf(tmp_path / "mmproj.gguf"), projector=True)


@pytest.mark.parametrize(("kwargs", "expected", "reason"), [
    ({"architecture": "llama"}, {"architecture": "gemma4"}, "is a 'llama' model, not Gemma 4 E2B"),
    ({"block_count": 30}, {"architecture": "gemma4", "n_layer": 35}, "has 30 layers where Gemma 4 E2B has 35"),
    ({"block_count": None}, {"architecture": "gemma4", "n_layer": 35}, "has no layer count"),
    ({"architecture": "llama"}, {"projector": True}, "not the vision projector"),
    ({"architecture": "evil\x1b[31m"}, {}, "architecture 'evil\\x1b[31m'"),
])
def test_the_wrong_model_is_named_in_the_message(tmp_path: Path, kwargs: dict[str, object],
                                                 expected: dict[str, object], reason: str) -> None:
    path = write_gguf(tmp_path / "x.gguf", **kwargs)
    with pytest.raises(ModelFileError) as caught:
        check_model_file(path, expected_name="Gemma 4 E2B", **expected)  # type: ignore[arg-type]
    assert reason in str(caught.value)
    assert "\x1b" not in str(caught.value), "no terminal escape reaches the message"


def test_no_private_huggingface_hub_module_is_imported() -> None:
    """Issue 12.5: huggingface_hub is used through its public API only (get_token, get_session, …)."""
    offenders = []
    for path in (REPO / "gemmadesk").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                if name.startswith("huggingface_hub") and any(p.startswith("_") for p in name.split(".")):
                    offenders.append(f"{path.relative_to(REPO)}: {name}")
    assert offenders == []
