"""The decode speeds GemmaDesk measured on this machine: a small versioned file in the data folder.

``<data dir>/decode_speeds.json`` keeps the latest replies' decode speed per model, placement and
machine, so the fit list's speed estimate can be corrected by what this machine really does
(:func:`gemmadesk.core.speed.correction_factors`). One call feeds it when a reply finishes::

    from gemmadesk.core.speed_log import record_reply
    record_reply(load_report, reply_stats)     # on the thread that ran the reply; never raises

The file is input like any other: it is read with a size cap, every record is checked, a damaged file
is set aside (renamed ``*.corrupt-<time>``, never deleted) and a file from a newer GemmaDesk is left
alone (read as empty, never overwritten).
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from gemmadesk.core.hardware import Hardware
from gemmadesk.core.paths import app_paths, atomic_write_text
from gemmadesk.core.speed import MeasuredSpeed, decode_work

log = logging.getLogger(__name__)

FILE_NAME = "decode_speeds.json"
VERSION = 1
MAX_RECORDS = 200  # oldest dropped first
MAX_FILE_BYTES = 512 * 1024  # 200 records are ~80 KB; anything far larger is not ours
MIN_TOKENS = 16  # shorter replies measure start-up more than decoding
_lock = threading.Lock()


class _ReportLike(Protocol):
    """What a load report (``engine.LoadReport``) tells: the file and how it was placed."""

    @property
    def model_path(self) -> str: ...
    @property
    def file_bytes(self) -> int: ...
    @property
    def n_gpu_layers(self) -> int: ...
    @property
    def n_threads(self) -> int | None: ...
    @property
    def type_k(self) -> str: ...
    @property
    def type_v(self) -> str: ...


class _StatsLike(Protocol):
    """What a reply's statistics (``engine.ReplyStats``) tell."""

    @property
    def prompt_tokens(self) -> int: ...
    @property
    def completion_tokens(self) -> int: ...
    @property
    def generated_tokens_per_s(self) -> float: ...


def machine_key(hw: Hardware) -> str:
    """Which machine a record belongs to: CPU, cores, RAM (GiB) and GPUs. A new GPU starts afresh."""
    gpus = ",".join(sorted(g.name for g in hw.gpus))
    return f"{hw.cpu_name}|{hw.cpu_cores}c|{round(hw.ram_total_bytes / 2**30)}G|{gpus}"


@lru_cache(maxsize=1)
def this_machine_key() -> str:
    """This machine's key from a quick probe (no llama.cpp, no bandwidth measurement), once per process."""
    from gemmadesk.core.hardware import probe

    return machine_key(probe(include_backend=False, measure_bandwidth=False))


def default_path() -> Path:
    return app_paths().data_dir / FILE_NAME


def _int(value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"bad integer {value!r}")
    return value


def _record(raw: Any) -> tuple[str, MeasuredSpeed]:
    """(machine key, record) from one JSON object; ValueError if anything is off."""
    if not isinstance(raw, dict):
        raise ValueError("not an object")
    machine, name, placement = raw.get("machine"), raw.get("model_file"), raw.get("placement")
    if not isinstance(machine, str) or not isinstance(name, str) or len(machine) > 1000 or len(name) > 1000:
        raise ValueError("bad names")
    if placement not in ("cpu", "gpu", "split"):
        raise ValueError("bad placement")
    tps = raw.get("tokens_per_s")
    if isinstance(tps, bool) or not isinstance(tps, int | float) or not math.isfinite(tps) or not 0 < tps < 1e5:
        raise ValueError("bad speed")
    big = 2**50
    return machine, MeasuredSpeed(
        model_file=name,
        file_bytes=_int(raw.get("file_bytes"), 0, big),
        placement=placement,
        gpu_layers=_int(raw.get("gpu_layers"), 0, 10_000),
        cpu_layers=_int(raw.get("cpu_layers"), 0, 10_000),
        gpu_bytes=_int(raw.get("gpu_bytes"), 0, big),
        cpu_bytes=_int(raw.get("cpu_bytes"), 0, big),
        threads=_int(raw.get("threads"), 1, 10_000),
        tokens_per_s=float(tps),
        tokens=_int(raw.get("tokens"), 0, 10**9),
    )


class SpeedLog:
    """The record file. ``load`` and ``add`` never raise for a bad or missing file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_path()

    def _read(self) -> tuple[list[dict[str, Any]], bool]:
        """(raw records, writable). Not writable: the file belongs to a newer GemmaDesk."""
        try:
            with self.path.open("rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return [], True
        except OSError as exc:
            log.warning("cannot read %s: %s", self.path, exc)
            return [], False
        try:
            if len(data) > MAX_FILE_BYTES:
                raise ValueError(f"larger than {MAX_FILE_BYTES} bytes")
            doc = json.loads(data.decode("utf-8"))
            if not isinstance(doc, dict) or not isinstance(doc.get("version"), int):
                raise ValueError("no version")
            if doc["version"] > VERSION:
                log.warning("%s is from a newer GemmaDesk (version %s); not using it", self.path, doc["version"])
                return [], False
            records = doc.get("records")
            if not isinstance(records, list):
                raise ValueError("no records list")
            return [r for r in records if isinstance(r, dict)], True
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            self._set_aside(str(exc))
            return [], True

    def _set_aside(self, why: str) -> None:
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        try:
            if not self.path.is_symlink():
                self.path.replace(aside)
                log.warning("%s was damaged (%s); kept it as %s and started a new one", self.path, why, aside.name)
        except OSError as exc:
            log.warning("cannot set aside damaged %s: %s", self.path, exc)

    def load(self, machine: str | None = None) -> tuple[MeasuredSpeed, ...]:
        """Valid records, oldest first; only this ``machine``'s when given."""
        with _lock:
            raw, _ = self._read()
        out = []
        for r in raw:
            try:
                key, rec = _record(r)
            except ValueError:
                continue
            if machine is None or key == machine:
                out.append(rec)
        return tuple(out)

    def add(self, record: MeasuredSpeed, machine: str) -> bool:
        """Append one record (dropping the oldest beyond :data:`MAX_RECORDS`); False if not written."""
        entry = {"machine": machine, "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **asdict(record)}
        with _lock:
            raw, writable = self._read()
            if not writable or self.path.is_symlink():
                return False
            kept = []
            for r in raw:
                try:
                    _record(r)
                except ValueError:
                    continue
                kept.append(r)
            kept = [*kept, entry][-MAX_RECORDS:]
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write_text(self.path, json.dumps({"version": VERSION, "records": kept}, indent=1))
            except OSError as exc:
                log.warning("cannot save decode speeds to %s: %s", self.path, exc)
                return False
        return True


def measured_from_reply(report: _ReportLike, stats: _StatsLike) -> MeasuredSpeed | None:
    """The record for one finished reply, or None when it measured too little (or the file is gone)."""
    from gemmadesk.core.gguf_info import read_layout

    tps = float(stats.generated_tokens_per_s or 0.0)
    if stats.completion_tokens < MIN_TOKENS or not math.isfinite(tps) or not 0 < tps < 1e5:
        return None
    try:
        layout = read_layout(Path(report.model_path))
    except (OSError, ValueError) as exc:
        log.debug("no speed record: %s", exc)
        return None
    fill = max(1, stats.prompt_tokens + stats.completion_tokens // 2)
    work = decode_work(layout, report.n_gpu_layers, fill, report.type_k, report.type_v)
    return MeasuredSpeed(
        model_file=Path(report.model_path).name,
        file_bytes=int(report.file_bytes),
        placement=work.placement,
        gpu_layers=work.gpu_layers,
        cpu_layers=work.cpu_layers,
        gpu_bytes=work.gpu_bytes,
        cpu_bytes=work.cpu_bytes,
        threads=int(report.n_threads or 1),
        tokens_per_s=tps,
        tokens=int(stats.completion_tokens),
    )


def record_reply(report: _ReportLike | None, stats: _StatsLike, *, speed_log: SpeedLog | None = None) -> bool:
    """THE hook: call once when a reply finishes, on the thread that generated it (it reads the GGUF
    header and writes a small file). Returns whether a record was written; never raises."""
    if report is None:
        return False
    try:
        record = measured_from_reply(report, stats)
        if record is None:
            return False
        return (speed_log or SpeedLog()).add(record, this_machine_key())
    except Exception:  # a statistic must never break a chat
        log.warning("could not record the decode speed", exc_info=True)
        return False
