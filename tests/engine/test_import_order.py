"""llama.cpp's native libraries must load before numpy.

On the H100 test machine a CUDA build of llama-cpp-python segfaulted in libggml-cuda at model load whenever
numpy had been imported first (docs/benchmarks.md, GPU section). The app plans, lists and checks models
before loading one, so none of that may pull numpy in ahead of llama_cpp.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CODE = """
import sys

seen = []


class Recorder:  # notes the order in which modules are first imported
    def find_spec(self, name, path=None, target=None):
        seen.append(name)
        return None


sys.meta_path.insert(0, Recorder())
from gemmadesk.core import fit, hardware, store
from gemmadesk.core.catalog import load_catalog
from gemmadesk.core.engine import LoadSettings, Engine
path = sys.argv[1]
fit.recommend(hardware.probe(include_backend=False), load_catalog(), fit.FitOptions())
fit.plan_for_file(path, hardware.probe(include_backend=False), fit.FitOptions(n_ctx=512))
store.ModelStore().list()
assert "numpy" not in sys.modules, "numpy was imported before any model load"
Engine().load(LoadSettings(model_path=path, n_ctx=512))
assert seen.index("llama_cpp.llama_cpp") < seen.index("numpy"), "numpy was loaded before llama.cpp's library"
print("ok")
"""


def test_numpy_is_never_loaded_before_llama_cpp(gemma3_gguf: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", CODE, str(gemma3_gguf)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("ok")
