"""Rung gates: how the controller holds a trial at a rung until it has decided on it.

A gated trial stops exactly at the rung where it is pruned, and its decisions can be taken in virtual-clock
order (clock.py). The emulator gates through files (taoflow/emulator/rungs.py); a launcher may offer its
own gates with a `rung_gate(run)` method (the benchmark's VirtualLauncher does, in-process). Real TAO is
never gated: an epoch lasts minutes, and cancelling the job on the rung's status line is soon enough.
"""

from __future__ import annotations

from typing import Any, Protocol

from taoflow.runs import ActionRun


class Gate(Protocol):
    """One trial's rung gate: the trial waits at its decision rungs until `ack`, `cancel` or `release`."""

    def environment(self, rungs: list[int]) -> dict[str, str]: ...
    def reset(self) -> None: ...
    def ack(self, epochs: int) -> None: ...
    def release(self) -> None: ...
    def cancel(self) -> None: ...


def gate_for(launcher: Any, run: ActionRun) -> Gate | None:
    """The launcher's own gate, else a file gate when `launcher` runs `run` through the emulator with a local
    results folder (LocalLauncher: `emulate`, or TAO's entry point not installed); else None."""
    own = getattr(launcher, "rung_gate", None)
    if callable(own):
        return own(run)
    from taoflow.emulator.rungs import FileGate
    from taoflow.launchers.local import is_remote, local_of, tao_installed
    from taoflow.skill import load_skill

    if getattr(launcher, "name", None) != "local" or is_remote(run.results_uri) or run.emulate is False:
        return None
    if run.emulate is None and tao_installed(load_skill(run.model).action(run.action).argv):
        return None
    return FileGate(local_of(run.results_uri))
