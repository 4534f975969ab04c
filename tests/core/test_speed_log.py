"""The record of measured decode speeds: fed by a real reply on the real Gemma 3 270M, read back, versioned."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from gemmadesk.core.engine import ChatMessage, DirectLoadSettings, Engine, ReplyDone, SamplingParams
from gemmadesk.core.hardware import Hardware
from gemmadesk.core.paths import app_paths
from gemmadesk.core.speed_log import (
    MAX_RECORDS,
    VERSION,
    SpeedLog,
    machine_key,
    measured_from_reply,
    record_reply,
    this_machine_key,
)
from gemmadesk.core.types import ReplyStats


def test_a_real_reply_is_recorded_and_read_back(gemma3_gguf: Path) -> None:
    engine = Engine()
    engine.load(DirectLoadSettings(model_path=str(gemma3_gguf), n_ctx=1024, n_threads=1))
    done = None
    for event in engine.chat_stream([ChatMessage("user", "Tell me a long story about the sea.")],
                                    SamplingParams(max_tokens=40, seed=3), threading.Event()):
        if isinstance(event, ReplyDone):
            done = event
    assert done is not None and done.stats.completion_tokens >= 16
    assert record_reply(engine.report, done.stats)  # the hook, exactly as the worker calls it
    engine.unload()

    path = app_paths().data_dir / "decode_speeds.json"
    assert path.is_file()
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["version"] == VERSION and len(doc["records"]) == 1
    (rec,) = SpeedLog().load(this_machine_key())
    assert rec.model_file == gemma3_gguf.name
    assert rec.placement == "cpu" and rec.threads == 1 and rec.cpu_layers == 18
    assert rec.tokens_per_s == done.stats.generated_tokens_per_s
    assert rec.cpu_bytes > 100 * 2**20  # the whole output matrix is read per token
    assert SpeedLog().load("another machine") == ()


def test_short_or_failed_replies_are_not_recorded(gemma3_gguf: Path, tmp_path: Path) -> None:
    from gemmadesk.core.types import LoadReport

    report = LoadReport(str(gemma3_gguf), "gemma3", "g", 1, 1024, 32768, 18, 0, True, "f16", "f16", 1, "t", False, 0.1)
    log = SpeedLog(tmp_path / "s.json")
    assert not record_reply(report, ReplyStats(completion_tokens=3, generated_tokens_per_s=50.0), speed_log=log)
    assert not record_reply(report, ReplyStats(completion_tokens=64, generated_tokens_per_s=float("nan")),
                            speed_log=log)
    assert not record_reply(None, ReplyStats(completion_tokens=64, generated_tokens_per_s=50.0), speed_log=log)
    gone = LoadReport(str(tmp_path / "deleted.gguf"), "gemma3", "g", 1, 1024, 32768, 18, 0, True, "f16", "f16", 1,
                      "t", False, 0.1)
    assert not record_reply(gone, ReplyStats(completion_tokens=64, generated_tokens_per_s=50.0), speed_log=log)
    assert not (tmp_path / "s.json").exists()


def test_the_file_keeps_only_the_latest_records(gemma3_gguf: Path, tmp_path: Path) -> None:
    from gemmadesk.core.types import LoadReport

    report = LoadReport(str(gemma3_gguf), "gemma3", "g", 1, 1024, 32768, 18, 0, True, "f16", "f16", 1, "t", False, 0.1)
    rec = measured_from_reply(report, ReplyStats(prompt_tokens=10, completion_tokens=64, generated_tokens_per_s=1.0))
    assert rec is not None
    log = SpeedLog(tmp_path / "s.json")
    for i in range(MAX_RECORDS + 5):
        log.add(rec.__class__(**{**rec.__dict__, "tokens_per_s": float(i + 1)}), "m")
    speeds = [r.tokens_per_s for r in log.load("m")]
    assert len(speeds) == MAX_RECORDS and speeds[0] == 6.0 and speeds[-1] == MAX_RECORDS + 5.0


def test_machine_key_changes_with_the_gpu() -> None:
    base = {"os": "x", "arch": "x", "cpu_name": "cpu", "cpu_cores": 8, "cpu_threads": 16,
            "ram_total_bytes": 32 * 2**30, "ram_available_bytes": 30 * 2**30}
    a = Hardware.from_dict(base)
    b = Hardware.from_dict({**base, "gpus": [{"name": "RTX 4090", "vendor": "nvidia", "memory_kind": "discrete",
                                             "total_bytes": 24 * 2**30}]})
    assert machine_key(a) != machine_key(b)
    assert machine_key(a) == machine_key(Hardware.from_dict({**base, "ram_available_bytes": 3 * 2**30}))
