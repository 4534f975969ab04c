"""The Models page's "Installed" tab behind the scenes: list installed models with their fit verdict, import a
GGUF, delete a model, change the models folder. Every file operation runs on the thread pool
(:class:`TaskRunner`); results come back as signals.

The store decides what a removal deletes (only files GemmaDesk wrote and that are still exactly those files;
an imported file is only forgotten): :func:`removal_preview` says it in words before the window asks, and
:class:`ModelRemoved` reports what was deleted and how much space that freed.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from gemmadesk.core.catalog import Catalog
from gemmadesk.core.fit import FitOptions, Verdict
from gemmadesk.core.hardware import Hardware
from gemmadesk.core.model_plan import plan_installed
from gemmadesk.core.store import InstalledModel, ModelStore, Removal
from gemmadesk.core.units import human_bytes
from gemmadesk.ui.tasks import TaskError, TaskRunner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InstalledRow:
    model: InstalledModel
    verdict: str  # "fits" | "tight" | "too large" | "missing" | "changed" | "unknown"
    detail: str  # one sentence: where it runs, or why not


@dataclass(frozen=True)
class ModelRemoved:
    model_id: str
    display_name: str
    removal: Removal
    freed: int  # bytes of the files deleted

    def sentence(self) -> str:
        if self.removal.deleted:
            text = f"Deleted {self.display_name}; {human_bytes(self.freed)} freed."
        else:
            text = f"Removed {self.display_name} from the list."
        for path in self.removal.kept:
            text += f" Your file {path} was kept: GemmaDesk did not create it."
        return text


def installed_rows(store: ModelStore, hw: Hardware | None, options: FitOptions, catalog: Catalog) -> list[InstalledRow]:
    rows = []
    for model in store.list():
        if model.status != "ok":
            why = "the file is missing" if model.status == "missing" else "the file changed since it was installed"
            rows.append(InstalledRow(model, model.status, f"Cannot be loaded: {why} ({model.path})."))
            continue
        if hw is None:
            rows.append(InstalledRow(model, "unknown", "This machine has not been inspected yet."))
            continue
        try:
            plan = plan_installed(model, hw, options, catalog)
        except Exception as exc:  # a file that no longer reads as a model: say so, keep listing the others
            log.warning("cannot plan %s: %s", model.id, exc)
            rows.append(InstalledRow(model, "unknown", f"Its header could not be read: {exc}"))
            continue
        verdict = "too large" if plan.verdict == Verdict.TOO_LARGE else "tight" if plan.tight else "fits"
        rows.append(InstalledRow(model, verdict, plan.reason[:1].upper() + plan.reason[1:] + "."))
    return rows


def removal_preview(model: InstalledModel) -> str:
    """What removing ``model`` will do, in words, before the user confirms."""
    if model.owned:
        size = model.size_bytes
        if model.mmproj_path is not None:
            try:
                size += os.lstat(model.mmproj_path).st_size
            except OSError:
                pass
        return (f"This deletes the file GemmaDesk downloaded and frees {human_bytes(size)}:\n{model.path}\n\n"
                "Your chats with it are kept.")
    return (f"GemmaDesk did not create this file, so it is not deleted: it is only removed from the list and "
            f"stays where it is:\n{model.path}")


def _remove(store: ModelStore, model: InstalledModel) -> ModelRemoved:
    sizes = {}
    for path in (model.path, model.mmproj_path):
        if path is not None:
            try:
                sizes[path] = os.lstat(path).st_size
            except OSError:
                pass
    removal = store.remove(model.id)
    return ModelRemoved(model.id, model.display_name, removal, sum(sizes.get(p, 0) for p in removal.deleted))


def check_models_folder(path: Path) -> Path:
    """``path`` as a models folder: absolute, a folder (made if missing) that can be written. Raises
    OSError with a sentence."""
    path = Path(path).expanduser()
    if not path.is_absolute():
        raise OSError(f"{path} is not a full path.")
    path.mkdir(parents=True, exist_ok=True)
    if not path.is_dir():
        raise OSError(f"{path} is not a folder.")
    with tempfile.NamedTemporaryFile(dir=path, prefix=".gemmadesk-probe-"):
        pass  # removed on close: GemmaDesk's own file
    return path.resolve()


class ModelsController(QObject):
    rows_changed = Signal(list)  # [InstalledRow]
    imported = Signal(object)  # InstalledModel
    removed = Signal(object)  # ModelRemoved
    folder_changed = Signal(str)
    failed = Signal(str)  # one sentence: what went wrong and what to do

    def __init__(
        self,
        tasks: TaskRunner,
        store: ModelStore,
        hardware: Callable[[], Hardware | None],
        options: Callable[[], FitOptions],
        catalog: Catalog,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._tasks = tasks
        self.store = store
        self._hardware = hardware
        self._options = options
        self._catalog = catalog
        self.rows: list[InstalledRow] = []
        self._generation = 0  # a listing started before a newer one is dropped when it arrives
        self.importing = 0  # imports running

    def refresh(self) -> None:
        self._generation += 1
        generation, store, hw, options, catalog = self._generation, self.store, self._hardware(), self._options(), \
            self._catalog  # fmt: skip
        self._tasks.run(lambda: installed_rows(store, hw, options, catalog),
                        lambda rows: self._listed(generation, rows),
                        lambda error: self.failed.emit(f"The installed models could not be listed: {error}"),
                        name="installed models")

    def _listed(self, generation: int, rows: list[InstalledRow]) -> None:
        if generation == self._generation:
            self.rows = rows
            self.rows_changed.emit(rows)

    def import_gguf(self, path: Path) -> None:
        """Register a GGUF the user has (checked, never copied or deleted); ``imported`` or ``failed``."""
        store = self.store
        self.importing += 1
        self._tasks.run(lambda: store.import_file(Path(path)), self._imported,
                        lambda error: self._import_failed(path, error), name="import model")

    def _imported(self, model: InstalledModel) -> None:
        self.importing -= 1
        self.imported.emit(model)
        self.refresh()

    def _import_failed(self, path: Path, error: TaskError) -> None:
        self.importing -= 1
        self.failed.emit(f"{Path(path).name} was not imported: {error}")

    def remove(self, model: InstalledModel) -> None:
        """Remove ``model`` as the store decides (see the module docstring); ``removed`` or ``failed``."""
        store = self.store
        self._tasks.run(lambda: _remove(store, model), self._removed,
                        lambda error: self.failed.emit(f"{model.display_name} could not be removed: {error}"),
                        name="remove model")

    def _removed(self, result: ModelRemoved) -> None:
        self.removed.emit(result)
        self.refresh()

    def change_folder(self, path: Path) -> None:
        """Check ``path`` on the thread pool; new downloads go there once ``folder_changed`` says so (the
        models already installed stay where they are)."""
        self._tasks.run(lambda: check_models_folder(path), self._folder_ok,
                        lambda error: self.failed.emit(f"{path} cannot be the models folder: {error}"),
                        name="models folder")

    def _folder_ok(self, path: Path) -> None:
        self.store.models_dir = path
        self.folder_changed.emit(str(path))
