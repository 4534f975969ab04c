"""`gemmadesk pull` in a real subprocess, SIGKILLed mid-download, then resumed; plus the other CLI verbs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gemmadesk.cli import main as cli_main
from gemmadesk.cli.store import find_entry
from gemmadesk.core.store import ModelStore
from tests.support.hubserver import VALID_TOKEN, Fault, HubServer
from tests.support.tiny_gguf import write_gguf

MiB = 1024 * 1024
SMALL = 64 * 1024
REPO = Path(__file__).resolve().parents[2]


def _pull(model: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "gemmadesk", "pull", model, "--json", *extra], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))


@pytest.mark.slow
def test_killed_pull_resumes_where_it_stopped(hub: HubServer, payload: Path) -> None:
    served = hub.add_file("test/tiny-gguf", payload)
    hub.add_fault(served.filename, Fault("stall", at=2 * MiB, stall_s=120))  # hold it mid-download
    model = f"{served.repo_id}/{served.filename}"
    proc = _pull(model)
    store = ModelStore()
    part = store.partial_dir() / f"test--tiny-gguf--{served.filename}.part"
    deadline = time.monotonic() + 120
    while (not part.exists() or part.stat().st_size < 2 * MiB) and time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    kept = part.stat().st_size
    assert kept == 2 * MiB
    assert store.list() == [], "nothing half-written is shown as installed"
    locks = list((store.paths.cache_dir / "locks").glob("*.lock"))
    assert locks, "the killed process left its lock file behind (the OS released the lock itself)"

    hub.state.faults.clear()
    out, err = _pull(model).communicate(timeout=120)
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[-1]["event"] == "installed", err
    assert lines[-1]["sha256"] == served.sha256
    assert Path(lines[-1]["path"]).read_bytes() == payload.read_bytes()
    assert hub.gets(served.filename)[-1].range == f"bytes={kept}-"
    assert hub.bytes_sent(served.filename) <= served.size + SMALL
    states = [e["state"] for e in lines if e["event"] == "progress"]
    assert states[0] == "queued"
    assert states[-1] == "done"
    assert not part.with_name(part.name + ".lock").exists(), "no lock file beside the partial any more"


def test_cli_list_rm_import(capsys: pytest.CaptureFixture[str], gemma3_gguf: Path, tmp_path: Path) -> None:
    assert cli_main(["list"]) == 0
    assert "No models installed" in capsys.readouterr().out
    assert cli_main(["import", str(gemma3_gguf)]) == 0
    assert "custom model" in capsys.readouterr().out
    assert cli_main(["list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [m["path"] for m in listed] == [str(gemma3_gguf.resolve())]
    assert listed[0]["status"] == "ok"
    not_gguf = tmp_path / "notes.gguf"
    not_gguf.write_text("hello")
    assert cli_main(["import", str(not_gguf)]) == 1
    assert "is not a GGUF model file" in capsys.readouterr().err
    assert cli_main(["rm", listed[0]["id"]]) == 1, "no confirmation without a terminal or --yes"
    assert cli_main(["rm", listed[0]["id"], "--yes"]) == 0
    assert gemma3_gguf.exists(), "an imported file is the user's: forgotten, not deleted"
    assert cli_main(["rm", "nope", "--yes"]) == 1


def test_model_names_resolve_like_catalog_find() -> None:
    assert find_entry("e2b").size == "E2B"
    assert find_entry("12b", "UD-Q4_K_XL").format == "UD-Q4_K_XL"
    assert find_entry("12b:ud-q4_k_xl").format == "UD-Q4_K_XL"
    custom = find_entry("org/repo/file.gguf", revision="v1")
    assert custom.file is not None
    assert custom.file.repo_id == "org/repo"
    assert custom.file.filename == "file.gguf"
    assert custom.file.revision == "v1"
    with pytest.raises(KeyError):
        find_entry("nonexistent-model")


def test_cli_pull_reports_errors(hub: HubServer, payload: Path, capsys: pytest.CaptureFixture[str]) -> None:
    served = hub.add_file("test/tiny-gguf", payload)
    hub.gate(served.repo_id)
    assert cli_main(["pull", f"{served.repo_id}/{served.filename}"]) == 1
    assert "gated repository" in capsys.readouterr().err
    assert cli_main(["pull", "nonexistent-model"]) == 1


def test_cli_pull_draws_a_progress_bar(hub: HubServer, payload: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    served = hub.add_file("test/tiny-gguf", payload)
    assert cli_main(["pull", f"{served.repo_id}/{served.filename}"]) == 0
    captured = capsys.readouterr()
    assert "100.0%" in captured.err
    assert "done" in captured.err
    assert captured.out.startswith("Installed test/tiny-gguf/tiny-q4_0.gguf")
    assert "sha256 verified" in captured.out


def test_cli_pull_warns_before_downloading_a_model_that_will_not_run(
    hub: HubServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from dataclasses import replace

    from gemmadesk.core.hardware import probe

    small = replace(probe(include_backend=False), gpus=(), ram_total_bytes=2 * 1024**3,
                    ram_available_bytes=1024**3)
    hw_file = tmp_path / "hw.json"
    hw_file.write_text(small.to_json())
    assert cli_main(["pull", "31b", "--hardware", str(hw_file)]) == 1
    err = capsys.readouterr().err
    assert "Warning: this model will not run on this machine" in err
    assert "pass --yes to download anyway" in err
    assert hub.state.requests == [], "nothing was fetched"
    assert cli_main(["pull", "31b", "--hardware", str(hw_file), "--yes"]) == 1  # goes on to the Hub ...
    assert "was not found" in capsys.readouterr().err  # ... which (the local one) does not have it
    assert hub.state.requests


def test_pull_uses_the_token_huggingface_hub_stored(hub: HubServer, payload: Path, tmp_path: Path) -> None:
    """`hf auth login` stores the token in $HF_HOME/token; a gated pull in a fresh process uses it."""
    served = hub.add_file("google/gated-gguf", payload)
    hub.gate(served.repo_id)
    hf_home = Path(os.environ["HF_HOME"])
    hf_home.mkdir(parents=True, exist_ok=True)
    (hf_home / "token").write_text(VALID_TOKEN)
    out, err = _pull(f"{served.repo_id}/{served.filename}").communicate(timeout=120)
    assert json.loads(out.splitlines()[-1])["event"] == "installed", err
    assert all(r.authorized for r in hub.gets(served.filename))


def test_a_write_failure_keeps_the_partial_and_says_so(hub: HubServer, payload: Path) -> None:
    """A real write failure: the pull runs with a file-size limit (RLIMIT_FSIZE, as a full disk would
    stop it), then again without one and resumes."""
    import resource

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (MiB + 4096, MiB + 4096))

    served = hub.add_file("test/tiny-gguf", payload)
    model = f"{served.repo_id}/{served.filename}"
    proc = subprocess.run([sys.executable, "-m", "gemmadesk", "pull", model], cwd=REPO, capture_output=True,
                          text=True, env=dict(os.environ), preexec_fn=limit_file_size, timeout=120)
    assert proc.returncode == 1
    assert "Could not write" in proc.stderr
    assert "start the download again to resume" in proc.stderr
    store = ModelStore()
    assert store.list() == []
    part = store.partial_dir() / f"test--tiny-gguf--{served.filename}.part"
    kept = part.stat().st_size
    assert 0 < kept <= MiB + 4096
    out, err = _pull(model).communicate(timeout=120)
    assert json.loads(out.splitlines()[-1])["event"] == "installed", err
    assert hub.gets(served.filename)[-1].range == f"bytes={kept}-"


def test_cli_pull_of_a_catalog_model_uses_its_pinned_revision(hub: HubServer, payload: Path, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """`gemmadesk pull 12b --format UD-Q4_K_XL` against a local Hub serving that repo (a stand-in GGUF with
    12B's architecture and layer count; its size is what a catalog refresh from this Hub reported)."""
    from dataclasses import replace

    from gemmadesk.core.catalog import load_catalog
    from gemmadesk.core.catalog_refresh import CACHE_NAME
    from gemmadesk.core.hardware import probe
    from gemmadesk.core.paths import app_paths

    entry = load_catalog().find("12b:ud-q4_k_xl")
    assert entry.file is not None
    write_gguf(payload, block_count=48, tensor_bytes=2 * MiB)
    served = hub.add_file(entry.file.repo_id, payload, filename=entry.file.filename,
                          commit=entry.file.revision)
    refreshed = {f"{entry.file.repo_id}@{entry.file.revision}/{entry.file.filename}": {"size": served.size}}
    (app_paths().cache_dir / CACHE_NAME).parent.mkdir(parents=True, exist_ok=True)
    (app_paths().cache_dir / CACHE_NAME).write_text(json.dumps({"version": 1, "files": refreshed}))
    big = replace(probe(include_backend=False), gpus=(), ram_total_bytes=64 * 1024**3,
                  ram_available_bytes=60 * 1024**3)
    hw_file = tmp_path / "hw.json"
    hw_file.write_text(big.to_json())
    assert cli_main(["pull", "12b", "--format", "UD-Q4_K_XL", "--hardware", str(hw_file)]) == 0
    captured = capsys.readouterr()
    assert "Disk space:" in captured.err
    assert f"/resolve/{entry.file.revision}/{entry.file.filename}" in hub.gets(served.filename)[0].path
    assert ModelStore().get(entry.id).sha256 == served.sha256
    assert cli_main(["list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["entry_id"] == entry.id
    assert cli_main(["rm", entry.id, "--yes"]) == 0
    assert ModelStore().list() == []
