"""The sweep controller: runs Optuna trials as TAO train jobs through any Launcher, in parallel up to a GPU
budget, pruning at rung epochs by cancelling the trial's job.

One thread (the caller's) talks to Optuna; one reader thread per running trial forwards the launcher's
events into a queue. Per trial the study keeps (user attrs): `run_key`, `results_uri`, `overrides`,
`kpi_per_rung` ({epochs: value}), `gpu_epochs`, `submitted_at`/`finished_at` (epoch seconds), `state`
details (`failure_class`, `message`) and a compact `result` (the ActionResult without its manifest).

Durability (a controller killed mid-sweep, then run again with the same study):
- COMPLETE, PRUNED and FAIL trials are kept as they are and count towards `max_trials`;
- RUNNING trials are *adopted*, not re-sampled: the same Optuna trial continues (same number, params and
  intermediate values), `make_run` rebuilds its run — the same run key, so the launcher attaches to the
  job if it is still running (deterministic job names) — and when the job is gone the run restarts from
  the newest checkpoint in its results folder (`planner.refresh_resume`), i.e. resumed, not retrained.
  This keeps one trial per parameter set and never spends a trial of the budget twice;
- the remaining budget is then filled with new trials.
Failed trials (the job failed, or never reported the metric) are FAIL and can never be the best.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from taoflow.automl.space import SearchSpace
from taoflow.automl.study import SweepSettings, rung_epochs, trial_overrides
from taoflow.kpis import metric_in
from taoflow.launchers.base import EpochProgress, Finished, Launcher
from taoflow.runs import ActionResult, ActionRun
from taoflow.skill import Skill

MakeRun = Callable[[dict[str, Any], int], ActionRun]
"""`make_run(overrides, trial_number) -> ActionRun`: the caller builds the train spec (template, data,
handoffs) with `overrides` — the trial's values plus `train.num_epochs`, checkpoint/validation intervals
and the skill's AutoML overrides — and owns the run key and results URI. It must be deterministic: an
adopted trial is rebuilt with the same arguments and must map to the same run key."""


@dataclass
class _Active:
    trial: optuna.Trial
    run: ActionRun
    handle: Any
    rungs: dict[int, float] = field(default_factory=dict)
    last_value: float | None = None
    gpu_epochs: int = 0
    pruning: bool = False


@dataclass
class SweepResult:
    study_name: str
    storage: str | None
    metric: str
    direction: str
    best_number: int | None
    best_params: dict[str, Any]
    best_value: float | None
    best_results_uri: str | None
    best_result: ActionResult | None
    trials: list[dict[str, Any]]

    @property
    def gpu_epochs(self) -> int:
        return sum(int(row.get("gpu_epochs") or 0) for row in self.trials)


class SweepController:
    def __init__(
        self,
        study: optuna.Study,
        space: SearchSpace,
        settings: SweepSettings,
        skill: Skill,
        launcher: Launcher,
        make_run: MakeRun,
        *,
        store: Any = None,
        storage_url: str | None = None,
        on_update: Callable[[list[dict[str, Any]]], None] | None = None,
    ):
        self.study = study
        self.space = space
        self.settings = settings
        self.skill = skill
        self.launcher = launcher
        self.make_run = make_run
        self.store = store
        self.storage_url = storage_url
        self.on_update = on_update
        self.rungs = set(rung_epochs(settings))
        self._events: queue.Queue[tuple[int, Any]] = queue.Queue()
        self._active: dict[int, _Active] = {}
        self._results: dict[int, ActionResult] = {}

    # ------------------------------------------------------------------ budget
    def _budget(self) -> int:
        if self.settings.sampler == "grid":
            size = 1
            for values in self.space.grid(self.settings.grid_points).values():
                size *= len(values)
            return min(self.settings.max_trials, size)
        return self.settings.max_trials

    def _started(self) -> int:
        return len(self.study.get_trials(deepcopy=False))

    # ------------------------------------------------------------------ main loop
    def run(self) -> SweepResult:
        self._adopt_running()
        while True:
            while len(self._active) < self.settings.max_concurrent and self._started() < self._budget():
                self._start_new()
            if not self._active:
                break
            number, event = self._events.get()
            self._handle(number, event)
        return self.result()

    def _start_new(self) -> None:
        trial = self.study.ask(dict(sorted(self.space.distributions().items())))
        overrides = trial_overrides(self.skill, self.space, trial.params, self.settings)
        trial.set_user_attr("overrides", overrides)
        try:
            run = self.make_run(overrides, trial.number)
        except Exception as exc:  # a spec the builder rejects fails the trial, not the sweep
            trial.set_user_attr("message", f"could not build the trial's run: {exc}")
            self.study.tell(trial, state=TrialState.FAIL)
            return
        self._submit(trial, run)

    def _adopt_running(self) -> None:
        """Continue the RUNNING trials a dead controller left behind (see the module docstring)."""
        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            trial = optuna.Trial(self.study, frozen._trial_id)
            overrides = frozen.user_attrs.get("overrides") or trial_overrides(
                self.skill, self.space, frozen.params, self.settings)
            try:
                run = self.make_run(dict(overrides), frozen.number)
            except Exception as exc:  # same: this trial fails, the sweep goes on
                trial.set_user_attr("message", f"could not rebuild the trial's run: {exc}")
                self.study.tell(trial, state=TrialState.FAIL)
                continue
            if self.store is not None:
                from taoflow.planner import refresh_resume

                run = refresh_resume(self.skill, self.store, run)
            rungs = {int(k): float(v) for k, v in (frozen.user_attrs.get("kpi_per_rung") or {}).items()}
            trial.set_user_attr("adopted", int(frozen.user_attrs.get("adopted", 0)) + 1)
            self._submit(trial, run, rungs=rungs, gpu_epochs=int(frozen.user_attrs.get("gpu_epochs", 0)),
                         last=frozen.intermediate_values[max(frozen.intermediate_values)]
                         if frozen.intermediate_values else None)

    def _submit(self, trial: optuna.Trial, run: ActionRun, *, rungs: dict[int, float] | None = None,
                gpu_epochs: int = 0, last: float | None = None) -> None:
        trial.set_user_attr("run_key", run.run_key)
        trial.set_user_attr("results_uri", run.results_uri)
        trial.set_user_attr("submitted_at", time.time())
        try:
            handle = self.launcher.submit(run)
        except Exception as exc:  # an unlaunchable trial fails, the sweep goes on
            trial.set_user_attr("message", f"launch failed: {exc}")
            trial.set_user_attr("finished_at", time.time())
            self.study.tell(trial, state=TrialState.FAIL)
            return
        active = _Active(trial, run, handle, rungs=dict(rungs or {}), gpu_epochs=gpu_epochs, last_value=last)
        self._active[trial.number] = active
        threading.Thread(target=self._read, args=(trial.number, handle), daemon=True).start()
        self._notify()

    def _read(self, number: int, handle: Any) -> None:
        try:
            for event in self.launcher.events(handle):
                if isinstance(event, (EpochProgress, Finished)):
                    self._events.put((number, event))
                if isinstance(event, Finished):
                    return
        except Exception as exc:  # the main loop must always hear that the trial ended
            self._events.put((number, Finished("FAILURE", f"lost the trial's events: {exc}", "infra")))
            return
        self._events.put((number, Finished("FAILURE", "the launcher's events ended without a final state",
                                           "infra")))

    # ------------------------------------------------------------------ events
    def _metric_of(self, kpis: Mapping[str, float]) -> float | None:
        return metric_in(dict(kpis), self.settings.metric)  # TAO's names per action (taoflow/kpis.py)

    def _handle(self, number: int, event: Any) -> None:
        active = self._active.get(number)
        if active is None:
            return
        if isinstance(event, EpochProgress):
            self._progress(active, event)
        elif isinstance(event, Finished):
            self._finish(active, event)

    def _progress(self, active: _Active, event: EpochProgress) -> None:
        trial, step = active.trial, event.epoch + 1
        active.gpu_epochs += max(active.run.gpus, 1) * max(active.run.nodes, 1)
        if step in self.rungs:  # stored at rungs and at the end: one SQLite write per epoch is enough
            trial.set_user_attr("gpu_epochs", active.gpu_epochs)
        value = self._metric_of(event.kpi)
        value = value if value is not None else self._metric_of(event.graphical)
        if value is None or active.pruning:
            return
        active.last_value = value
        trial.report(value, step)
        if step in self.rungs:
            active.rungs[step] = value
            trial.set_user_attr("kpi_per_rung", {str(k): v for k, v in sorted(active.rungs.items())})
        if self.settings.pruner != "none" and step < self.settings.max_epochs and trial.should_prune():
            active.pruning = True
            trial.set_user_attr("pruned_at_epoch", step)
            self.launcher.cancel(active.handle)
        self._notify()

    def _finish(self, active: _Active, event: Finished) -> None:
        trial = active.trial
        del self._active[trial.number]
        try:
            result: ActionResult | None = self.launcher.result(active.handle)
        except Exception as exc:  # no result object: the state comes from the event
            result = None
            trial.set_user_attr("message", f"no result: {exc}")
        trial.set_user_attr("finished_at", time.time())
        trial.set_user_attr("gpu_epochs", max(active.gpu_epochs, 0))
        if result is not None:
            self._results[trial.number] = result
            compact = result.to_dict()
            compact.pop("manifest", None)
            trial.set_user_attr("result", compact)
        status = result.status if result is not None else event.status
        if active.pruning and status != "SUCCESS":
            self.study.tell(trial, state=TrialState.PRUNED)
        elif status == "SUCCESS":  # (a prune that came after the job had finished is moot: it completed)
            value = (self._metric_of(result.kpis_final) if result else None)
            value = value if value is not None else active.last_value
            if value is None:
                trial.set_user_attr("message", f"the run never reported {self.settings.metric}")
                self.study.tell(trial, state=TrialState.FAIL)
            else:
                if self.settings.max_epochs not in active.rungs:
                    active.rungs[self.settings.max_epochs] = value
                    trial.set_user_attr("kpi_per_rung", {str(k): v for k, v in sorted(active.rungs.items())})
                self.study.tell(trial, value)
        else:
            trial.set_user_attr("failure_class", (result.failure_class if result else None) or event.failure_class)
            trial.set_user_attr("message", (result.message if result else None) or event.message or status)
            self.study.tell(trial, state=TrialState.FAIL)
        self._notify()

    # ------------------------------------------------------------------ reporting
    def _notify(self) -> None:
        if self.on_update is not None:
            self.on_update(self.rows())

    def rows(self) -> list[dict[str, Any]]:
        """The trials table: one row per trial, oldest first."""
        rows = []
        for t in self.study.get_trials(deepcopy=False):
            attrs = t.user_attrs
            state = t.state.name
            if t.number in self._active and self._active[t.number].pruning:
                state = "PRUNING"
            rows.append({
                "number": t.number, "state": state, "value": t.value, "params": dict(t.params),
                "kpi_per_rung": attrs.get("kpi_per_rung", {}), "gpu_epochs": attrs.get("gpu_epochs", 0),
                "run_key": attrs.get("run_key"), "results_uri": attrs.get("results_uri"),
                "submitted_at": attrs.get("submitted_at"), "finished_at": attrs.get("finished_at"),
                "pruned_at_epoch": attrs.get("pruned_at_epoch"), "message": attrs.get("message"),
            })
        return rows

    def result(self) -> SweepResult:
        complete = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        best = None
        if complete:
            pick = max if self.settings.direction == "maximize" else min
            best = pick(complete, key=lambda t: t.value)
        best_result = None
        if best is not None:
            best_result = self._results.get(best.number)
            uri = best.user_attrs.get("results_uri")
            if best_result is None and self.store is not None and uri:
                best_result = self.store.read_result(uri)
            if best_result is None and best.user_attrs.get("result"):
                best_result = ActionResult.from_dict(dict(best.user_attrs["result"]))
        return SweepResult(
            study_name=self.study.study_name, storage=self.storage_url, metric=self.settings.metric,
            direction=self.settings.direction,
            best_number=best.number if best else None, best_params=dict(best.params) if best else {},
            best_value=best.value if best else None,
            best_results_uri=best.user_attrs.get("results_uri") if best else None,
            best_result=best_result, trials=self.rows(),
        )
