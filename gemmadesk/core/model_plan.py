"""The fit plan for an installed model, its load settings, and the sentence that says where it runs.

One place for the window's chat (which loads the model) and its Installed tab (which shows the verdict):
both plan an installed file the same way: from its catalog entry when it has one that this catalog still
lists, else from the file's own header (``gemmadesk.core.fit``). Reads a GGUF header: not for a GUI slot.
"""

from __future__ import annotations

from dataclasses import replace

from gemmadesk.core.catalog import Catalog
from gemmadesk.core.fit import FitOptions, Plan, plan_entry, plan_for_file
from gemmadesk.core.hardware import Hardware
from gemmadesk.core.store import InstalledModel
from gemmadesk.core.types import LoadReport, LoadSettings

__all__ = ["load_settings", "placement_banner", "plan_installed"]


def plan_installed(model: InstalledModel, hw: Hardware, options: FitOptions, catalog: Catalog) -> Plan:
    """The fit plan for an installed file on ``hw``."""
    if model.entry_id:
        try:
            return plan_entry(catalog.get(model.entry_id), hw, options, gguf_path=model.path, catalog=catalog)
        except KeyError:
            pass  # an entry this catalog no longer lists: plan from the file itself
    return plan_for_file(model.path, hw, options, model.mmproj_path)


def load_settings(model: InstalledModel, plan: Plan, n_threads: int) -> LoadSettings:
    """What to load ``model`` with: the plan's settings, with the user's thread count (0: the engine's)."""
    return replace(plan.load_settings(model.path, model.mmproj_path), n_threads=n_threads or None)


def placement_banner(report: LoadReport, reason: str, hw: Hardware | None) -> str:
    """Why the loaded model (partly) runs on the CPU, in words; empty when it is all on the GPU. ``reason``:
    the fit plan's reason for its placement."""
    if report.n_gpu_layers >= report.n_layers + 1 and report.n_gpu_layers > 0:
        return ""
    if report.n_gpu_layers <= 0:
        why = "no GPU that this llama.cpp build can use" if hw is None or not hw.usable_gpus else reason
        return f"Running on the CPU only ({why}). Replies are slower than on a GPU."
    return (
        f"Running partly on the CPU: {report.n_gpu_layers} of {report.n_layers} layers are on the GPU "
        f"({reason}). A shorter context or a smaller model would fit entirely."
    )
