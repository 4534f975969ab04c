"""Typed user settings, saved as JSON with a schema version and step-by-step migrations.

Unknown keys are dropped, wrong types fall back to the default for that field (and the problem is
reported), and a corrupt file is moved aside (``settings.json.corrupt-<n>``) rather than lost.
Writes are atomic (write a temp file, then ``os.replace``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from gemmadesk.core.paths import atomic_write_text

log = logging.getLogger(__name__)

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


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    version = int(data.get("schema_version", 1))
    if version > SCHEMA_VERSION:
        log.warning("settings written by a newer GemmaDesk (schema %s); reading what we know", version)
        return data
    while version < SCHEMA_VERSION:
        data = MIGRATIONS[version](dict(data))
        version += 1
        data["schema_version"] = version
    return data


def from_dict(data: dict[str, Any]) -> tuple[Settings, list[str]]:
    """Build Settings from loaded JSON; returns (settings, problems)."""
    problems: list[str] = []
    data = migrate(dict(data))
    defaults = Settings()
    values: dict[str, Any] = {}
    for f in fields(Settings):
        if f.name not in data:
            continue
        value = data[f.name]
        default = getattr(defaults, f.name)
        ok = isinstance(value, type(default)) and not (isinstance(value, bool) and not isinstance(default, bool))
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if ok:
            values[f.name] = value
        else:
            problems.append(f"setting {f.name!r} has the wrong type ({type(value).__name__}); using default")
    values["schema_version"] = SCHEMA_VERSION
    return Settings(**values), problems


class SettingsStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[str] = []

    def load(self) -> Settings:
        self.problems = []
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return Settings()
        except OSError as exc:
            self.problems.append(f"could not read settings ({exc}); using defaults")
            return Settings()
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("top level is not an object")
        except ValueError as exc:
            aside = self._move_aside()
            self.problems.append(f"settings file was corrupt ({exc}); kept it as {aside.name}, using defaults")
            return Settings()
        settings, problems = from_dict(data)
        self.problems.extend(problems)
        return settings

    def save(self, settings: Settings) -> None:
        atomic_write_text(self.path, json.dumps(asdict(settings), indent=2, sort_keys=True))

    def _move_aside(self) -> Path:
        n = 1
        while True:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{n}")
            if not aside.exists():
                self.path.replace(aside)
                return aside
            n += 1
