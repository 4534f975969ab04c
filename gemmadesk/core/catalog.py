"""The Gemma 4 QAT catalog: every size and format, as data (``core/data/catalog.json``).

Entries with ``runnable=True`` are GGUF files this app's engine (llama.cpp) can run; the rest
(compressed-tensors for vLLM/SGLang, unquantized QAT checkpoints, mobile formats) are listed as
information with what runs them. Sizes and sha256 here are the offline fallback: the download code
refreshes them from the Hub's metadata when online (:func:`with_remote_metadata`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import lru_cache
from importlib import resources
from typing import Any

SIZES = ("E2B", "E4B", "12B", "26B-A4B", "31B")


@dataclass(frozen=True)
class Architecture:
    """What the memory estimate needs; read from the GGUF header when the file is at hand."""

    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv_swa: int
    n_head_kv_global: int
    head_dim_swa: int
    head_dim_global: int
    sliding_window: int
    n_ctx_train: int
    n_vocab: int
    kv_layers_global: int  # layers that own a KV cache and attend globally
    kv_layers_swa: int  # layers that own a KV cache and attend within the window
    n_ff: int
    swa_period: int = 6  # every swa_period-th layer attends globally (E2B: 5, the others: 6)
    ple_dim: int = 0  # per-layer-embedding width (E2B/E4B); those tables stay in host RAM
    n_expert: int = 0
    n_expert_used: int = 0

    @property
    def kv_shared_layers(self) -> int:
        return self.n_layer - self.kv_layers_global - self.kv_layers_swa


@dataclass(frozen=True)
class ModelFile:
    repo_id: str
    filename: str
    size_bytes: int
    revision: str = "main"
    sha256: str | None = None  # full hex digest, or None when only the Hub can tell

    @property
    def url_path(self) -> str:
        return f"{self.repo_id}/resolve/{self.revision}/{self.filename}"


@dataclass(frozen=True)
class CatalogEntry:
    id: str  # e.g. "e2b-google-q4_0"
    size: str  # E2B | E4B | 12B | 26B-A4B | 31B
    format: str  # Q4_0 | UD-Q4_K_XL | UD-Q2_K_XL | w4a16-ct | mobile-ct | unquantized | mobile-transformers
    publisher: str  # google | unsloth
    runnable: bool
    runner: str  # what runs it ("GemmaDesk (llama.cpp)", "vLLM / SGLang", ...)
    repo_id: str
    file: ModelFile | None
    mmproj: ModelFile | None
    google_memory_gb: float | None  # Google's published static-weights figure for this size/format
    licence: str
    gated: bool
    notes: str = ""
    flash_attn_default: str = "auto"  # auto | on | off (E4B: off, see the pitfalls)
    architecture: str = "gemma4"  # the general.architecture its GGUF must have ("": any llama.cpp runs)
    checkpoint_bytes: int | None = None  # whole checkpoint (non-GGUF formats, e.g. w4a16-ct for vLLM); None: unknown

    @property
    def label(self) -> str:
        return f"Gemma 4 {self.size} · {self.format} ({self.publisher})"


@dataclass(frozen=True)
class Catalog:
    version: int
    architectures: dict[str, Architecture]
    entries: tuple[CatalogEntry, ...] = field(default=())

    def get(self, entry_id: str) -> CatalogEntry:
        for entry in self.entries:
            if entry.id == entry_id:
                return entry
        raise KeyError(f"no catalog entry {entry_id!r}; known: {', '.join(e.id for e in self.entries)}")

    def find(self, query: str) -> CatalogEntry:
        """Look an entry up by id, or by 'SIZE' (the default runnable format) or 'SIZE:FORMAT'."""
        q = query.strip().lower()
        for entry in self.entries:
            if entry.id.lower() == q:
                return entry
        size, _, fmt = q.partition(":")
        size = size.replace(" ", "-").replace("gemma-4-", "").replace("gemma4-", "")
        matches = [e for e in self.runnable if e.size.lower() == size or e.size.lower().replace("-", "") == size]
        if fmt:
            matches = [e for e in matches if e.format.lower() == fmt or e.publisher == fmt]
        if not matches:
            raise KeyError(f"no runnable catalog entry matches {query!r}")
        return matches[0]

    @property
    def runnable(self) -> tuple[CatalogEntry, ...]:
        return tuple(e for e in self.entries if e.runnable)

    def arch(self, entry: CatalogEntry) -> Architecture:
        return self.architectures[entry.size]


def _model_file(data: dict[str, Any] | None) -> ModelFile | None:
    return None if data is None else ModelFile(**data)


def parse_catalog(data: dict[str, Any]) -> Catalog:
    archs = {name: Architecture(**a) for name, a in data["architectures"].items()}
    entries = []
    for raw in data["entries"]:
        raw = dict(raw)
        raw["file"] = _model_file(raw.get("file"))
        raw["mmproj"] = _model_file(raw.get("mmproj"))
        entries.append(CatalogEntry(**raw))
    return Catalog(version=int(data["version"]), architectures=archs, entries=tuple(entries))


@lru_cache(maxsize=1)
def load_catalog() -> Catalog:
    text = resources.files("gemmadesk.core").joinpath("data/catalog.json").read_text(encoding="utf-8")
    return parse_catalog(json.loads(text))


def validate(catalog: Catalog) -> list[str]:
    """Problems with the catalog data (empty list = fine). Used by the tests."""
    problems: list[str] = []
    ids = [e.id for e in catalog.entries]
    for dup in {i for i in ids if ids.count(i) > 1}:
        problems.append(f"duplicate id {dup}")
    for size in SIZES:
        if size not in catalog.architectures:
            problems.append(f"no architecture for {size}")
        if not any(e.size == size and e.runnable for e in catalog.entries):
            problems.append(f"no runnable entry for {size}")
    for e in catalog.entries:
        if e.size not in catalog.architectures:
            problems.append(f"{e.id}: unknown size {e.size}")
        if e.runnable:
            if e.file is None:
                problems.append(f"{e.id}: runnable but has no file")
            elif not e.file.filename.endswith(".gguf") or e.file.size_bytes <= 0:
                problems.append(f"{e.id}: bad file entry {e.file}")
            if e.file and e.file.sha256 is not None and len(e.file.sha256) != 64:
                problems.append(f"{e.id}: sha256 must be 64 hex digits or null")
        if not e.repo_id or "/" not in e.repo_id:
            problems.append(f"{e.id}: bad repo id {e.repo_id!r}")
        if not e.licence:
            problems.append(f"{e.id}: no licence")
    for name, a in catalog.architectures.items():
        if a.kv_layers_global + a.kv_layers_swa > a.n_layer:
            problems.append(f"{name}: more KV layers than layers")
    return problems


def with_remote_metadata(entry: CatalogEntry, size_bytes: int, sha256: str | None, revision: str) -> CatalogEntry:
    """The entry with its main file's size/sha256/revision replaced by what the Hub reported."""
    if entry.file is None:
        return entry
    new_file = replace(entry.file, size_bytes=size_bytes, sha256=sha256 or entry.file.sha256, revision=revision)
    return replace(entry, file=new_file)
