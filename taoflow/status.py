"""TAO's status.json: writing it (the emulator), tailing it (every launcher), folding it into KPIs and
events, judging how a run ended, and classifying failures.

What TAO writes (docs/tao-contract.md, "status.json lines"): JSON lines appended to
`<results_dir>/<action>/status.json` by TAO's StatusLogger — data fields first, then `date` ("M/D/YYYY") and
`time` ("H:M:S") without zero padding, `status`, `verbosity`, `message`, and the `categorical` / `graphical`
/ `kpi` dicts the trainer last assigned (a new assignment *replaces* the dict; every later line repeats it).
Per epoch Lightning calls validation first ("Eval metrics generated.", no `epoch`), then TAO's status
callback ("Training loop in progress" with epoch/step/max_epoch/max_step/time_per_epoch/time_per_step/eta as
`str(timedelta)`), then the model's "Train metrics generated." (no `epoch`). KPIs may be strings. The CLI
never writes SUCCESS: a run ends with RUNNING "<Action> finished successfully."; SUCCESS/FAILURE lines come
from TAO Core's service wrapper (and from older releases), FAILURE also from the CLI for the exceptions it
names ("Configuration error: …", "Parameter validation error: …", "File system error: …").

`StatusReader` reads both that and the older one-line-per-epoch shape (epoch, kpi and a final SUCCESS on
the same lines), attributing every KPI to the epoch that measured it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from taoflow.failures import (  # re-exported: launchers and tests import them from here
    GENERIC_PATTERNS,
    KILLED_EXIT_CODES,
    FailureInfo,
    classify_failure,
    last_error_line,
)
from taoflow.kpis import is_loss, kpi_numbers, metric_in
from taoflow.launchers.base import EpochProgress, Event, StatusRecord

STATUS_FILE = "status.json"
TERMINAL_STATUSES = ("SUCCESS", "FAILURE", "SKIPPED")
# The last line of a run the CLI finished: "Train finished successfully." (TAO PyTorch / Deploy / Data
# Services monitor_status), "… completed successfully" (older releases and TAO Core's wrapper).
SUCCESS_MESSAGE = re.compile(r"(finished|completed) successfully\.?\s*$", re.IGNORECASE)
# Epoch-less metric lines written *before* the epoch line they belong to (validation runs inside the epoch).
_BEFORE_EPOCH_MESSAGE = re.compile(r"^\s*(eval|val|validation)\b", re.IGNORECASE)

def now_fields(when: datetime | None = None) -> dict[str, str]:
    """TAO's date/time fields: no zero padding ("11/3/2026", "9:5:7")."""
    when = when or datetime.now()
    return {
        "date": f"{when.month}/{when.day}/{when.year}",
        "time": f"{when.hour}:{when.minute}:{when.second}",
    }


def format_duration(seconds: float) -> str:
    """A duration as TAO writes `time_per_epoch`, `time_per_step` and `eta`: `str(timedelta)` ("0:00:01.5",
    "0:00:02" when whole, "1 day, 2:00:00")."""
    return str(timedelta(seconds=max(seconds, 0.0)))


class StatusWriter:
    """Appends lines as TAO's StatusLogger does. Assign `kpi` / `graphical` / `categorical` to replace what
    every following line carries (TAO's trainers assign a fresh dict per metrics event)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.kpi: dict[str, Any] = {}
        self.graphical: dict[str, Any] = {}
        self.categorical: dict[str, Any] = {}

    def write(self, status: str, message: str | None = None, *, verbosity: str = "INFO",
              **data: Any) -> dict[str, Any]:
        record: dict[str, Any] = dict(data)
        record.update(now_fields())
        record.update({"status": status, "verbosity": verbosity})
        if message:
            record["message"] = message
        for name in ("categorical", "graphical", "kpi"):
            if getattr(self, name):
                record[name] = dict(getattr(self, name))
        line = json.dumps(record) + "\n"
        # One write call per line with O_APPEND: a concurrent reader never sees a line interleaved.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
        return record


def status_paths(results_dir: str | Path, *folders: str | None) -> list[Path]:
    """Where a run's status.json may be: the results folder itself (TAO's `<results_dir>/<action>/` when the
    launcher hands TAO the run folder; the emulator; Data Services) or a sub-folder TAO added when it was
    handed the action folder (`<results>/train/status.json`, `<results>/trt_evaluate/status.json`)."""
    root = Path(results_dir)
    paths = [root / STATUS_FILE]
    for folder in folders:
        if folder and root / folder / STATUS_FILE not in paths:
            paths.append(root / folder / STATUS_FILE)
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


def _int(value: Any, default: int | None = None) -> int | None:
    if isinstance(value, bool) or value is None:
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def events_for(record: dict[str, Any]) -> list[Event]:
    """The typed events of one line read alone: a StatusRecord, plus EpochProgress for a RUNNING line with an
    epoch (its KPIs are what that line carries, string numbers parsed). A stream should use StatusReader,
    which also attributes the KPIs TAO writes on the lines around the epoch line."""
    events: list[Event] = [StatusRecord(record)]
    epoch = _int(record.get("epoch"))
    if record.get("status") == "RUNNING" and epoch is not None:
        events.append(EpochProgress(
            epoch=epoch, max_epoch=_int(record.get("max_epoch"), epoch), eta=record.get("eta"),
            kpi=kpi_numbers(record.get("kpi")), graphical=kpi_numbers(record.get("graphical")),
        ))
    return events


def progress_from_record(record: dict[str, Any]) -> EpochProgress | None:
    """The EpochProgress of a RUNNING line with an epoch, read alone (see events_for), else None."""
    found = [e for e in events_for(record) if isinstance(e, EpochProgress)]
    return found[0] if found else None


class _FreshValues:
    """Which values of a `kpi` (or `graphical`) dict are new on a line, given that TAO repeats the dict it
    last assigned on every line. A dict with other keys than the previous line's is a new assignment: all
    fresh. With the same keys, changed values are fresh, and so are unchanged non-loss values when another
    non-loss value changed (a new validation with a genuine tie); a repeat proves nothing. Losses change
    every step, so they never vouch for a validation value (older layouts repeat validation values in
    every epoch line)."""

    def __init__(self) -> None:
        self.previous: dict[str, float] | None = None

    def __call__(self, raw: Any) -> dict[str, float]:
        if not isinstance(raw, dict):
            return {}
        values = kpi_numbers(raw)
        previous, self.previous = self.previous, values
        if previous is None or set(values) != set(previous):
            return dict(values)
        changed = {k for k, v in values.items() if previous[k] != v}
        validated = {k for k in changed if not is_loss(k)}
        return {k: v for k, v in values.items() if k in changed or (not is_loss(k) and validated - {k})}


def is_success_line(record: dict[str, Any]) -> bool:
    """SUCCESS (TAO Core's wrapper, older releases) or RUNNING "… finished successfully." (the CLI)."""
    status = record.get("status")
    return status == "SUCCESS" or (status == "RUNNING" and bool(SUCCESS_MESSAGE.search(str(record.get("message") or ""))))


@dataclass
class StatusReader:
    """Folds status.json lines, in file order, into KPIs per epoch and typed events.

    A line with an epoch opens that epoch's group; fresh KPIs on it, on the epoch-less "Eval metrics
    generated." line(s) before it, and on the epoch-less "Train metrics generated." line after it belong to
    that epoch. The group's EpochProgress is emitted when the next line shows the group is complete, with
    every KPI of the epoch — or, for a reader following a file, when a whole poll (`tick()`) brought nothing
    more, or at `close()`. Resumed runs repeat epochs: the last values win."""

    by_epoch: dict[int, dict[str, float]] = field(default_factory=dict)  # `kpi` and `graphical` values
    kpi_by_epoch: dict[int, dict[str, float]] = field(default_factory=dict)  # `kpi` values only
    end_step: dict[int, int] = field(default_factory=dict)  # global step at each epoch's end
    final: dict[str, float] = field(default_factory=dict)  # every KPI's last value
    last: dict[str, Any] | None = None
    max_epoch: int | None = None
    last_epoch: int | None = None
    _kpi: _FreshValues = field(default_factory=_FreshValues)
    _graphical: _FreshValues = field(default_factory=_FreshValues)
    _before_epoch: dict[str, float] = field(default_factory=dict)
    _before_kpi: dict[str, float] = field(default_factory=dict)
    _open: tuple[dict[str, Any], int] | None = None
    _open_ticks: int = 0

    @property
    def status(self) -> str | None:
        return str(self.last["status"]) if self.last and self.last.get("status") else None

    def feed(self, record: dict[str, Any]) -> list[Event]:
        events: list[Event] = [StatusRecord(record)]
        self.last = record
        fresh_kpi = self._kpi(record.get("kpi"))
        fresh = {**self._graphical(record.get("graphical")), **fresh_kpi}  # kpi wins where both name a metric
        self.final.update(kpi_numbers(record.get("graphical")))
        self.final.update(kpi_numbers(record.get("kpi")))
        epoch = _int(record.get("epoch"))
        if epoch is not None:
            events += self.close()
            self.last_epoch = epoch if self.last_epoch is None else max(self.last_epoch, epoch)
            self.max_epoch = _int(record.get("max_epoch"), self.max_epoch)
            step = _int(record.get("step"))
            if step is not None:
                self.end_step[epoch] = step
            self._attribute(epoch, {**self._before_epoch, **fresh}, {**self._before_kpi, **fresh_kpi})
            self._before_epoch, self._before_kpi = {}, {}
            self._open = (record, epoch) if record.get("status") == "RUNNING" else None
            self._open_ticks = 0
            return events
        if fresh:
            if _BEFORE_EPOCH_MESSAGE.match(str(record.get("message") or "")):
                self._before_epoch.update(fresh)
                self._before_kpi.update(fresh_kpi)
            elif self._open is not None:
                self._attribute(self._open[1], fresh, fresh_kpi)
            elif self.last_epoch is not None:  # a train-metrics line that came after its group was released
                self._attribute(self.last_epoch, fresh, fresh_kpi)
        events += self.close()
        return events

    def feed_all(self, records: Iterable[dict[str, Any]]) -> list[Event]:
        events: list[Event] = []
        for record in records:
            events += self.feed(record)
        return events

    def tick(self) -> list[Event]:
        """Call after each poll of a file being written: an epoch group that stayed open through a whole poll
        is complete (TAO writes its lines microseconds apart), so its progress is not held back."""
        if self._open is None:
            return []
        self._open_ticks += 1
        return self.close() if self._open_ticks > 1 else []

    def close(self) -> list[Event]:
        """The EpochProgress of the open epoch group, if any (call at the end of the stream too)."""
        if self._open is None:
            return []
        record, epoch = self._open
        self._open = None
        return [EpochProgress(
            epoch=epoch, max_epoch=_int(record.get("max_epoch"), epoch), eta=record.get("eta"),
            kpi=dict(self.kpi_by_epoch.get(epoch, {})), graphical=kpi_numbers(record.get("graphical")),
        )]

    def _attribute(self, epoch: int, values: dict[str, float], kpi: dict[str, float]) -> None:
        if values:
            self.by_epoch.setdefault(epoch, {}).update(values)
        if kpi:
            self.kpi_by_epoch.setdefault(epoch, {}).update(kpi)

    def best(self, metric: str | None, direction: str | None) -> dict[str, float]:
        """The KPIs of the epoch best by `metric` (ties: the later epoch); {} without metric or values."""
        if not metric:
            return {}
        scored = [(value, epoch) for epoch, kpis in self.by_epoch.items()
                  if (value := metric_in(kpis, metric)) is not None]
        if not scored:
            return {}
        sign = -1.0 if direction == "minimize" else 1.0
        _, epoch = max(scored, key=lambda ve: (sign * ve[0], ve[1]))
        return dict(self.by_epoch[epoch])


def read_kpis(records: Iterable[dict[str, Any]]) -> StatusReader:
    reader = StatusReader()
    reader.feed_all(records)
    reader.close()
    return reader


def terminal_status(records: list[dict[str, Any]]) -> str | None:
    """SUCCESS/FAILURE/SKIPPED of the last record, as TAO Core's service reads it; None otherwise."""
    if not records:
        return None
    status = records[-1].get("status")
    return status if status in TERMINAL_STATUSES else None


def run_outcome(records: list[dict[str, Any]], exit_code: int | None) -> str | None:
    """SUCCESS or FAILURE of a run from its status lines and, where known, its exit code.

    Exit code known: non-zero fails; zero succeeds unless the last line is a FAILURE (TAO writes one and
    exits 0 on KeyboardInterrupt/SystemError) or the lines never reach a success line (Data Services exits 0
    after a RuntimeError). Exit code unknown (re-attached to a process that is gone): the last line decides
    — SUCCESS or "… finished successfully." succeed, FAILURE/SKIPPED fail, anything else is None."""
    last = records[-1] if records else None
    if exit_code is not None:
        if exit_code != 0 or (last is not None and last.get("status") == "FAILURE"):
            return "FAILURE"
        if records and not any(is_success_line(r) for r in records):
            return "FAILURE"
        return "SUCCESS"
    if last is None:
        return None
    if is_success_line(last):
        return "SUCCESS"
    if last.get("status") in ("FAILURE", "SKIPPED"):
        return "FAILURE"
    return None


def final_and_best(records: list[dict[str, Any]], metric: str | None, direction: str | None
                   ) -> tuple[dict[str, float], dict[str, float]]:
    """Every KPI's last value, and the KPIs of the epoch that is best by `metric` (final when no epoch has
    it, or no metric is given)."""
    reader = read_kpis(records)
    final = dict(reader.final)
    return final, reader.best(metric, direction) or final


__all__ = [
    "GENERIC_PATTERNS", "KILLED_EXIT_CODES", "STATUS_FILE", "FailureInfo", "LineTailer", "StatusReader",
    "StatusTailer", "StatusWriter", "classify_failure", "events_for", "final_and_best", "format_duration",
    "is_success_line", "last_error_line", "now_fields", "parse_status_lines", "progress_from_record",
    "read_kpis", "read_status", "run_outcome", "status_paths", "terminal_status",
]
