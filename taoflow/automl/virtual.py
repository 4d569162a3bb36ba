"""VirtualLauncher: the Launcher protocol in-process, on a virtual clock — for benchmarks and tests.

A trial's KPIs come from a function of its run and the epochs done (a response surface), epoch by epoch,
with no sleeping and no process. Each trial gets a rung gate like the emulator's (see
taoflow.emulator.rungs), so `SweepController` decides its trials in virtual-clock order: the sweep it runs
here is the sweep it runs on the emulator with the same seed, epoch for epoch. `emulator_kpis` is the
emulator's train action in one call, for predicting a `taoflow tune` on the emulator.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from taoflow.dotted import get_dotted
from taoflow.launchers.base import EpochProgress, Event, Finished
from taoflow.runs import ActionResult, ActionRun

KpiFn = Callable[[ActionRun, int], Mapping[str, float]]
"""`kpis(run, epochs)`: the KPIs a run reports after `epochs` epochs (1-based)."""


class VirtualGate:
    """An in-process rung gate: the trial's event stream waits at a rung until `ack` or `cancel`."""

    def __init__(self) -> None:
        self.rungs: set[int] = set()
        self._acked = 0
        self._cancelled = False
        self._cond = threading.Condition()

    def environment(self, rungs: list[int]) -> dict[str, str]:
        self.rungs = set(rungs)
        return {}

    def reset(self) -> None:
        with self._cond:
            self._acked = 0

    def ack(self, epochs: int) -> None:
        with self._cond:
            self._acked = max(self._acked, epochs)
            self._cond.notify_all()

    def release(self) -> None:
        with self._cond:
            self.rungs = set()
            self._cond.notify_all()

    def cancel(self) -> None:
        with self._cond:
            self._cancelled = True
            self._cond.notify_all()

    def wait(self, epochs: int) -> bool:
        """Block at rung `epochs` until acknowledged (True) or cancelled (False)."""
        with self._cond:
            self._cond.wait_for(lambda: self._cancelled or self._acked >= epochs or epochs not in self.rungs)
            return not self._cancelled


@dataclass
class VirtualHandle:
    run: ActionRun
    gate: VirtualGate | None
    fail_at: int | None = None
    cancelled: bool = False
    epochs: int = 0
    kpis: dict[str, float] = field(default_factory=dict)
    result_value: ActionResult | None = None


class VirtualLauncher:
    """Runs trials as functions of their spec (see the module docstring). `fail_at(run)` may name a 1-based
    epoch at which a run crashes (a program failure), to exercise failed trials."""

    name = "virtual"

    def __init__(self, kpis: KpiFn, fail_at: Callable[[ActionRun], int | None] | None = None):
        self.kpis = kpis
        self.fail_at = fail_at
        self._gates: dict[str, VirtualGate] = {}
        self._lock = threading.Lock()

    def rung_gate(self, run: ActionRun) -> VirtualGate:
        gate = VirtualGate()
        with self._lock:
            self._gates[run.run_key] = gate
        return gate

    def submit(self, run: ActionRun) -> VirtualHandle:
        with self._lock:
            gate = self._gates.pop(run.run_key, None)
        return VirtualHandle(run, gate, self.fail_at(run) if self.fail_at else None)

    def events(self, handle: VirtualHandle) -> Iterator[Event]:
        run = handle.run
        num_epochs = int(get_dotted(run.spec, "train.num_epochs", 1))
        status, message = "SUCCESS", None
        for epochs in range(handle.epochs + 1, num_epochs + 1):
            if handle.cancelled:
                status = "CANCELLED"
                break
            if handle.fail_at is not None and epochs >= handle.fail_at:
                status, message = "FAILURE", f"RuntimeError: VIRTUAL crash in epoch {epochs}"
                break
            handle.kpis = {k: float(v) for k, v in self.kpis(run, epochs).items()}
            handle.epochs = epochs
            yield EpochProgress(epoch=epochs - 1, max_epoch=num_epochs - 1, kpi=dict(handle.kpis))
            if handle.gate is not None and epochs in handle.gate.rungs and not handle.gate.wait(epochs):
                status = "CANCELLED"
                break
        if handle.cancelled:
            status = "CANCELLED"
        handle.result_value = ActionResult(
            model=run.model, action=run.action, run_key=run.run_key, status=status, results_uri=run.results_uri,
            kpis_final=dict(handle.kpis) if status == "SUCCESS" else {}, epochs_run=handle.epochs,
            failure_class="program" if status == "FAILURE" else None, message=message, emulated=True,
        )
        yield Finished(status, message or "", "program" if status == "FAILURE" else None)

    def cancel(self, handle: VirtualHandle) -> None:
        handle.cancelled = True
        if handle.gate is not None:
            handle.gate.cancel()

    def result(self, handle: VirtualHandle) -> ActionResult:
        if handle.result_value is None:
            for _ in self.events(handle):
                pass
        assert handle.result_value is not None
        return handle.result_value


def emulator_kpis(run: ActionRun, epochs: int) -> dict[str, float]:
    """What the emulator's train action reports for `run` after `epochs` epochs: the same surface, the same
    hyperparameters (taken from the spec as the emulator takes them) and the spec's `train.seed`."""
    from taoflow.emulator.surfaces import kpis
    from taoflow.emulator.train import hyperparameters

    num_epochs = int(get_dotted(run.spec, "train.num_epochs", 10))
    seed = int(get_dotted(run.spec, "train.seed", 1234))
    return kpis(run.model, hyperparameters(run.spec), epochs - 1, num_epochs, seed)


def flat_params(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A spec as dotted keys (what a plug-in surface function receives)."""
    from taoflow.dotted import flatten

    return flatten(dict(spec))
