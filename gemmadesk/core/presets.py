"""System-prompt presets: a few built in, and the user's own, saved in ``presets.json`` beside the settings.

The file is a :class:`~gemmadesk.core.versioned_file.VersionedFile` (atomic writes, a corrupt file kept aside,
a newer one never overwritten). Its content is checked like any input: at most :data:`MAX_PRESETS` presets,
names of at most :data:`MAX_NAME_CHARS` characters without control characters, texts of at most
:data:`MAX_TEXT_CHARS`; entries that do not fit are left out and said once (``problems``). A user preset may
not take a built-in's name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gemmadesk.core.versioned_file import VersionedFile

VERSION = 1
MAX_PRESETS = 200
MAX_NAME_CHARS = 60
MAX_TEXT_CHARS = 20_000
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Preset:
    name: str
    text: str
    builtin: bool = False


BUILTIN = (
    Preset("Concise", "Answer briefly and directly. Use short paragraphs or a list; skip pleasantries.", True),
    Preset("Teacher", "Explain step by step for a curious beginner. Define new terms, give one small example, "
           "and end with a question that checks understanding.", True),
    Preset("Code helper", "You are a careful senior programmer. Answer with working code first, then a short "
           "explanation. Point out edge cases and mention the language version you assume.", True),
    Preset("Translator", "Translate what the user writes. If it is in English, translate it into the language "
           "they name (French if none); otherwise translate it into English. Reply with the translation only.",
           True),
    Preset("Proofreader", "Correct the spelling, grammar and punctuation of the user's text, keeping its meaning "
           "and tone. Reply with the corrected text, then a short list of the changes.", True),
)  # fmt: skip


class PresetError(ValueError):
    """A preset that cannot be saved; ``str()`` says why."""


def clean_name(name: str) -> str:
    """The name as it is stored: control characters become spaces, runs of spaces one, trimmed."""
    return " ".join(_CONTROL.sub(" ", name).split())


class PresetStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []
        self._file = VersionedFile(path, what="the system-prompt presets", version_key="version", current=VERSION)

    def user_presets(self) -> list[Preset]:
        loaded = self._file.load()
        if loaded.problem and loaded.problem not in self.problems:
            self.problems.append(loaded.problem)
        data = loaded.data or {}
        raw = data.get("presets", [])
        out: list[Preset] = []
        dropped = 0
        taken = {p.name.casefold() for p in BUILTIN}
        for item in raw if isinstance(raw, list) else []:
            preset = _checked(item)
            if preset is None or preset.name.casefold() in taken or len(out) >= MAX_PRESETS:
                dropped += 1
                continue
            taken.add(preset.name.casefold())
            out.append(preset)
        if dropped:
            sentence = (f"{dropped} system-prompt preset{'s' if dropped != 1 else ''} in {self.path} could not be "
                        f"used (too long, unnamed or a duplicate) and {'were' if dropped != 1 else 'was'} left out.")
            if sentence not in self.problems:
                self.problems.append(sentence)
        return out

    def all(self) -> list[Preset]:
        """Built-in presets first, then the user's, in the order saved."""
        return [*BUILTIN, *self.user_presets()]

    def save(self, name: str, text: str) -> Preset:
        """Add the user's preset ``name`` or replace its text (raises :class:`PresetError`, or OSError when
        the file cannot be written or is from a newer GemmaDesk)."""
        name = clean_name(name)
        if not name:
            raise PresetError("A preset needs a name.")
        if len(name) > MAX_NAME_CHARS:
            raise PresetError(f"A preset's name can have at most {MAX_NAME_CHARS} characters.")
        if len(text) > MAX_TEXT_CHARS:
            raise PresetError(f"A preset's text can have at most {MAX_TEXT_CHARS:,} characters.")
        if "\x00" in text:
            raise PresetError("A preset's text cannot contain a NUL character.")
        if any(p.name.casefold() == name.casefold() for p in BUILTIN):
            raise PresetError(f"“{name}” is a built-in preset; choose another name.")
        with self._file.lock():
            presets = [p for p in self.user_presets() if p.name.casefold() != name.casefold()]
            if len(presets) >= MAX_PRESETS:
                raise PresetError(f"There are already {MAX_PRESETS} presets; delete one first.")
            presets.append(Preset(name, text))
            self._write(presets)
        return Preset(name, text)

    def delete(self, name: str) -> bool:
        """Delete the user's preset ``name``; False when there is none (built-ins cannot be deleted)."""
        with self._file.lock():
            presets = self.user_presets()
            kept = [p for p in presets if p.name.casefold() != name.casefold()]
            if len(kept) == len(presets):
                return False
            self._write(kept)
        return True

    def _write(self, presets: list[Preset]) -> None:
        self._file.save({"version": VERSION, "presets": [{"name": p.name, "text": p.text} for p in presets]})


def _checked(item: Any) -> Preset | None:
    if not isinstance(item, dict):
        return None
    name, text = item.get("name"), item.get("text")
    if not isinstance(name, str) or not isinstance(text, str) or "\x00" in text or len(text) > MAX_TEXT_CHARS:
        return None
    name = clean_name(name)
    if not name or len(name) > MAX_NAME_CHARS:
        return None
    return Preset(name, text)
