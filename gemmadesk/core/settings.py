"""Typed user settings, saved as JSON with a schema version and step-by-step migrations.

Unknown keys are dropped, wrong types fall back to the default for that field (and the problem is
reported). Versioning is :mod:`gemmadesk.core.versioned_file`'s: a corrupt file (not JSON, or a
``schema_version`` such as ``"abc"`` or ``0``) is moved aside (``settings.json.corrupt-<n>``) rather than
lost, a file from a newer GemmaDesk is left untouched, an older one is migrated. Writes are atomic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from gemmadesk.core.types import SamplingParams
from gemmadesk.core.versioned_file import NewerFileError, VersionedFile

log = logging.getLogger(__name__)

__all__ = ["SCHEMA_VERSION", "NewerFileError", "Settings", "SettingsStore", "from_dict"]

SCHEMA_VERSION = 3


@dataclass
class Settings:
    """Every field is read: the context, KV type, flash attention and thread count plan and load models
    (the app and ``chat``); the sampling fields, system prompt and thinking are a new chat's defaults."""

    schema_version: int = SCHEMA_VERSION
    context_length: int = 8192
    kv_cache_type: str = "f16"  # f16 | q8_0 | q4_0
    flash_attn: str = "auto"  # auto | on | off
    use_hf_cache: bool = False  # store models in the user's Hugging Face cache instead of ours
    models_dir: str = ""  # empty: the default under the data dir
    enable_thinking: bool = False
    temperature: float = 1.0
    top_p: float = 0.95
    top_k: int = 64
    max_tokens: int = 2048
    system_prompt: str = ""
    last_model: str = ""
    n_threads: int = 0  # 0: let the engine choose
    theme: str = "system"  # system | light | dark
    serve_port: int = 8089  # the app's "Serve this model on localhost:PORT" switch

    def new_chat_sampling(self) -> SamplingParams:
        """A new conversation's sampling settings: the user's defaults."""
        return SamplingParams(temperature=self.temperature, top_p=self.top_p, top_k=self.top_k,
                              max_tokens=self.max_tokens, thinking=self.enable_thinking)  # fmt: skip


def _migrate_1_to_2(data: dict[str, Any]) -> dict[str, Any]:
    # v1 stored flash attention as a bool ("flash_attention"); v2 has a tri-state "flash_attn".
    if "flash_attention" in data:
        data["flash_attn"] = "on" if data.pop("flash_attention") else "off"
    return data


def _migrate_2_to_3(data: dict[str, Any]) -> dict[str, Any]:
    # v3 drops "recent_imports": nothing ever read it (the model store is the list of imported files).
    data.pop("recent_imports", None)
    return data


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _migrate_1_to_2, 2: _migrate_2_to_3}
MAX_SETTINGS_BYTES = 1024 * 1024  # a settings file is a few hundred bytes; anything huge is not ours


def from_dict(data: dict[str, Any]) -> tuple[Settings, list[str]]:
    """Build Settings from loaded JSON that is already at :data:`SCHEMA_VERSION`; returns (settings,
    problems). Unknown keys are dropped; a value of the wrong type (or a text with control characters
    such as NUL, which no path or prompt field can use) falls back to that field's default."""
    problems: list[str] = []
    defaults = Settings()
    values: dict[str, Any] = {}
    for f in fields(Settings):
        if f.name not in data or f.name == "schema_version":
            continue
        value = data[f.name]
        default = getattr(defaults, f.name)
        ok = isinstance(value, type(default)) and not (isinstance(value, bool) and not isinstance(default, bool))
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if ok and isinstance(value, float) and value != value:  # NaN
            ok = False
        if ok and isinstance(value, str) and "\x00" in value:
            ok = False
        if ok and isinstance(value, list) and not all(isinstance(v, str) and "\x00" not in v for v in value):
            ok = False
        if ok:
            values[f.name] = value
        else:
            problems.append(f"Setting {f.name!r} had a value GemmaDesk cannot use ({_kind(value)}); "
                            "it is back to its default.")
    values["schema_version"] = SCHEMA_VERSION
    return Settings(**values), problems


def _kind(value: object) -> str:
    return type(value).__name__ if not isinstance(value, str) else "text with control characters"


class SettingsStore:
    """``settings.json`` through :class:`~gemmadesk.core.versioned_file.VersionedFile`: a corrupt file is
    kept aside, a newer one is never overwritten (``save`` raises :class:`NewerFileError`, an OSError),
    an older one is migrated. ``problems`` holds one sentence per thing the user should know."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []
        self._file = VersionedFile(path, what="the settings file", version_key="schema_version",
                                   current=SCHEMA_VERSION, migrations=MIGRATIONS, max_bytes=MAX_SETTINGS_BYTES)

    def load(self) -> Settings:
        self.problems = []
        loaded = self._file.load()
        if loaded.problem:
            self.problems.append(loaded.problem)
            log.warning(loaded.problem)
        if loaded.data is None:
            return Settings()
        settings, problems = from_dict(loaded.data)
        self.problems.extend(problems)
        return settings

    def save(self, settings: Settings) -> None:
        self._file.save(asdict(settings))
