"""Pruning decisions from rung tables kept in memory: ASHA (asynchronous successive halving) and Hyperband,
with a check that a rung still ranks trials as their ends do.

Optuna's SuccessiveHalvingPruner and HyperbandPruner re-read every trial of the study at each decision
(Hyperband also rebuilds a bracket-filtered study per call), so a decision costs O(trials) and a sweep
O(trials²). Here every rung keeps its values sorted: a decision is one insertion and one look-up, whatever
the size of the study. The rules are Optuna's (tests/test_automl_pruning.py replays Optuna's own pruners):

- rungs at `min_resource × reduction_factor^k` epochs (3, 6, 12, 24 and the end for 27 epochs, a grace
  period of 3 and a factor of 2);
- at a rung a trial goes on when its value is among the best `n // reduction_factor` of the `n` values its
  bracket has seen at that rung (itself included), and at least the best one when `n < reduction_factor`;
  otherwise it is pruned;
- Hyperband runs one successive-halving bracket per grace period: bracket `b` decides from the `b`-th rung
  on, so the last bracket never prunes; trials are dealt to brackets with Optuna's weights
  (`ceil(B × η^s / (s + 1))` for `s = B - 1 - b`: 9, 5 and 3 of every 17 trials for three brackets), by a
  hash of the sweep's seed and the trial number — not of the study name, so the benchmark and a
  `taoflow tune` with the same seed deal the same brackets.

The rung check (on by default, `rung_check`): successive halving assumes a trial's rank at a rung is its
rank at the end. Learning curves that cross break that — slow starters, plateaus broken by a late
learning-rate step, losses that fall faster at higher rates and end higher (taoflow/emulator/surfaces/
curves.py) — and then pruning at that rung throws away the best trials. So a rung only prunes while it
agrees with the ends: once `MIN_EVIDENCE` trials have completed, the Spearman rank correlation between
their values at the rung and their final values (the latest `WINDOW` completed trials, a constant cost)
must be at least `THRESHOLD`, else trials go on past that rung. Before that evidence exists the rung
prunes as plain ASHA. Weighting each fidelity by how well it ranks full-length results is the idea of
MFES-HB (Li et al., AAAI 2021, arXiv:2012.03011); here it gates the pruning itself.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections import deque

MIN_EVIDENCE = 4  # completed trials before the rung check judges a rung
THRESHOLD = 0.3  # Spearman correlation a rung needs with the ends to keep pruning
WINDOW = 32  # the latest completed trials the check looks at


class RungPruner:
    """Decides, at a rung, whether a trial goes on; `kind` is `asha`, `hyperband` or `none`."""

    def __init__(self, kind: str, rungs: list[int], *, reduction_factor: int, maximize: bool, seed: int = 0,
                 rung_check: bool = True):
        self.kind = kind
        self.rung_check = rung_check
        self.rungs = list(rungs)  # ends at max_epochs, which decides nothing (the trial is done)
        self.reduction_factor = reduction_factor
        self.maximize = maximize
        self.seed = seed
        brackets = len(self.rungs) if kind == "hyperband" else 1
        self.weights = [math.ceil(brackets * reduction_factor ** (brackets - 1 - b) / (brackets - b))
                        for b in range(brackets)]
        self._tables: dict[tuple[int, int], list[float]] = {}
        self._finished: deque[tuple[dict[int, float], float]] = deque(maxlen=WINDOW)

    # ------------------------------------------------------------------ which trial decides where
    def bracket(self, number: int) -> int:
        """The trial's Hyperband bracket (0 for ASHA): a weighted draw from a hash of (seed, number)."""
        if len(self.weights) == 1:
            return 0
        digest = hashlib.sha256(f"{self.seed}:{number}".encode()).digest()
        ticket = int.from_bytes(digest[:8], "big") % sum(self.weights)
        for bracket, weight in enumerate(self.weights):
            ticket -= weight
            if ticket < 0:
                return bracket
        return len(self.weights) - 1

    def decision_rungs(self, number: int) -> list[int]:
        """Epoch counts at which this trial may be pruned (none for `none` and Hyperband's last bracket)."""
        if self.kind == "none":
            return []
        return self.rungs[self.bracket(number):-1]

    # ------------------------------------------------------------------ decisions
    def observe(self, number: int, epochs: int, value: float) -> None:
        """Record a value reported at a rung without deciding (a study's history, replayed at start)."""
        if epochs in self.decision_rungs(number):
            self._insert(number, epochs, value)

    def completed(self, rungs: dict[int, float], final: float) -> None:
        """A trial ran to the end: its rung values and final value are evidence for the rung check."""
        if not math.isnan(final):
            self._finished.append(({e: v for e, v in rungs.items() if not math.isnan(v)}, final))

    def agrees(self, epochs: int) -> bool:
        """Whether the rung at `epochs` ranks the completed trials as their ends do (or there is too
        little evidence to say it does not)."""
        pairs = [(values[epochs], final) for values, final in self._finished if epochs in values]
        if len(pairs) < MIN_EVIDENCE:
            return True
        return _spearman([a for a, _ in pairs], [b for _, b in pairs]) >= THRESHOLD

    def should_prune(self, number: int, epochs: int, value: float) -> bool:
        """Record the trial's value at `epochs` and say whether it stops there."""
        if epochs not in self.decision_rungs(number):
            return False
        if math.isnan(value):
            return True
        table = self._insert(number, epochs, value)
        if self.rung_check and not self.agrees(epochs):
            return False
        keep = max(len(table) // self.reduction_factor, 1)
        # Values are stored negated when maximising, so "better" is always "smaller".
        key = -value if self.maximize else value
        better = bisect.bisect_left(table, key)  # values strictly better than this one
        return better >= keep

    def _insert(self, number: int, epochs: int, value: float) -> list[float]:
        table = self._tables.setdefault((self.bracket(number), epochs), [])
        if not math.isnan(value):
            bisect.insort(table, -value if self.maximize else value)
        return table


def _ranks(values: list[float]) -> list[float]:
    """Ranks from 0, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2.0
        i = j + 1
    return ranks


def _spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation (0 when either side is constant). The same sign whatever the direction:
    a value and its final value are compared on the same scale."""
    ra, rb = _ranks(a), _ranks(b)
    n = len(a)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    return cov / math.sqrt(va * vb) if va > 0 and vb > 0 else 0.0
