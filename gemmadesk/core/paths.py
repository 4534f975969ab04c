"""Where GemmaDesk keeps its files.

Everything lives under the platformdirs locations for "GemmaDesk", unless the environment variable
``GEMMADESK_HOME`` is set: then config, data, cache and logs all go below that one folder (tests and
portable installs use this). Nothing is ever written next to the executable or inside a bundle.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_DIR_NAME = "GemmaDesk"
HOME_ENV = "GEMMADESK_HOME"


class _Under:
    """A file or folder at a fixed name inside one of the app's folders (a read-only attribute)."""

    def __init__(self, folder: str, name: str) -> None:
        self.folder, self.name = folder, name

    def __get__(self, paths: object, owner: object = None) -> Path:
        return Path(getattr(paths, self.folder)) / self.name


@dataclass(frozen=True)
class AppPaths:
    config_dir: Path
    data_dir: Path
    cache_dir: Path
    log_dir: Path

    settings_file = _Under("config_dir", "settings.json")
    presets_file = _Under("config_dir", "presets.json")  # the user's system-prompt presets
    models_dir = _Under("data_dir", "models")
    history_db = _Under("data_dir", "chats.sqlite3")
    downloads_dir = _Under("data_dir", "downloads")  # partial downloads (resumable) live here until verified
    log_file = _Under("log_dir", "gemmadesk.log")

    def ensure(self) -> AppPaths:
        for d in (self.config_dir, self.data_dir, self.cache_dir, self.log_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self


def app_paths(env: dict[str, str] | None = None) -> AppPaths:
    """Resolve the app's folders (does not create them; call ``.ensure()``)."""
    environ = os.environ if env is None else env
    home = environ.get(HOME_ENV)
    if home:
        root = Path(home).expanduser().resolve()
        return AppPaths(root / "config", root / "data", root / "cache", root / "logs")
    return AppPaths(
        Path(platformdirs.user_config_dir(APP_DIR_NAME, appauthor=False)),
        Path(platformdirs.user_data_dir(APP_DIR_NAME, appauthor=False)),
        Path(platformdirs.user_cache_dir(APP_DIR_NAME, appauthor=False)),
        Path(platformdirs.user_log_dir(APP_DIR_NAME, appauthor=False)),
    )


def resources_dir() -> Path:
    """The top-level ``resources/`` folder: inside a PyInstaller bundle or beside the package."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parents[2] / "resources"


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` so that readers see the old file or the new one, never half of it, even if the
    process is killed: a temp file in the same folder, flushed to disk, then ``os.replace``. The file is
    readable only by its owner (mode 0600 from the first byte: ``mkstemp`` creates it so), which the
    server list relies on for its API keys."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def hf_cache_dir(env: dict[str, str] | None = None) -> Path:
    """The user's Hugging Face hub cache, resolved the way huggingface_hub does, at call time."""
    environ = os.environ if env is None else env
    if environ.get("HF_HUB_CACHE"):
        return Path(environ["HF_HUB_CACHE"]).expanduser()
    if environ.get("HF_HOME"):
        return Path(environ["HF_HOME"]).expanduser() / "hub"
    xdg = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"
