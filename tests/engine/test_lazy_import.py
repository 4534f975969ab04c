"""The GUI imports the engine, history and worker at start-up: none of them may load llama_cpp."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_importing_engine_history_and_worker_does_not_load_llama_cpp() -> None:
    code = (
        "import sys\n"
        "import gemmadesk.core.engine, gemmadesk.core.history, gemmadesk.core.chat\n"
        "import gemmadesk.ui.host_bridge, gemmadesk.cli.chat\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('llama_cpp', 'gguf', 'jinja2')))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
