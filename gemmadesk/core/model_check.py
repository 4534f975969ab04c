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

from gemmadesk.core.gguf_header import GGUFHeader, GGUFHeaderError, read_header

__all__ = ["KNOWN_ARCHITECTURES", "PROJECTOR_ARCHITECTURE", "ModelFileError", "check_model_file"]

PROJECTOR_ARCHITECTURE = "clip"  # vision/audio projectors (mmproj files)

# llama.cpp's model architectures (LLM_ARCH_NAMES in vendor/llama.cpp/src/llama-arch.cpp of
# llama-cpp-python 0.3.36, the pinned version), without "clip" (projectors only). tests/downloads check
# that every name is still in the installed libllama, so an upgrade that drops one is noticed.
_NAMES = """
llama llama4 deci falcon grok gpt2 gptj gptneox mpt baichuan starcoder refact bert modern-bert
nomic-bert nomic-bert-moe neo-bert jina-bert-v2 jina-bert-v3 eurobert bloom stablelm qwen qwen2
qwen2moe qwen2vl qwen3 qwen3moe qwen3next qwen3vl qwen3vlmoe qwen35 qwen35moe qwen4exp phi2 phi3
phimoe plamo plamo2 plamo3 codeshell orion internlm2 minicpm minicpm3 gemma gemma2 gemma3 gemma3n
gemma4 gemma4-assistant gemma-embedding starcoder2 mamba mamba2 maple jamba falcon-h1 xverse
command-r cohere2 cohere2moe dbrx olmo olmo2 olmoe muse-glimmer openelm arctic deepseek deepseek2
deepseek2-ocr deepseek32 deepseek4 chatglm glm4 glm4moe glm-dsa bitnet t5 t5encoder jais jais2
nemotron nemotron_h nemotron_h_moe exaone exaone4 exaone-moe rwkv6 rwkv6qwen2 rwkv7 arwkv7 granite
granitemoe granitehybrid graniteswitch granite_swa chameleon wavtokenizer-dec plm bailingmoe
bailingmoe2 bailingmoe3 dots1 dots3note arcee afmoe laguna ernie4_5 ernie4_5-moe hunyuan-moe
hunyuan-dense hunyuan_vl hy_v3 hy_v4 smollm3 gpt-oss lfm2 lfm2moe dream smallthinker llada
llada-moe seed_oss grovemoe apertus minimax-01 hrm_text minimax-m2 minimax-m3 cogvlm rnd1
pangu-embedded mistral3 eagle3 dflash mistral4 paddleocr mimo2 step35 spark2_5 llama-embed
maincoder kimi-linear kimi-k3 glm5-next talkie mellum nanbeige qwen3tts pockettts
"""
KNOWN_ARCHITECTURES = frozenset(_NAMES.split())


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
) -> GGUFHeader:
    """Return the header of ``path`` if it is a runnable model (``projector``: a vision projector).

    ``architecture``: the ``general.architecture`` it must have (None: any llama.cpp knows);
    ``n_layer``: the ``<arch>.block_count`` it must have; ``expected_name`` names the expected model in
    the message (e.g. "Gemma 4 E2B"). Raises :class:`ModelFileError`.
    """
    path = Path(path)
    name = path.name
    try:
        header = read_header(path)
    except GGUFHeaderError as exc:
        raise ModelFileError(str(exc)) from exc
    except (RecursionError, MemoryError, OverflowError, ValueError) as exc:
        raise ModelFileError(f"{name} is not a readable GGUF file ({type(exc).__name__}).") from exc
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
