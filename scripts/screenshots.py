"""Screenshots of the real app under Xvfb, in the states the README shows: docs/screenshots/*.png.

    python scripts/screenshots.py                      # all of them; needs Xvfb (apt-get install xvfb)
    python scripts/screenshots.py first-run chatting    # only the shots whose name starts with these

Each state runs ``python scripts/demo.py --demo-state STATE --screenshot FILE`` (the window built by the same
``gemmadesk.ui.app.build`` that ``gemmadesk`` uses, driven by scripts/demo.py) in a fresh GEMMADESK_HOME
on a private X display (the real xcb platform, not offscreen):

- ``first-run.png``: this machine, probed for real, no model installed: the memory-fit list (memory bars,
  expected speed); ``first-run-800.png`` the same in an 800x600 window.
- ``first-run-nvidia.png``: the same screen planned for a described 24 GB NVIDIA desktop (``--hardware``);
  ``first-run-nvidia-dark.png`` in the dark colour scheme.
- ``downloading.png``: the recommended model downloading from a local Hub server on 127.0.0.1
  (tests/support/hubserver.py) that serves a sparse stand-in file of the real size, so nothing leaves
  the machine; the screenshot is taken while the transfer runs.
- ``chatting.png``: the real Gemma 3 270M GGUF installed and loaded; one earlier exchange with a code
  block is seeded into the history (demo text, marked as such in the conversation title), then a prompt
  is typed and sent and the real model's streamed reply is captured with its statistics.
- ``chatting-dark.png``: the same with the dark colour scheme.
- ``settings-800.png``: that chat in an 800x600 window with its Settings panel open and the "Code helper"
  preset chosen (``settings-800-dark.png``: dark).
- ``new-chat.png``: a new, empty chat with the loaded model: the hint it shows.
- ``models-installed.png``: the Models page's Installed tab (the imported Gemma 3 270M with its fit
  verdict; ``models-installed-800-dark.png``: 800x600, dark).
- ``search.png``: "slicing" typed into the chat search: the hit's text in the list, the matching message
  framed and its words marked (``search-dark.png``: dark).
- ``serving.png``: the loaded chat with Server → Serve this model switched on and one OpenAI-style request
  answered: the status bar shows the URL and the request count.
- ``attachments.png``: images and audio (issue 14): the synthetic Gemma 4 test model and projector
  (tests/support/synth_gemma4*.py: the real vocabulary, tensor names and shapes, random weights — so the
  reply is nonsense, and the conversation's title says so) installed and loaded; two pictures drawn by the
  driver are attached as a drop attaches them and sent; the transcript shows their thumbnails, and a
  third picture and a recording wait in the composer as removable attachments.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
OUT = REPO / "docs" / "screenshots"

from gemmadesk.core.catalog import load_catalog  # noqa: E402
from gemmadesk.core.fit import FitOptions, recommend  # noqa: E402
from gemmadesk.core.hardware import probe  # noqa: E402
from gemmadesk.core.history import HistoryStore  # noqa: E402
from gemmadesk.core.paths import app_paths  # noqa: E402
from gemmadesk.core.store import ModelStore  # noqa: E402
from tests.support.hubserver import Fault, HubServer  # noqa: E402
from tests.ui.hardware_fixtures import DESKTOP_24GB_NVIDIA  # noqa: E402

SEEDED_QUESTION = "How do I reverse a string in Python?"
SEEDED_REPLY = """Use slicing with a step of -1:

```python
def reverse(text: str) -> str:
    \"\"\"Return text backwards.\"\"\"
    return text[::-1]

print(reverse("GemmaDesk"))  # kseDammeG
```

Slicing creates a **new** string; for very long strings `"".join(reversed(text))` works too."""


def start_xvfb() -> tuple[subprocess.Popen[bytes], str]:
    read, write = os.pipe()
    proc = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x800x24", "-nolisten", "tcp"], pass_fds=(write,)
    )
    os.close(write)
    with os.fdopen(read) as fh:
        display = fh.readline().strip()
    return proc, f":{display}"


def run_app(state: str, home: Path, display: str, extra: list[str], env_extra: dict[str, str]) -> int:
    shot = OUT / f"{extra.pop(0)}.png"
    env = dict(os.environ, GEMMADESK_HOME=str(home), DISPLAY=display, QT_QPA_PLATFORM="xcb", **env_extra)
    env.pop("QT_QPA_PLATFORM_PLUGIN_PATH", None)
    cmd = [sys.executable, str(REPO / "scripts" / "demo.py"), "--demo-state", state, "--screenshot", str(shot), *extra]
    started = time.monotonic()
    code = subprocess.run(cmd, env=env, cwd=REPO, timeout=300).returncode
    print(f"{shot.relative_to(REPO)}: exit {code} in {time.monotonic() - started:.1f} s")
    return code


def small_gguf() -> Path:
    from tests.support.assets import gemma3_gguf

    return gemma3_gguf()


def seed_chat(home: Path) -> None:
    paths = app_paths({"GEMMADESK_HOME": str(home)}).ensure()
    ModelStore(paths).import_file(small_gguf())
    history = HistoryStore(paths.history_db)
    other = history.create_conversation(title="Packing for a day hike (demo text)")
    history.add_message(other.id, "user", "What should I pack for a day hike?")
    history.add_message(other.id, "assistant", "Water, snacks, a map, a rain layer, sun cream and a first-aid kit.")
    conv = history.create_conversation(title="Reversing strings (demo text)")
    history.add_message(conv.id, "user", SEEDED_QUESTION)
    history.add_message(conv.id, "assistant", SEEDED_REPLY, settings={"max_tokens": 48, "temperature": 0.7})
    history.close()


def seed_vision(home: Path) -> None:
    from tests.support.synth_gemma4 import write_gemma4_gguf
    from tests.support.synth_gemma4_mmproj import write_gemma4_mmproj

    paths = app_paths({"GEMMADESK_HOME": str(home)}).ensure()
    models = home.parent / "synthetic-models"
    models.mkdir(exist_ok=True)
    model = write_gemma4_gguf(models / "gemma4-tiny.gguf", "tiny", seed=0)
    projector = write_gemma4_mmproj(models / "mmproj-gemma4-tiny.gguf", "tiny")
    store = ModelStore(paths)
    installed = store.import_file(model)
    store.attach_mmproj(installed.id, projector, None, owned=False)
    history = HistoryStore(paths.history_db)
    history.create_conversation(title="Pictures (synthetic test model: random weights, nonsense replies)")
    history.close()


def main(argv: list[str]) -> int:
    def wanted(name: str) -> bool:
        return not argv or any(name.startswith(prefix) for prefix in argv)

    if not shutil.which("Xvfb"):
        print("Xvfb is not installed (apt-get install xvfb)", file=sys.stderr)
        return 2
    OUT.mkdir(parents=True, exist_ok=True)
    xvfb, display = start_xvfb()
    failures = 0
    try:
        with tempfile.TemporaryDirectory(prefix="gd-shots-") as tmp:
            root = Path(tmp)
            if wanted("first-run"):
                failures += run_app("first-run", root / "a", display, ["first-run"], {}) != 0
            if wanted("first-run-800"):
                shot = ["first-run-800", "--demo-size", "800x600"]
                failures += run_app("first-run", root / "a8", display, shot, {}) != 0

            hw_file = root / "desktop.json"
            hw_file.write_text(json.dumps(DESKTOP_24GB_NVIDIA))
            if wanted("first-run-nvidia"):
                shot = ["first-run-nvidia", "--hardware", str(hw_file)]
                failures += run_app("first-run", root / "b", display, shot, {}) != 0
            if wanted("first-run-nvidia-dark"):
                dark = app_paths({"GEMMADESK_HOME": str(root / "b2")}).ensure().settings_file
                dark.write_text(json.dumps({"schema_version": 3, "theme": "dark"}))
                shot = ["first-run-nvidia-dark", "--hardware", str(hw_file)]
                failures += run_app("first-run", root / "b2", display, shot, {}) != 0

            if wanted("downloading"):
                failures += shoot_download(root, display)

            if wanted("chatting"):
                seed_chat(root / "d")
                prompt = ["chatting", "--demo-prompt", "Here is a short poem about the sea:"]
                failures += run_app("chatting", root / "d", display, prompt, {}) != 0

            more = (("settings-800", "settings", "light", ["--demo-size", "800x600"]),
                    ("settings-800-dark", "settings", "dark", ["--demo-size", "800x600"]),
                    ("new-chat", "new-chat", "light", []),
                    ("models-installed", "models", "light", []),
                    ("models-installed-800-dark", "models", "dark", ["--demo-size", "800x600"]),
                    ("search", "search", "light", ["--demo-prompt", "slicing"]),
                    ("search-dark", "search", "dark", ["--demo-prompt", "slicing"]),
                    ("serving", "serving", "light", ["--demo-prompt", "Say hello"]))  # fmt: skip
            for name, state, theme, extra in more:
                if wanted(name):
                    home = root / name
                    seed_chat(home)
                    settings = app_paths({"GEMMADESK_HOME": str(home)}).settings_file
                    settings.write_text(json.dumps({"schema_version": 3, "theme": theme}))
                    failures += run_app(state, home, display, [name, *extra], {}) != 0
            if wanted("attachments"):
                seed_vision(root / "f")
                prompt = ["attachments", "--demo-prompt", "What do these two pictures show?"]
                failures += run_app("attachments", root / "f", display, prompt, {}) != 0

            if wanted("chatting-dark"):
                seed_chat(root / "e")  # the same in the dark scheme (Settings.theme), as a dark desktop shows it
                settings = app_paths({"GEMMADESK_HOME": str(root / "e")}).settings_file
                settings.write_text(json.dumps({"schema_version": 3, "theme": "dark"}))
                prompt = ["chatting-dark", "--demo-prompt", "Here is a short poem about the sea:"]
                failures += run_app("chatting", root / "e", display, prompt, {}) != 0
    finally:
        xvfb.terminate()
        xvfb.wait(10)
    return 1 if failures else 0


def shoot_download(root: Path, display: str) -> int:
    best = recommend(probe(), load_catalog(), FitOptions()).best
    assert best is not None, "nothing fits this machine"
    entry = load_catalog().get(best.entry_id)
    assert entry.file is not None
    stand_in = root / "stand-in.gguf"
    with stand_in.open("wb") as fh:
        fh.truncate(entry.file.size_bytes)  # sparse: no disk used until read
    with HubServer() as hub:
        hub.add_file(entry.file.repo_id, stand_in, filename=entry.file.filename, sha256="0" * 64)
        hub.add_fault(entry.file.filename, Fault("stall", at=entry.file.size_bytes // 3, stall_s=60))
        env = {"HF_ENDPOINT": hub.endpoint, "NO_PROXY": "127.0.0.1,localhost"}
        return int(run_app("downloading", root / "c", display, ["downloading"], env) != 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
