"""The rung gate: an emulated trial waits at a rung epoch until the AutoML controller has decided on it.

Why: a pruned trial must stop at the rung where it was pruned. A real TAO epoch lasts minutes, so the
controller reads the rung's status.json line and cancels the job long before the next epoch ends. An
emulated epoch can last milliseconds, and the emulator would run on (or finish) before the decision lands;
the same seed would then give different prunes and GPU-epochs from one run to the next. So, for the
emulator only, the controller asks the trial to wait at each epoch where a decision can be taken:

- the controller sets two environment variables on the trial's run (never the spec: TAO is asked to do
  exactly the same thing): `TAOFLOW_EMULATOR_RUNGS` (epoch counts, e.g. `3,9`) and
  `TAOFLOW_EMULATOR_RUNG_ACK` (a file in the trial's results folder);
- after writing the status.json line of such an epoch (and its checkpoint), the emulator waits until the
  ack file holds that epoch count or more;
- the controller writes the count to the ack file once it has decided that the trial goes on, or cancels
  the job (SIGTERM ends the wait) when it prunes it.

A controller that dies leaves its trials waiting; the next one adopts them and releases their gates
(`release`). If none comes, the wait ends after `TAOFLOW_EMULATOR_RUNG_TIMEOUT` seconds (default 600)
and training goes on. Real TAO ignores both variables.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

RUNGS_ENV = "TAOFLOW_EMULATOR_RUNGS"
ACK_ENV = "TAOFLOW_EMULATOR_RUNG_ACK"
TIMEOUT_ENV = "TAOFLOW_EMULATOR_RUNG_TIMEOUT"
ACK_FILE = ".taoflow_rung_ack"
RELEASED = 1_000_000  # an ack beyond any epoch: the trial never waits again
POLL_SECONDS = 0.01


# ------------------------------------------------------------------------------------------ emulator side

def wait_at_rung(epochs_done: int, log=print) -> None:
    """Called by the emulator after an epoch's status line: at a gated rung, wait for the controller."""
    rungs, ack = os.environ.get(RUNGS_ENV), os.environ.get(ACK_ENV)
    if not rungs or not ack or epochs_done not in _epochs(rungs):
        return
    path = Path(ack)
    deadline = time.monotonic() + float(os.environ.get(TIMEOUT_ENV) or 600)
    while _read(path) < epochs_done:
        if time.monotonic() > deadline:
            log(f"[EMULATED] no AutoML decision at epoch count {epochs_done} within {TIMEOUT_ENV}; going on")
            return
        time.sleep(POLL_SECONDS)


def _epochs(text: str) -> set[int]:
    out = set()
    for part in text.split(","):
        try:
            out.add(int(part))
        except ValueError:
            continue
    return out


# ------------------------------------------------------------------------------------------ controller side

class FileGate:
    """The controller's end of one trial's gate (a local results folder)."""

    def __init__(self, results_dir: str | Path):
        self.path = Path(results_dir) / ACK_FILE

    def environment(self, rungs: list[int]) -> dict[str, str]:
        return {RUNGS_ENV: ",".join(str(r) for r in rungs), ACK_ENV: str(self.path)}

    def reset(self) -> None:
        """Before a fresh launch: an ack left by an earlier attempt must not let the new process run past."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _write(self.path, 0)

    def ack(self, epochs: int) -> None:
        """The trial goes on past `epochs`."""
        _write(self.path, epochs)

    def release(self) -> None:
        """The trial never waits again (a job adopted from a controller that died)."""
        _write(self.path, RELEASED)

    def cancel(self) -> None:
        """Nothing to do: cancelling the job (SIGTERM) ends the emulator's wait."""


def _write(path: Path, value: int) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(str(value))
    os.replace(tmp, path)


def _read(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (OSError, ValueError):
        return 0
