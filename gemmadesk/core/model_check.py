"""Is this file a model GemmaDesk can run? Checked before a file is imported or a download is installed.

One small function, :func:`check_model_file`, on top of the GGUF header reader (no weights are read): the
file must be a complete GGUF with tensors, name an architecture llama.cpp knows, and (for a catalog
model) be the expected architecture with the expected number of layers. A 24-byte GGUF with no tensors,
an unknown architecture, or a mirror's 57 MiB file offered as Gemma 4 E2B are refused here, each with one
sentence saying why. The header reader behind it may be re-pointed (one GGUF façade) without changing
the callers.
"""

from __future__ import annotations

from pathlib import Path

from gemmadesk.core.gguf_file import KNOWN_ARCHITECTURES, GGUFError, GGUFFile

__all__ = ["KNOWN_ARCHITECTURES", "PROJECTOR_ARCHITECTURE", "ModelFileError", "check_model_file"]

PROJECTOR_ARCHITECTURE = "clip"  # vision/audio projectors (mmproj files)

# KNOWN_ARCHITECTURES: llama.cpp's model architectures, kept by the GGUF reader (gemmadesk.core.gguf_file).


class ModelFileError(ValueError):
    """The file is not a model GemmaDesk can run; ``str()`` is one sentence saying why."""


def _shown(value: object) -> str:
    text = str(value)
    return ascii(text[:64]) if len(text) > 64 or not text.isprintable() else repr(text)


def check_model_file(
    path: Path,
    *,
    architecture: str | None = None,
    n_layer: int | None = None,
    expected_name: str | None = None,
    projector: bool = False,
) -> GGUFFile:
    """Return the header of ``path`` if it is a runnable model (``projector``: a vision projector).

    ``architecture``: the ``general.architecture`` it must have (None: any llama.cpp knows);
    ``n_layer``: the ``<arch>.block_count`` it must have; ``expected_name`` names the expected model in
    the message (e.g. "Gemma 4 E2B"). Raises :class:`ModelFileError`.
    """
    path = Path(path)
    name = path.name
    try:
        header = GGUFFile.open(path)
    except GGUFError as exc:
        raise ModelFileError(str(exc)) from exc
    arch = header.metadata.get("general.architecture")
    want = expected_name or architecture
    if arch == PROJECTOR_ARCHITECTURE and not projector:
        raise ModelFileError(f"{name} is a vision projector (mmproj), not a model: use the main GGUF file.")
    if not header.tensors:
        raise ModelFileError(f"{name} holds no tensors (no weights), so it is not a model llama.cpp can load.")
    if not isinstance(arch, str) or not arch:
        raise ModelFileError(f"{name} does not say which model architecture it is (no general.architecture), "
                             "so llama.cpp cannot load it.")
    if projector:
        if arch != PROJECTOR_ARCHITECTURE:
            raise ModelFileError(f"{name} is a {_shown(arch)} model, not the vision projector (mmproj) expected.")
        return header
    if arch not in KNOWN_ARCHITECTURES:
        raise ModelFileError(f"{name} is a model of architecture {_shown(arch)}, which this version of llama.cpp "
                             "cannot run.")
    if architecture is not None and arch != architecture:
        raise ModelFileError(f"{name} is a {_shown(arch)} model, not {want}.")
    if n_layer is not None:
        layers = header.metadata.get(f"{arch}.block_count")
        if layers != n_layer:
            found = f"{layers} layers" if isinstance(layers, int) else "no layer count"
            raise ModelFileError(f"{name} has {found} where {want} has {n_layer}: it is a different model.")
    return header
