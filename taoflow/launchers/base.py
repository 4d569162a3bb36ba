"""The Launcher protocol and the typed events every launcher emits.

A launcher runs one ActionRun somewhere (a local process, a docker container, a Kubernetes Job, a flow run
on a GPU work pool). Submitting the same run twice attaches to the first (names derive from `run_key`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from taoflow.runs import ActionResult, ActionRun


@dataclass(frozen=True)
class LogLine:
    """One line the TAO process printed."""

    text: str


@dataclass(frozen=True)
class StatusRecord:
    """One status.json line as TAO wrote it (raw dict), for consumers that want every field."""

    record: dict[str, Any]


@dataclass(frozen=True)
class EpochProgress:
    """A RUNNING status.json line with training progress. `epoch` is 0-based as in TAO."""

    epoch: int
    max_epoch: int
    eta: str | None = None
    kpi: dict[str, float] = field(default_factory=dict)
    graphical: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Finished:
    """The terminal state: SUCCESS, FAILURE or CANCELLED, with the classified failure when it failed."""

    status: str
    message: str = ""
    failure_class: str | None = None
    remedy: str | None = None


@dataclass(frozen=True)
class Cached:
    """The action was not launched: its results were already in the store (same run key)."""

    results_uri: str
    emulated: bool = False


@dataclass(frozen=True)
class Retrying:
    """An attempt failed with an infrastructure failure and another attempt will run (resuming)."""

    attempt: int
    max_attempts: int
    reason: str
    remedy: str | None = None


Event = LogLine | StatusRecord | EpochProgress | Finished | Cached | Retrying


class Handle(Protocol):
    """Whatever a launcher needs to find its run again (process, container id, Job name)."""

    run: ActionRun


class Launcher(Protocol):
    name: str

    def submit(self, run: ActionRun) -> Handle: ...

    def events(self, handle: Handle) -> Iterator[Event]:
        """Yields events until the run ends; the last one is Finished."""
        ...

    def cancel(self, handle: Handle) -> None: ...

    def result(self, handle: Handle) -> ActionResult:
        """Blocks until the run ends and returns its result (with the checkpoint manifest)."""
        ...


def result_after_events(launcher: Launcher, handle: Any) -> ActionResult:
    """`result` for launchers whose `events` sets `handle.result_value` when the run ends: follow the
    events to the end unless someone already did."""
    if handle.result_value is None:
        for _ in launcher.events(handle):
            pass
    assert handle.result_value is not None
    return handle.result_value
