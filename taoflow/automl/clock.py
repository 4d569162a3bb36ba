"""The virtual clock: gated trials' decisions in a fixed order, so the same seed gives the same sweep.

Counted in epochs: a trial started at clock `c` reaches its `k`-th epoch at `c + k`. Decisions — a trial
at one of its decision rungs, a trial's end — are taken in (clock, trial number) order, each once no other
gated trial can still report something earlier (every other one has reported up to that clock). A trial
pruned or ended at clock `t` frees its GPU at `t`, and the next trial starts there. Optuna then sees the
same reports in the same order whatever the machine's speed: the same seed gives the same trials, prunes
and GPU-epochs on the emulator and in benchmarks/automl.py. Events that decide nothing (an epoch between
rungs) are handled as they come.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any, Protocol

from taoflow.launchers.base import EpochProgress, Finished


class Lane(Protocol):
    """What the clock reads of a running trial (the controller's `_Active`)."""

    start: int  # the clock at its start
    step: int  # epochs reported so far
    decisions: list[int]  # epoch counts where it may be pruned
    pending: deque[Any]  # its decision events waiting for their turn
    ordered: bool  # gated: it takes part in the order
    told: bool  # decided for good (pruned at a rung): out of the order


class VirtualClock:
    def __init__(self, max_epochs: int):
        self.max_epochs = max_epochs
        self.now = 0

    def decides(self, lane: Lane, event: Any) -> bool:
        """Whether `event` must wait for its turn (a gated trial's rung or end)."""
        if not lane.ordered or lane.told:
            return False
        return isinstance(event, Finished) or (isinstance(event, EpochProgress)
                                               and event.epoch + 1 in lane.decisions)

    def key(self, lane: Lane, event: Any) -> int:
        if isinstance(event, EpochProgress):
            return lane.start + event.epoch + 1
        if event.status == "SUCCESS" or lane.step >= self.max_epochs:
            return lane.start + lane.step
        return lane.start + lane.step + 1  # it failed during its next epoch

    def next(self, lanes: Mapping[int, Lane]) -> tuple[int, Any] | None:
        """(trial number, event) of the decision whose turn it is, or None while some gated trial may still
        report something earlier."""
        gated = [(n, lane) for n, lane in lanes.items() if lane.ordered and not lane.told]
        waiting = [(self.key(lane, lane.pending[0]), n) for n, lane in gated if lane.pending]
        if not waiting:
            return None
        first = min(waiting)
        for number, lane in gated:
            if lane.pending or number == first[1]:
                continue
            lower_bound = lane.start + min(lane.step + 1, self.max_epochs)
            if (lower_bound, number) < first:
                return None  # that trial may still report something earlier
        self.now = max(self.now, first[0])
        return first[1], lanes[first[1]].pending.popleft()
