"""The one way GemmaDesk writes a number of bytes, so every screen and message agrees (binary units, as
llama.cpp and the fit estimate count): ``512 B``, ``12 KiB``, ``253.1 MiB``, ``3.1 GiB``."""

from __future__ import annotations

MiB = 2**20
GiB = 2**30


def human_bytes(n: int | float | None, missing: str = "—") -> str:
    """``n`` bytes in words; ``missing`` when unknown (None)."""
    if n is None:
        return missing
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit in ("B", "KiB") else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
