"""System-prompt presets (issue 11 item 9): built-ins, the user's own saved beside the settings."""

from __future__ import annotations

import json
from pathlib import Path

from gemmadesk.core.paths import app_paths
from gemmadesk.core.presets import BUILTIN, PresetStore


def test_presets_are_saved_replaced_and_deleted() -> None:
    path = app_paths().presets_file
    store = PresetStore(path)
    assert store.all() == list(BUILTIN) and not path.exists()
    store.save("  Pirate \n voice ", "Talk like a pirate.")
    store.save("Poet", "Answer in verse.")
    store.save("pirate voice", "Talk like a pirate, briefly.")  # the same name in any case: replaced, now last
    again = PresetStore(path)
    assert [(p.name, p.text, p.builtin) for p in again.user_presets()] == [
        ("Poet", "Answer in verse.", False), ("pirate voice", "Talk like a pirate, briefly.", False)]
    assert json.loads(path.read_text())["version"] == 1
    assert again.delete("POET") and not again.delete("Poet") and not again.delete("Concise")
    assert [p.name for p in PresetStore(path).all()] == [*(p.name for p in BUILTIN), "pirate voice"]


def test_builtins_have_names_and_text(tmp_path: Path) -> None:
    names = [p.name for p in BUILTIN]
    assert len(set(names)) == len(names) and all(p.text.strip() and p.builtin for p in BUILTIN)
