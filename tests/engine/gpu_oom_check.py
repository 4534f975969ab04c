#!/usr/bin/env python3
"""Manual check on an NVIDIA machine (not collected by pytest): a real GPU out-of-memory while loading
makes the Engine retry with fewer layers (or the CPU) and say why in ``LoadReport.notes``.

Another ``Llama`` (the "hog", a 31B at 256K context, ~40 GB) is loaded first so that the Engine's own
full offload of the same 31B with a 256K context and no flash attention cannot fit.

    PYTHONPATH=<cuda llama-cpp-python>:. python3 tests/engine/gpu_oom_check.py MODEL_31B.gguf
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

from gemmadesk.core.engine import ChatMessage, Engine, LoadSettings, ReplyDone, SamplingParams
from gemmadesk.core.types import KvType


def gpu_used_mib() -> int:
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"], capture_output=True, text=True
    )
    return int(out.stdout.split()[0]) if out.returncode == 0 else -1


def reply(engine: Engine) -> dict[str, object]:
    done = list(engine.chat_stream([ChatMessage("user", "Hi")], SamplingParams(max_tokens=16, seed=1)))[-1]
    assert isinstance(done, ReplyDone)
    return done.stats.to_dict()


def main(path: str) -> int:
    import llama_cpp

    print("gpu offload supported:", llama_cpp.llama_supports_gpu_offload(), flush=True)
    engine = Engine()
    t = time.time()
    report = engine.load(
        LoadSettings(model_path=path, n_ctx=8192, n_gpu_layers=-1, flash_attn=True, type_k=KvType.Q8_0,
                     type_v=KvType.Q8_0)
    )
    print("plain load", round(time.time() - t, 1), "s", json.dumps(report.to_dict()), flush=True)
    print("gpu used MiB", gpu_used_mib(), "reply", json.dumps(reply(engine)), flush=True)
    engine.unload()

    hog = llama_cpp.Llama(path, n_gpu_layers=-1, n_ctx=262144, swa_full=False, flash_attn=True, verbose=False)
    print("hog loaded; gpu used MiB", gpu_used_mib(), flush=True)
    t = time.time()
    report = engine.load(LoadSettings(model_path=path, n_ctx=262144, n_gpu_layers=-1, flash_attn=False))
    print("load under pressure", round(time.time() - t, 1), "s", json.dumps(report.to_dict()), flush=True)
    print("gpu used MiB", gpu_used_mib(), "reply", json.dumps(reply(engine)), flush=True)
    ok = report.n_gpu_layers != -1 and any("Out of GPU memory" in n for n in report.notes)
    print("OOM RETRY", "OK" if ok else "NOT EXERCISED", flush=True)
    engine.unload()
    hog.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
