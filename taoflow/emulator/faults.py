"""Fault injection: `TAOFLOW_EMULATOR_FAULT=kind[@epoch:N|@end][,kind…]` makes the emulator fail like TAO does.

Kinds that fail: `crash` (a Python exception, exit 1), `sigkill` (the process SIGKILLs itself: -9 / 137),
`oom` (torch.OutOfMemoryError, exit 1), `nccl` (NCCL error, exit 1), `preempt` (SIGTERM: exit 143, no status
line, as TAO's monitor_status does not catch it). `@epoch:N` fires at the start of 0-based epoch N of a train
run; `@end` fires after the action wrote its products and before TAO's "… finished successfully." line (an
export that dies after writing its ONNX); without either the fault fires at the start of the action (train:
epoch 0). A failing fault fires on the first attempt only: once fired it is recorded in
`<results>/.emulator_faults_fired`, so the flow's retry — which resumes in the same results folder — runs
through. This is how tests exercise "fail, retry, resume, succeed" with a single environment variable.

Conditions (not failures, never consumed): `trt_drift` makes TensorRT evaluate's KPIs drift far beyond any
sane parity tolerance against PyTorch's (an engine built wrong), for the promotion gate's tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

FIRED_FILE = ".emulator_faults_fired"
KINDS = ("crash", "sigkill", "oom", "nccl", "preempt")
CONDITIONS = ("trt_drift",)


@dataclass(frozen=True)
class Fault:
    kind: str
    epoch: int | None
    text: str
    at_end: bool = False

    @property
    def is_condition(self) -> bool:
        return self.kind in CONDITIONS


def parse_faults(value: str | None) -> list[Fault]:
    faults = []
    for item in (value or "").split(","):
        item = item.strip()
        if not item:
            continue
        kind, _, where = item.partition("@")
        if kind not in KINDS + CONDITIONS:
            raise ValueError(f"TAOFLOW_EMULATOR_FAULT: unknown fault {kind!r}; kinds: "
                             f"{', '.join(KINDS + CONDITIONS)}")
        if kind in CONDITIONS:
            if where:
                raise ValueError(f"TAOFLOW_EMULATOR_FAULT: {kind!r} is a condition and takes no '@…'")
            faults.append(Fault(kind, None, item))
            continue
        if where == "end":
            faults.append(Fault(kind, None, item, at_end=True))
            continue
        epoch = None
        if where:
            name, _, number = where.partition(":")
            if name != "epoch" or not number.isdigit():
                raise ValueError(f"TAOFLOW_EMULATOR_FAULT: {item!r} must look like {kind}@epoch:N or {kind}@end")
            epoch = int(number)
        faults.append(Fault(kind, epoch, item))
    return faults


class FaultPlan:
    """The faults still to fire for this results folder, and the conditions in force."""

    def __init__(self, results_dir: Path, env_value: str | None = None):
        self.record = results_dir / FIRED_FILE
        fired = set(self.record.read_text().split()) if self.record.exists() else set()
        value = os.environ.get("TAOFLOW_EMULATOR_FAULT") if env_value is None else env_value
        parsed = parse_faults(value)
        self.conditions = {f.kind for f in parsed if f.is_condition}
        self.pending = [f for f in parsed if not f.is_condition and f.text not in fired]

    def active(self, condition: str) -> bool:
        return condition in self.conditions

    def due(self, epoch: int | None) -> Fault | None:
        """The fault to fire now: at this epoch (train), or an epoch-less one at the start (epoch 0/None)."""
        for fault in self.pending:
            if fault.at_end:
                continue
            if fault.epoch == epoch or (fault.epoch is None and epoch in (None, 0)):
                return fault
            if fault.epoch is None and epoch is not None and epoch > 0:
                return fault  # a resumed run (starting past epoch 0) still gets its epoch-less fault
        return None

    def due_at_end(self) -> Fault | None:
        return next((f for f in self.pending if f.at_end), None)

    def mark_fired(self, fault: Fault) -> None:
        self.record.parent.mkdir(parents=True, exist_ok=True)
        with open(self.record, "a") as fh:
            fh.write(fault.text + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.pending.remove(fault)
