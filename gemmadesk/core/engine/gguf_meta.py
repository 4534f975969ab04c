"""Check a GGUF file's header before llama.cpp sees it, so bad files get a clear message.

llama.cpp only says "failed to load model" for a truncated file, a text file renamed .gguf or an unknown
architecture. The header is read by :mod:`gemmadesk.core.gguf_header` (milliseconds, no numpy: numpy
loaded before llama.cpp's CUDA library crashed model loads on our GPU test machine); this module turns its
errors into the engine's user-facing :class:`ModelFileError` messages and keeps what the engine needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gemmadesk.core.engine.errors import ModelFileError
from gemmadesk.core.gguf_header import GGUFHeaderError, read_header


@dataclass(frozen=True)
class GGUFInfo:
    path: Path
    version: int
    file_bytes: int
    data_end: int  # the offset where the last tensor ends: the minimum correct file length
    n_tensors: int
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    @property
    def name(self) -> str:
        return str(self.metadata.get("general.name", "") or self.path.stem)

    @property
    def chat_template(self) -> str | None:
        value = self.metadata.get("tokenizer.chat_template")
        return str(value) if value else None

    def arch_int(self, key: str, default: int = 0) -> int:
        value = self.metadata.get(f"{self.architecture}.{key}", default)
        return int(value) if isinstance(value, int | float) else default


def _message(path: Path, exc: GGUFHeaderError) -> str:
    if exc.kind == "missing":
        return f"The model file “{path}” does not exist or cannot be read."
    if exc.kind == "not_gguf":
        return f"“{path.name}” is not a GGUF model file. GemmaDesk runs .gguf files made for llama.cpp."
    if exc.kind == "truncated":
        return f"“{path.name}” is incomplete ({exc}). The download was probably interrupted: download it again."
    return f"“{path.name}” is damaged ({exc}). Download it again."


def read_gguf_info(path: str | Path) -> GGUFInfo:
    """Parse the header and tensor table; raise :class:`ModelFileError` with a clear message if bad."""
    path = Path(path)
    try:
        header = read_header(path)
    except GGUFHeaderError as exc:
        raise ModelFileError(_message(path, exc), detail=str(exc)) from exc
    return GGUFInfo(path, header.version, header.file_bytes, header.data_end, len(header.tensors), header.metadata)
