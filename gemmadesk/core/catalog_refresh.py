"""Refresh the catalog's file sizes and sha256 from the Hub's own metadata.

The catalog ships sizes and (where known) sha256 digests as an offline fallback. When the Hub can be
reached, :func:`refresh` asks its model-info API (``files_metadata``: each file's LFS size and sha256) once
per repository and revision, and keeps the answers in ``<cache>/catalog-remote.json``. :func:`current_catalog`
is the shipped catalog with those answers laid over it: what the fit list, the recommender and the
downloader should use. A failed refresh changes nothing and says why; the cache is written atomically.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gemmadesk.core.catalog import Catalog, CatalogEntry, ModelFile, load_catalog
from gemmadesk.core.paths import AppPaths, app_paths, atomic_write_text

CACHE_NAME = "catalog-remote.json"
SHA256_LEN = 64


@dataclass(frozen=True)
class RefreshResult:
    updated: int  # files whose size or sha256 now come from the Hub
    repos_ok: int
    errors: tuple[str, ...]  # one line per repository that could not be read


def _key(mf: ModelFile) -> str:
    return f"{mf.repo_id}@{mf.revision}/{mf.filename}"


def _cache_path(paths: AppPaths | None) -> Path:
    return (paths or app_paths()).cache_dir / CACHE_NAME


def _read_cache(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    return files if isinstance(files, dict) else {}


def _overlay(mf: ModelFile | None, cache: dict[str, dict[str, Any]]) -> ModelFile | None:
    if mf is None:
        return None
    hit = cache.get(_key(mf))
    if not hit or not isinstance(hit.get("size"), int) or hit["size"] <= 0:
        return mf
    sha = hit.get("sha256")
    sha = sha if isinstance(sha, str) and len(sha) == SHA256_LEN else mf.sha256
    return replace(mf, size_bytes=hit["size"], sha256=sha)


def current_catalog(paths: AppPaths | None = None) -> Catalog:
    """The shipped catalog with the last Hub answers (if any) laid over its sizes and digests."""
    catalog = load_catalog()
    cache = _read_cache(_cache_path(paths))
    if not cache:
        return catalog
    entries: list[CatalogEntry] = [
        replace(e, file=_overlay(e.file, cache), mmproj=_overlay(e.mmproj, cache)) for e in catalog.entries
    ]
    return replace(catalog, entries=tuple(entries))


def refresh(paths: AppPaths | None = None, timeout: float = 20.0) -> RefreshResult:
    """Ask the Hub (``HF_ENDPOINT`` and token honoured, as for downloads) about every runnable file."""
    from huggingface_hub import HfApi

    from gemmadesk.core.hub import HubConfig, explain

    cfg = HubConfig.from_env()
    if cfg.offline:
        return RefreshResult(0, 0, ("offline mode is on (HF_HUB_OFFLINE); using the shipped sizes",))
    catalog = load_catalog()
    wanted: dict[tuple[str, str], list[ModelFile]] = {}
    for entry in catalog.runnable:
        for mf in (entry.file, entry.mmproj):
            if mf is not None:
                wanted.setdefault((mf.repo_id, mf.revision), []).append(mf)
    cache_path = _cache_path(paths)
    cache = _read_cache(cache_path)
    api = HfApi(endpoint=cfg.endpoint, token=cfg.token or False)
    updated = repos_ok = 0
    errors: list[str] = []
    for (repo_id, revision), files in wanted.items():
        try:
            info = api.model_info(repo_id, revision=revision, files_metadata=True, timeout=timeout)
        except Exception as exc:  # huggingface_hub and httpx raise many kinds; each becomes one line
            errors.append(f"{repo_id}: {explain(exc, cfg, repo_id, files[0].filename)}")
            continue
        repos_ok += 1
        by_name = {s.rfilename: s for s in info.siblings or []}
        for mf in files:
            sib = by_name.get(mf.filename)
            if sib is None:
                errors.append(f"{repo_id}: the Hub lists no {mf.filename} at revision {revision}")
                continue
            size = sib.lfs.size if sib.lfs is not None else sib.size
            sha = str(sib.lfs.sha256).lower() if sib.lfs is not None else None
            if isinstance(size, int) and size > 0:
                cache[_key(mf)] = {"size": size, "sha256": sha, "commit": info.sha, "checked": int(time.time())}
                updated += 1
    if updated:
        atomic_write_text(cache_path, json.dumps({"version": 1, "files": cache}, indent=1, sort_keys=True))
    return RefreshResult(updated, repos_ok, tuple(errors))
