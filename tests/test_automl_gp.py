"""The multi-fidelity GP sampler (taoflow/automl/gp.py): it learns from rung values of pruned trials, and its
model stays bounded however big the study grows. Optuna's own study and trial objects, in memory."""

from __future__ import annotations

import optuna
from optuna.trial import TrialState

from taoflow.automl.gp import MAX_MODEL_TRIALS, GPSampler, _model_trials
from taoflow.automl.space import build_space
from taoflow.emulator.surfaces import tao as surfaces


def _value(params: dict, epochs: int) -> float:
    return surfaces.kpis("centerpose", params, epochs - 1, 0, 0)["val_3DIoU"]


def test_it_learns_from_pruned_trials_rung_values_alone():
    """Every trial is pruned at 3 epochs (no trial ever completes): the sampler still models the rung values
    and, once past its random start, proposes trials that beat the random ones there."""
    space = build_space("centerpose")
    study = optuna.create_study(direction="maximize", sampler=GPSampler(seed=0, n_startup_trials=6, max_epochs=27))
    for _ in range(20):
        trial = study.ask(space.distributions())
        trial.report(_value(trial.params, 3), 3)
        study.tell(trial, state=TrialState.PRUNED)
    rung = [t.intermediate_values[3] for t in study.trials]
    assert max(rung[6:]) > max(rung[:6])
    assert sorted(rung[6:])[len(rung[6:]) // 2] > sorted(rung[:6])[3]  # the median too, not one lucky draw


def test_the_same_seed_gives_the_same_trials():
    space = build_space("centerpose")

    def run(seed: int) -> list[dict]:
        study = optuna.create_study(direction="maximize", sampler=GPSampler(seed=seed, n_startup_trials=4))
        for _ in range(10):
            trial = study.ask(space.distributions())
            study.tell(trial, _value(trial.params, 27))
        return [t.params for t in study.trials]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_a_big_study_is_modelled_by_its_latest_and_best_trials():
    study = optuna.create_study(direction="maximize")
    dist = optuna.distributions.FloatDistribution(0.0, 1.0)
    for number in range(300):
        value = (number * 7919 % 300) / 300.0
        study.add_trial(optuna.trial.create_trial(params={"x": value}, distributions={"x": dist}, value=value))
    trials = study.get_trials(deepcopy=False)
    kept = _model_trials(trials, sign=-1.0, max_epochs=27)
    assert len(kept) == MAX_MODEL_TRIALS
    numbers = {t.number for t in kept}
    assert set(range(300 - MAX_MODEL_TRIALS // 2, 300)) <= numbers  # the latest
    older = [t for t in trials if t.number < 300 - MAX_MODEL_TRIALS // 2]
    best = sorted(older, key=lambda t: -t.value)[: MAX_MODEL_TRIALS // 2]
    assert {t.number for t in best} <= numbers  # and the best of the rest


def test_auto_picks_the_gp_for_a_small_space_and_tpe_for_a_big_one():
    from taoflow.automl.study import GP_MAX_PARAMETERS, make_sampler, sampler_for, settings_for
    from taoflow.skill import load_skill

    small, big = build_space("centerpose"), build_space("rtdetr")
    assert len(small.distributions()) <= GP_MAX_PARAMETERS < len(big.distributions())
    auto = settings_for(load_skill("centerpose"))
    assert auto.sampler == "auto"
    assert sampler_for(auto, small) == "gp" and isinstance(make_sampler(auto, small), GPSampler)
    assert sampler_for(auto, big) == "tpe" and isinstance(make_sampler(auto, big), optuna.samplers.TPESampler)
    chosen = settings_for(load_skill("centerpose"), sampler="tpe")
    assert sampler_for(chosen, small) == "tpe"
