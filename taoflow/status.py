"""TAO's status.json: writing it (the emulator), tailing it (every launcher) and classifying failures.

TAO trainers append JSON lines to `<results_dir>/status.json`; TAO's service decides success from the last
line. The writer reproduces that format byte for byte in spirit (date "M/D/YYYY" and time "H:M:S" without
zero padding, sticky `kpi`/`graphical` dicts), so the tailer, the manifest and AutoML read emulated and real
runs the same way. The tailer is incremental (keeps a byte offset, holds back a half-written last line),
because launchers poll it while the trainer is still writing.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from taoflow.launchers.base import EpochProgress, Event, StatusRecord

STATUS_FILE = "status.json"
TERMINAL_STATUSES = ("SUCCESS", "FAILURE", "SKIPPED")

# Exit codes meaning "the process was killed from outside" (SIGKILL/SIGTERM as negative Popen codes or as
# shell-style 128+N): preemption, eviction, OOM-killer, a node going away. Retryable when no pattern says
# otherwise.
KILLED_EXIT_CODES = {-9, -15, 137, 143}

# Generic patterns, tried after the skill's own error patterns: failures every TAO network shares.
GENERIC_PATTERNS: tuple[tuple[str, str, str, str], ...] = (
    ("cuda_oom", r"CUDA out of memory|torch\.OutOfMemoryError|OutOfMemoryError", "infra",
     "The GPU ran out of memory; reduce the batch size or use a GPU with more memory."),
    ("nccl", r"NCCL error|ncclInternalError|ncclSystemError|NCCL WARN", "infra",
     "A collective-communication failure between GPUs or nodes; retried from the newest checkpoint."),
    ("preempted", r"Received SIGTERM|Preempted|preempted|Evicted", "infra",
     "The process was preempted; retried from the newest checkpoint."),
    ("config_key", r"omegaconf\.errors\.ConfigKeyError|ConfigKeyError: Key '", "spec",
     "The spec has a key TAO does not know (see `full_key` in the log); remove or rename it."),
    ("config_type", r"omegaconf\.errors\.(ValidationError|ConfigTypeError)|ValidationError: ", "spec",
     "A spec value has the wrong type (see `full_key` in the log); fix the value."),
    ("missing_value", r"MissingMandatoryValue", "spec",
     "A mandatory spec value is missing (see `full_key` in the log)."),
    ("empty_dataloader", r"[Dd]ataloader length is zero|num_samples should be a positive integer value", "spec",
     ("The dataset yielded no samples: inference image folders are scanned only at the top level for "
     ".jpg/.png files; point the spec at a flat folder of images.")),
    ("missing_path", r"(FileNotFoundError|NotADirectoryError|IsADirectoryError)", "spec",
     "A dataset or checkpoint path in the spec does not exist or has the wrong kind; check the path named in the log."),
)


def now_fields(when: datetime | None = None) -> dict[str, str]:
    """TAO's date/time fields: no zero padding ("11/3/2026", "9:5:7")."""
    when = when or datetime.now()
    return {
        "date": f"{when.month}/{when.day}/{when.year}",
        "time": f"{when.hour}:{when.minute}:{when.second}",
    }


def format_duration(seconds: float) -> str:
    """"H:MM:SS.ffffff" as TAO prints `time_per_epoch` and `eta` (always with microseconds)."""
    delta = timedelta(seconds=max(seconds, 0.0))
    text = str(delta)
    return text if "." in text else text + ".000000"


class StatusWriter:
    """Appends TAO-format lines to a status.json; `kpi` and `graphical` stay sticky like TAO's logger."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.kpi: dict[str, float] = {}
        self.graphical: dict[str, float] = {}

    def write(self, status: str, message: str, *, verbosity: str = "INFO",
              kpi: dict[str, float] | None = None, graphical: dict[str, float] | None = None,
              **fields: Any) -> dict[str, Any]:
        if kpi:
            self.kpi.update(kpi)
        if graphical:
            self.graphical.update(graphical)
        record: dict[str, Any] = dict(fields)
        record.update(now_fields())
        record.update({"status": status, "verbosity": verbosity, "message": message})
        if self.kpi:
            record["kpi"] = dict(self.kpi)
        if self.graphical:
            record["graphical"] = dict(self.graphical)
        line = json.dumps(record) + "\n"
        # One write call per line with O_APPEND: a concurrent reader never sees a line interleaved.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
        return record


def status_paths(results_dir: str | Path, tao_action: str | None = None) -> list[Path]:
    """Where TAO may write status.json: the results folder itself (the emulator, most TAO PyTorch
    entrypoints) or a subfolder named after the action (`<results_dir>/train/status.json`)."""
    root = Path(results_dir)
    paths = [root / STATUS_FILE]
    if tao_action:
        paths.append(root / tao_action / STATUS_FILE)
    return paths


def read_status(path: str | Path) -> list[dict[str, Any]]:
    """Every complete, parseable line of a status.json (missing file: no lines)."""
    tailer = StatusTailer(path)
    return tailer.poll()


class LineTailer:
    """Reads complete lines appended to a file since the last call (a partial last line waits)."""

    def __init__(self, path: str | Path, offset: int = 0):
        self.path = Path(path)
        self.offset = offset
        self._partial = b""

    @classmethod
    def from_end(cls, path: str | Path) -> LineTailer:
        p = Path(path)
        return cls(p, p.stat().st_size if p.exists() else 0)

    def poll(self) -> list[str]:
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.offset)
                chunk = fh.read()
        except FileNotFoundError:
            return []
        if not chunk:
            return []
        self.offset += len(chunk)
        data = self._partial + chunk
        *complete, self._partial = data.split(b"\n")
        return [line.decode("utf-8", "replace") for line in complete]

    def flush(self) -> list[str]:
        """The held-back partial line too (call once the writer has exited)."""
        lines = self.poll()
        if self._partial:
            lines.append(self._partial.decode("utf-8", "replace"))
            self._partial = b""
        return lines


class StatusTailer:
    """Incremental reader of status.json records (skips lines that are not JSON objects)."""

    def __init__(self, path: str | Path, offset: int = 0):
        self.lines = LineTailer(path, offset)

    @classmethod
    def from_end(cls, path: str | Path) -> StatusTailer:
        tailer = cls(path)
        tailer.lines = LineTailer.from_end(path)
        return tailer

    @property
    def offset(self) -> int:
        return self.lines.offset

    def poll(self) -> list[dict[str, Any]]:
        return _parse(self.lines.poll())

    def flush(self) -> list[dict[str, Any]]:
        return _parse(self.lines.flush())


def _parse(lines: Iterable[str]) -> list[dict[str, Any]]:
    records = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            records.append(value)
    return records


def parse_status_lines(lines: Iterable[str]) -> list[dict[str, Any]]:
    """Records of status.json lines read by other means (a store read): blank and non-JSON lines skipped."""
    return _parse(lines)


def progress_from_record(record: dict[str, Any]) -> EpochProgress | None:
    """The EpochProgress of a RUNNING line with an epoch, else None."""
    found = [e for e in events_for(record) if isinstance(e, EpochProgress)]
    return found[0] if found else None


def events_for(record: dict[str, Any]) -> list[Event]:
    """The typed events of one status record: always a StatusRecord, plus EpochProgress for progress lines."""
    events: list[Event] = [StatusRecord(record)]
    if record.get("status") == "RUNNING" and isinstance(record.get("epoch"), int):
        events.append(
            EpochProgress(
                epoch=record["epoch"],
                max_epoch=int(record.get("max_epoch", record["epoch"])),
                eta=record.get("eta"),
                kpi=_numbers(record.get("kpi")),
                graphical=_numbers(record.get("graphical")),
            )
        )
    return events


def _numbers(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        return {}
    return {k: float(v) for k, v in value.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def terminal_status(records: list[dict[str, Any]]) -> str | None:
    """SUCCESS/FAILURE/SKIPPED of the last record, as TAO's service reads it; None while running."""
    if not records:
        return None
    status = records[-1].get("status")
    return status if status in TERMINAL_STATUSES else None


def kpi_history(records: list[dict[str, Any]]) -> list[tuple[int, dict[str, float]]]:
    """(epoch, kpi) for every progress line, in file order (resumed runs repeat epochs; last one wins)."""
    by_epoch: dict[int, dict[str, float]] = {}
    for rec in records:
        if isinstance(rec.get("epoch"), int) and rec.get("kpi"):
            by_epoch[rec["epoch"]] = _numbers(rec["kpi"])
    return sorted(by_epoch.items())


def final_and_best(records: list[dict[str, Any]], metric: str | None, direction: str | None
                   ) -> tuple[dict[str, float], dict[str, float]]:
    """The last KPI dict, and the KPI dict of the epoch that is best by `metric` (final when no metric)."""
    history = kpi_history(records)
    final: dict[str, float] = {}
    for rec in records:
        if rec.get("kpi"):
            final = _numbers(rec["kpi"])
    if not history or not metric:
        return final, final
    scored = [(k[metric], k) for _, k in history if metric in k]
    if not scored:
        return final, final
    pick = max if direction != "minimize" else min
    return final, pick(scored, key=lambda pair: pair[0])[1]


@dataclass(frozen=True)
class FailureInfo:
    failure_class: str
    remedy: str
    pattern: str | None
    message: str


def classify_failure(log_text: str, exit_code: int | None, skill: Any = None) -> FailureInfo:
    """Why a run failed: the skill's error patterns first, then the shared ones, then the exit code.

    `infra` is retryable (resume from the newest checkpoint); `program` and `spec` are not."""
    message = last_error_line(log_text)
    if skill is not None:
        pattern = skill.classify(log_text)
        if pattern is not None:
            return FailureInfo(pattern.failure_class, pattern.remedy, pattern.name, message)
    for name, regex, klass, remedy in GENERIC_PATTERNS:
        if re.search(regex, log_text, re.MULTILINE):
            return FailureInfo(klass, remedy, name, message)
    if exit_code in KILLED_EXIT_CODES:
        return FailureInfo(
            "infra", "The process was killed (SIGKILL/SIGTERM: preemption, eviction or the OOM killer); "
            "retried from the newest checkpoint.", None, message or f"killed (exit code {exit_code})")
    return FailureInfo("program", "TAO failed with an error no known pattern explains; read the log.", None,
                       message or f"exit code {exit_code}")


_ERROR_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(Error|Exception|Interrupt)|RuntimeError|AssertionError)\b.*")


def last_error_line(log_text: str) -> str:
    """The last `SomethingError: ...` line of a log (what a person wants in a one-line summary)."""
    found = ""
    for line in log_text.splitlines():
        if _ERROR_LINE.match(line):
            found = line.strip()
    return found
