from __future__ import annotations

import json
from pathlib import Path

from gemmadesk.core.paths import app_paths
from gemmadesk.core.settings import SCHEMA_VERSION, Settings, SettingsStore


def test_paths_follow_gemmadesk_home(gemmadesk_home: Path) -> None:
    paths = app_paths()
    assert paths.data_dir == gemmadesk_home.resolve() / "data"
    assert paths.history_db.parent == paths.data_dir
    assert paths.models_dir.is_relative_to(gemmadesk_home.resolve())


def test_paths_without_override_use_platformdirs() -> None:
    paths = app_paths(env={})
    assert "GemmaDesk" in str(paths.config_dir) and "GemmaDesk" in str(paths.data_dir)


def test_round_trip_and_atomic_save(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path / "settings.json")
    assert store.load() == Settings()
    s = Settings(context_length=32768, kv_cache_type="q8_0", system_prompt="Be brief.")
    store.save(s)
    assert store.load() == s
    assert json.loads((tmp_path / "settings.json").read_text())["schema_version"] == SCHEMA_VERSION
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.json"], "no temp files left behind"


def test_migration_from_v1(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"schema_version": 1, "flash_attention": False, "context_length": 4096}))
    s = SettingsStore(path).load()
    assert (s.flash_attn, s.context_length, s.schema_version) == ("off", 4096, SCHEMA_VERSION)


def test_corrupt_file_is_kept_aside_and_defaults_used(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text("{not json")
    store = SettingsStore(path)
    assert store.load() == Settings()
    assert (tmp_path / "settings.json.corrupt-1").read_text() == "{not json"
    assert "corrupt" in store.problems[0]


def test_wrong_types_fall_back_per_field(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"schema_version": 2, "context_length": "big", "temperature": 1, "top_k": True}))
    store = SettingsStore(path)
    s = store.load()
    assert s.context_length == Settings().context_length and s.temperature == 1.0
    assert s.top_k == Settings().top_k
    assert len(store.problems) == 2


def test_migration_from_v2_drops_the_field_nothing_read(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"schema_version": 2, "recent_imports": ["/a.gguf"], "top_k": 40}))
    store = SettingsStore(path)
    s = store.load()
    assert (s.top_k, s.schema_version) == (40, SCHEMA_VERSION) and store.problems == []
    store.save(s)
    assert "recent_imports" not in json.loads(path.read_text())
