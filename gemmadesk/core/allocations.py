"""What llama.cpp really allocated, read from its own log lines.

llama.cpp reports every buffer it allocates ("CUDA0 model buffer size = 1342.00 MiB", "CPU KV buffer
size = ...", "CUDA0 compute buffer size = ..."). :func:`parse_buffers` turns those lines into totals per
device and kind, so the fit estimate can be checked against reality (tests on the CPU, the GPU
benchmark on an NVIDIA card). :func:`capture_llama_log` installs a log callback for the duration of a
``with`` block.
"""

from __future__ import annotations

import ctypes
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

_BUFFER = re.compile(
    r"(?P<device>[A-Za-z0-9_]+)\s+(?P<kind>model|KV|compute|output|RS)\s+buffer size\s*=\s*(?P<mib>[0-9.]+)\s*MiB"
)


@dataclass
class Allocations:
    """MiB per (device, kind); device names as llama.cpp prints them (CPU, CPU_Mapped, CUDA0, ...)."""

    buffers: dict[tuple[str, str], float] = field(default_factory=dict)

    def total(self, kind: str | None = None, device_prefix: str | None = None) -> float:
        return sum(
            mib for (dev, k), mib in self.buffers.items()
            if (kind is None or k == kind) and (device_prefix is None or dev.startswith(device_prefix))
        )

    def gpu_total(self) -> float:
        return sum(mib for (dev, _k), mib in self.buffers.items() if not dev.startswith("CPU"))


def parse_buffers(log_text: str) -> Allocations:
    alloc = Allocations()
    for m in _BUFFER.finditer(log_text):
        key = (m.group("device"), m.group("kind"))
        alloc.buffers[key] = alloc.buffers.get(key, 0.0) + float(m.group("mib"))
    return alloc


@contextmanager
def capture_llama_log() -> Iterator[list[str]]:
    """Collect llama.cpp's log output (all levels) into a list while the block runs.

    llama.cpp has one global log callback; the one installed before (the engine's, or
    llama-cpp-python's own) is put back afterwards."""
    import llama_cpp

    lines: list[str] = []

    @llama_cpp.llama_log_callback  # type: ignore[untyped-decorator]
    def _callback(level: int, text: bytes, user_data: Any) -> None:
        lines.append(text.decode(errors="replace"))

    previous = llama_cpp.llama_log_callback()
    previous_data = ctypes.c_void_p()
    llama_cpp.llama_log_get(ctypes.byref(previous), ctypes.byref(previous_data))
    llama_cpp.llama_log_set(_callback, ctypes.c_void_p(0))
    try:
        yield lines
    finally:
        llama_cpp.llama_log_set(previous, previous_data)
