"""What every emulated action shares: the run's context, log lines, SIGTERM, and injected faults."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from taoflow.emulator.faults import Fault, FaultPlan
from taoflow.emulator.models import EmulatedFailure, ModelEmulator
from taoflow.emulator.spec import Spec
from taoflow.status import StatusWriter


class Preempted(BaseException):
    """SIGTERM arrived: stop now (BaseException so `except Exception` in action code does not swallow it)."""


def install_sigterm() -> None:
    def handler(signum: int, frame: Any) -> None:
        raise Preempted()

    signal.signal(signal.SIGTERM, handler)


def log(message: str) -> None:
    print(message, flush=True)


def is_set(value: Any) -> bool:
    """A spec value TAO would act on (not null, empty or OmegaConf's `???`)."""
    return value not in (None, "", "???")


class ActionContext:
    """One emulated action: `action` is TAO's action name, `image` the container role it emulates (pyt,
    deploy, data-services) and `results_dir` the folder TAO writes into (after `update_results_dir`)."""

    def __init__(self, model: ModelEmulator, spec: Spec, action: str, image: str, results_dir: Path,
                 status: StatusWriter, faults: FaultPlan):
        self.model = model
        self.spec = spec
        self.action = action
        self.image = image
        self.results_dir = results_dir
        self.status = status
        self.faults = faults

    def fire_due_fault(self, epoch: int | None) -> None:
        fault = self.faults.due(epoch)
        if fault is not None:
            self.faults.mark_fired(fault)
            fire(fault, epoch)

    def fire_end_fault(self) -> None:
        """A fault asked for `@end`: after the action wrote its products, before TAO reports success."""
        fault = self.faults.due_at_end()
        if fault is not None:
            self.faults.mark_fired(fault)
            fire(fault, None)


def fire(fault: Fault, epoch: int | None) -> None:
    where = f" at epoch {epoch}" if epoch is not None else (" after the action's products" if fault.at_end else "")
    log(f"[EMULATED] injecting fault '{fault.text}'{where} (TAOFLOW_EMULATOR_FAULT)")
    if fault.kind == "sigkill":
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    if fault.kind == "preempt":
        raise Preempted()
    if fault.kind == "oom":
        raise EmulatedFailure(
            [], frames=[('  File "/usr/local/lib/python3.12/dist-packages/torch/nn/modules/module.py", line 1762, in '
                         '_call_impl')],
            exc=_named_error("torch.OutOfMemoryError",
                             "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.15 "
                             "GiB of which 1.06 GiB is free. Including non-PyTorch memory, this process has 78.08 "
                             "GiB memory in use."))
    if fault.kind == "nccl":
        raise EmulatedFailure(
            ["[rank0]:[E ProcessGroupNCCL.cpp:616] [Rank 0] Watchdog caught collective operation timeout"],
            exc=_named_error("torch.distributed.DistBackendError",
                             "NCCL error in: ../torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:1970, unhandled "
                             "system error (run with NCCL_DEBUG=INFO for details), NCCL version 2.21.5\n"
                             "ncclSystemError: System call (e.g. socket, malloc) or external library call failed "
                             "or device error."))
    raise RuntimeError(f"EMULATED crash{where} (fault injected by TAOFLOW_EMULATOR_FAULT={fault.text})")


def _named_error(qualified: str, message: str) -> Exception:
    """An exception whose traceback line reads `<qualified>: message` like torch's own classes."""
    module, _, name = qualified.rpartition(".")
    cls = type(name, (RuntimeError,), {"__module__": module})
    return cls(message)
