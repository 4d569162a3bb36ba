"""The baseline trial: a fresh sweep's first trial trains the run's own values (the model's train template
with the run's --set overrides — what `--automl off` would train), runs to the end whatever its rungs say,
and is printed beside the best. On real Optuna (SQLite studies) and the in-process
`VirtualLauncher` the benchmark drives; the emulator sweep runs the real planner's spec."""

from __future__ import annotations

import hashlib
import logging
import threading
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from taoflow.automl.controller import SweepController, SweepResult
from taoflow.automl.report import best_summary, trials_table
from taoflow.automl.space import Param, SearchSpace, build_space
from taoflow.automl.study import open_study, settings_for
from taoflow.automl.virtual import VirtualLauncher
from taoflow.dotted import expand, flatten, get_dotted
from taoflow.launchers.base import Finished
from taoflow.runs import ActionRun, canonical_json
from taoflow.skill import load_skill
from taoflow.spec import load_template

optuna.logging.set_verbosity(logging.WARNING)
MODEL = "centerpose"  # two searched keys: train.optim.lr and train.optim.lr_decay


def _kpis_worst_at(lr: float):
    """val_3DIoU rising with the epochs; a run at learning rate `lr` is the worst at every rung."""
    def kpis(run: ActionRun, epochs: int) -> dict[str, float]:
        rate = float(get_dotted(run.spec, "train.optim.lr"))
        quality = 0.05 if abs(rate - lr) < 1e-12 else 0.5 + 0.1 * (rate * 1e4 % 1)
        return {"val_3DIoU": quality * epochs / (epochs + 2)}
    return kpis


class BaselineLast(VirtualLauncher):
    """Ungated, as real TAO is (events decided as they arrive), and one trial after another: trials 1, 2, …
    in turn, then the baseline (trial 0), so it reaches every rung after the others — where plain ASHA
    prunes the worst. Events, not timing: each trial's reader waits for the previous trial's end."""

    rung_gate = None  # no gate: gate_for finds none for a launcher that is not `local`

    def __init__(self, kpis, trials: int):
        super().__init__(kpis)
        self.order = [*range(1, trials), 0]
        self.turn = threading.Condition()
        self.done = 0

    def events(self, handle):
        number = int(handle.run.env["TRIAL"])
        with self.turn:
            self.turn.wait_for(lambda: self.order[self.done] == number)
        for event in super().events(handle):
            if isinstance(event, Finished):  # the reader stops at it: pass the turn on before handing it over
                with self.turn:
                    self.done += 1
                    self.turn.notify_all()
            yield event


def _sweep(url: str, launcher: VirtualLauncher, run_sets: dict[str, Any], **options: Any) -> SweepResult:
    """A sweep whose trial specs are the model's train template, the run's own `run_sets` and the trial's
    overrides, as the planner builds them."""
    skill = load_skill(MODEL)
    space = build_space(skill)
    settings = settings_for(skill, **{"max_concurrent": 3, "max_epochs": 9, "seed": 5, **options})
    study = open_study(settings, space, storage=url, name="baseline")
    template = flatten(load_template(skill, "train"))

    def make_run(overrides: dict[str, Any], number: int) -> ActionRun:
        spec = {**template, **run_sets, **overrides}
        key = hashlib.sha256(canonical_json(spec).encode()).hexdigest()[:12]
        return ActionRun(model=MODEL, action="train", spec=expand(spec), image="virtual", run_key=key,
                         results_uri=f"memory://{key}", env={"TRIAL": str(number)})

    return SweepController(study, space, settings, skill, launcher, make_run, storage_url=url).run()


def test_the_first_trial_trains_the_runs_own_values_to_the_end_and_the_report_names_it(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    result = _sweep(url, VirtualLauncher(_kpis_worst_at(3e-4)), {"train.optim.lr": 3e-4}, max_trials=10)
    rows = {r["number"]: r for r in result.trials}
    template = flatten(load_template(load_skill(MODEL), "train"))
    assert rows[0]["baseline"] and not any(r["baseline"] for n, r in rows.items() if n)
    # The run's --set value, and the template's value of the key the run left alone.
    assert rows[0]["params"] == {"train.optim.lr": 3e-4, "train.optim.lr_decay": template["train.optim.lr_decay"]}
    assert rows[0]["state"] == "COMPLETE" and rows[0]["epochs"] == 9
    assert "PRUNED" in [r["state"] for r in rows.values()]
    assert result.best_number != 0
    summary = best_summary(MODEL, result.trials)
    assert f"baseline trial 0 (the run's own values, what --automl off trains): val_3DIoU = {rows[0]['value']:.6g}" \
        in summary
    assert "b the baseline" in str(trials_table(MODEL, result.trials).caption)
    stored = optuna.load_study(study_name="baseline", storage=url).trials[0]
    assert stored.user_attrs["baseline"] is True


def test_the_baseline_is_never_pruned_even_when_it_reaches_its_rungs_last_and_worst(tmp_path) -> None:
    launcher = BaselineLast(_kpis_worst_at(3e-4), trials=3)
    result = _sweep(f"sqlite:///{tmp_path / 'l.db'}", launcher, {"train.optim.lr": 3e-4}, max_trials=3)
    rows = {r["number"]: r for r in result.trials}
    assert rows[0]["baseline"] and rows[0]["state"] == "COMPLETE" and rows[0]["epochs"] == 9
    assert rows[0]["kpi_per_rung"].keys() == {"1", "2", "4", "8", "9"}
    assert rows[0]["value"] < min(r["value"] for n, r in rows.items() if n and r["value"] is not None)
    # ASHA did decide at these rungs (the worse of the other two was pruned at rung 1: its cancel lands after
    # its instant run ended, as on real TAO when a run ends before the prune), but never against the baseline.
    assert [r["pruned_at_epoch"] for n, r in sorted(rows.items())] == [None, None, 1]


def test_a_study_resumed_with_a_bigger_budget_gets_no_second_baseline(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    first = _sweep(url, VirtualLauncher(_kpis_worst_at(-1.0)), {}, max_trials=4)
    again = _sweep(url, VirtualLauncher(_kpis_worst_at(-1.0)), {}, max_trials=8)
    assert len(again.trials) == 8
    assert [r["number"] for r in again.trials if r["baseline"]] == [0]
    assert again.trials[0]["params"] == first.trials[0]["params"]


def test_no_baseline_when_switched_off_or_on_a_grid(tmp_path) -> None:
    template = flatten(load_template(load_skill(MODEL), "train"))
    defaults = {k: template[k] for k in ("train.optim.lr", "train.optim.lr_decay")}
    off = _sweep(f"sqlite:///{tmp_path / 'o.db'}", VirtualLauncher(_kpis_worst_at(-1.0)), {}, max_trials=6,
                 baseline=False)
    assert not any(r["baseline"] for r in off.trials)
    assert defaults not in [r["params"] for r in off.trials]
    grid = _sweep(f"sqlite:///{tmp_path / 'g.db'}", VirtualLauncher(_kpis_worst_at(-1.0)), {}, max_trials=4,
                  sampler="grid", pruner="none")
    assert not any(r["baseline"] for r in grid.trials)


def test_values_a_trial_cannot_take_are_left_to_the_sampler() -> None:
    space = SearchSpace(model=MODEL, params={
        "a": Param("a", FloatDistribution(1e-5, 1e-3, log=True), "user"),
        "b": Param("b", IntDistribution(1, 9, step=2), "user"),
        "c": Param("c", CategoricalDistribution(["adamw", "sgd"]), "user"),
        "d": Param("d", FloatDistribution(0.0, 1.0), "user"),
    })
    spec = {"a": 1e-2, "b": 3, "c": "sgd", "d": True}  # a out of range, d a boolean
    assert space.baseline(spec.get) == {"b": 3, "c": "sgd"}
    assert space.baseline({"a": 1e-4, "b": 4, "c": "adam", "d": 0.5}.get) == {"a": 1e-4, "d": 0.5}  # 4: off-step
    assert space.baseline({"b": 5.0}.get) == {"b": 5}  # a whole float is an int's value
    assert space.baseline({}.get) == {}


def test_through_the_planner_the_baseline_is_the_spec_a_direct_train_gets(tmp_path) -> None:
    """run_sweep (what `taoflow tune` and the pipeline's train step run) with a run-level --set: trial 0
    trains the planner's own spec values for the searched keys, the --set one included."""
    from taoflow.automl.sweep import SweepOptions, run_sweep
    from taoflow.automl.virtual import emulator_kpis
    from taoflow.datasets import write_sample_data
    from taoflow.planner import PipelineRequest, PlannedStep, RunContext, prepare_run
    from taoflow.store import ArtifactStore

    skill = load_skill(MODEL)
    write_sample_data(MODEL, tmp_path / "data")
    data = {p.name: str(p) for p in sorted((tmp_path / "data").iterdir())}
    request = PipelineRequest(model=MODEL, data=data, overrides={"train": {"train.optim.lr": 2e-4}},
                              store=str(tmp_path / "store"), emulate=True)
    store = ArtifactStore(request.store)
    direct = prepare_run(RunContext(skill, request, store, {}), PlannedStep("train"))
    result = run_sweep(skill, request, store, VirtualLauncher(emulator_kpis),
                       SweepOptions(max_trials=5, max_concurrent=2, max_epochs=4, seed=1))
    first = result.trials[0]
    assert first["baseline"]
    assert first["params"] == {k: get_dotted(direct.spec, k) for k in build_space(skill).params}
    assert first["params"]["train.optim.lr"] == 2e-4
