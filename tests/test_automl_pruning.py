"""RungPruner (in-memory ASHA / Hyperband) against Optuna's own SuccessiveHalvingPruner and HyperbandPruner:
the same decisions for the same reports, at a constant cost per decision."""

from __future__ import annotations

import logging
import random

import optuna
import pytest

from taoflow.automl.pruning import RungPruner

optuna.logging.set_verbosity(logging.WARNING)
RUNGS = [3, 9, 27]


def _reports(seed: int, trials: int) -> list[tuple[int, list[float]]]:
    """(trial number, its values at 3, 9, 27 epochs) — noisy curves that mostly keep their order."""
    rng = random.Random(seed)
    out = []
    for number in range(trials):
        quality = rng.random()
        out.append((number, [quality * (1 - 2.0 ** -(e / 4)) + rng.gauss(0, 0.05) for e in RUNGS]))
    return out


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
@pytest.mark.parametrize("reduction_factor", [2, 3])
def test_asha_decides_as_optunas_successive_halving(direction: str, reduction_factor: int) -> None:
    """Trials report one after the other, each up to the rung where Optuna's pruner stops it."""
    ours = RungPruner("asha", RUNGS, reduction_factor=reduction_factor, maximize=direction == "maximize",
                      rung_check=False)
    study = optuna.create_study(direction=direction, pruner=optuna.pruners.SuccessiveHalvingPruner(
        min_resource=3, reduction_factor=reduction_factor))
    pruned = 0
    for number, values in _reports(7, 60):
        trial = study.ask()
        for epochs, value in zip(RUNGS[:-1], values[:-1], strict=True):
            trial.report(value, epochs)
            theirs = trial.should_prune()
            assert ours.should_prune(number, epochs, value) == theirs, (number, epochs)
            if theirs:
                pruned += 1
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, values[-1])
    assert 10 < pruned < 60


def test_hyperband_deals_brackets_with_optunas_weights_and_decides_like_it() -> None:
    """Three brackets for rungs 3/9/27 (9, 5 and 3 of every 17 trials); the last never prunes; within a
    bracket the decisions are Optuna's successive halving with that bracket's early-stopping rate."""
    ours = RungPruner("hyperband", RUNGS, reduction_factor=3, maximize=True, seed=1, rung_check=False)
    optunas = optuna.pruners.HyperbandPruner(min_resource=3, max_resource=27, reduction_factor=3)
    optunas._try_initialization(optuna.create_study())
    assert ours.weights == optunas._trial_allocation_budgets == [9, 5, 3]
    brackets = [ours.bracket(n) for n in range(1700)]
    for bracket, weight in enumerate(ours.weights):
        assert abs(brackets.count(bracket) / 1700 - weight / 17) < 0.03
    assert [ours.decision_rungs(n) for n in (brackets.index(0), brackets.index(1), brackets.index(2))] == \
        [[3, 9], [9], []]

    studies = {b: optuna.create_study(direction="maximize", pruner=optuna.pruners.SuccessiveHalvingPruner(
        min_resource=3, reduction_factor=3, min_early_stopping_rate=b)) for b in range(3)}
    for number, values in _reports(3, 80):
        bracket = ours.bracket(number)
        trial = studies[bracket].ask()
        for epochs, value in zip(RUNGS[:-1], values[:-1], strict=True):
            trial.report(value, epochs)
            theirs = trial.should_prune()
            assert ours.should_prune(number, epochs, value) == theirs
            if theirs:
                studies[bracket].tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            studies[bracket].tell(trial, values[-1])


def test_brackets_depend_on_the_seed_not_on_the_study() -> None:
    a = RungPruner("hyperband", RUNGS, reduction_factor=3, maximize=True, seed=5)
    b = RungPruner("hyperband", RUNGS, reduction_factor=3, maximize=True, seed=5)
    c = RungPruner("hyperband", RUNGS, reduction_factor=3, maximize=True, seed=6)
    assert [a.bracket(n) for n in range(50)] == [b.bracket(n) for n in range(50)]
    assert [a.bracket(n) for n in range(50)] != [c.bracket(n) for n in range(50)]


def test_none_never_prunes_and_nan_always_does() -> None:
    none = RungPruner("none", RUNGS, reduction_factor=3, maximize=True)
    assert none.decision_rungs(0) == [] and not none.should_prune(0, 3, -1.0)
    asha = RungPruner("asha", RUNGS, reduction_factor=3, maximize=True)
    assert asha.should_prune(0, 3, float("nan"))
    assert not asha.should_prune(1, 27, 0.0)  # the last rung decides nothing: the trial is done
