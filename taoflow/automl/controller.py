"""The sweep controller: runs Optuna trials as TAO train jobs through any Launcher, in parallel up to a GPU
budget, pruning at rung epochs by cancelling the trial's job.

One thread (the caller's) talks to Optuna; one reader thread per running trial forwards the launcher's
events into a queue. The controller keeps the trials table and the rung tables in memory (`RungPruner`),
so an event costs the same with 32 trials in the study or 1,000: the study is read once, at start, and
written (one row per fact) as trials start, pass rungs and end.

Pruning that takes effect, and the same sweep for the same seed. A trial is *gated* when its launcher can
hold it at a rung until the controller has decided (gates.py: the emulator through files, the benchmark's
`VirtualLauncher` in-process): a pruned gated trial stops exactly at its rung, and gated trials are decided
in virtual-clock order (clock.py), so the same seed gives the same trials, prunes and GPU-epochs — on the
emulator and in benchmarks/automl.py, which drives this class too. Real TAO (epochs of minutes) is not
gated: its events are decided as they arrive and a pruned job is cancelled well within the epoch after its
rung.

Per trial the study keeps (user attrs): `run_key`, `results_uri`, `overrides`, `trained_with` (the searched
keys as the trial's spec has them, after clamps and dependencies), `kpi_per_rung` ({epochs: value}),
`gpu_epochs`, `submitted_at`/`finished_at` (epoch seconds), `pruned_at_epoch`, `message`.

Durability (a controller killed mid-sweep, then run again with the same study):
- COMPLETE, PRUNED and FAIL trials are kept as they are and count towards `max_trials`;
- RUNNING trials are *adopted*, not re-sampled: the same Optuna trial continues (same number, params and
  reports), `make_run` rebuilds its run — the same run key, so the launcher attaches to the job if it is
  still running — and when the job is gone the run restarts from the newest checkpoint in its results
  folder (`planner.refresh_resume`). Adopted trials are not gated (their gate is released) and are
  decided as their events arrive;
- the rung tables are rebuilt from the stored reports, and the remaining budget is filled with new trials.
Failed trials (the job failed, or never reported the metric) are FAIL and can never be the best.

Infrastructure failures (OOM, NCCL, preemption, a lost pod: TAO's failure class `infra`) do not cost a trial:
as a direct train's task retries do (tasks/run_action.py), the trial is relaunched in its own results folder,
resuming from its newest checkpoint, up to `INFRA_RETRIES` times; it is then decided as its events arrive,
like an adopted trial. Only then, or on any other failure, is it FAIL.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from taoflow.automl.clock import VirtualClock
from taoflow.automl.gates import Gate, gate_for
from taoflow.automl.pruning import RungPruner
from taoflow.automl.space import SearchSpace
from taoflow.automl.study import SweepSettings, rung_epochs, trial_overrides
from taoflow.dotted import get_dotted
from taoflow.kpis import metric_in
from taoflow.launchers.base import EpochProgress, Finished, Launcher
from taoflow.runs import ActionResult, ActionRun
from taoflow.skill import Skill

MakeRun = Callable[[dict[str, Any], int], ActionRun]
"""`make_run(overrides, trial_number) -> ActionRun`: the caller builds the train spec (template, data,
handoffs) with `overrides` — the trial's values plus `train.num_epochs`, checkpoint/validation intervals
and the skill's AutoML overrides — and owns the run key and results URI. It must be deterministic: an
adopted trial is rebuilt with the same arguments and must map to the same run key."""

FINISHED = ("COMPLETE", "PRUNED", "FAIL")
INFRA_RETRIES = 3  # relaunches of a trial after infrastructure failures, as a direct train's (run_action)


@dataclass
class _Active:
    trial: optuna.Trial
    run: ActionRun
    row: dict[str, Any]
    gate: Gate | None
    ordered: bool
    start: int
    decisions: list[int]
    handle: Any = None
    step: int = 0
    rungs: dict[int, float] = field(default_factory=dict)
    last_value: float | None = None
    gpu_epochs: int = 0
    pending: deque[Any] = field(default_factory=deque)
    pruning: bool = False
    told: bool = False  # the study already has the trial's final state (a gated trial pruned at its rung)


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
    best_trained_with: dict[str, Any] = field(default_factory=dict)
    launched: int = 0  # trial jobs this run submitted (0: the study already held the whole sweep)

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
        stop_when: Callable[[SweepController], bool] | None = None,
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
        self.stop_when = stop_when
        self.rungs = rung_epochs(settings)
        self.pruner = RungPruner(settings.pruner, self.rungs, reduction_factor=settings.reduction_factor,
                                 maximize=settings.direction == "maximize", seed=settings.seed,
                                 rung_check=settings.rung_check)
        self._clock = VirtualClock(settings.max_epochs)
        self.gpu_epochs = 0  # trained by every trial so far, this controller's run and earlier ones
        self._distributions = dict(sorted(space.distributions().items()))
        self._events: queue.Queue[tuple[int, Any]] = queue.Queue()
        self._now: deque[tuple[int, Any]] = deque()  # events to handle as they came
        self._active: dict[int, _Active] = {}
        self._rows: dict[int, dict[str, Any]] = {}
        self._results: dict[int, ActionResult] = {}
        self._orphans: list[optuna.trial.FrozenTrial] = []
        self._started = 0
        self._launched = 0  # jobs submitted by this run (new trials and adopted ones)

    # ------------------------------------------------------------------ budget
    def _budget(self) -> int:
        if self.settings.sampler == "grid":
            size = 1
            for values in self.space.grid(self.settings.grid_points).values():
                size *= len(values)
            return min(self.settings.max_trials, size)
        return self.settings.max_trials

    def _running(self) -> int:
        """Trials holding a GPU: a gated trial pruned at its rung let go of it there."""
        return sum(1 for a in self._active.values() if not a.told)

    # ------------------------------------------------------------------ main loop
    def run(self) -> SweepResult:
        self._load()
        try:
            self._adopt_running()
            while True:
                while self._running() < self.settings.max_concurrent and self._started < self._budget():
                    self._start_new()
                if not self._active:
                    break
                number, event = self._next_event()
                self._handle(number, event)
                if self.stop_when is not None and self.stop_when(self):
                    self._stop()
                    break
        except BaseException:
            # Interrupted (Ctrl-C, a crash): the trials keep running and a rerun adopts them; their gates
            # must not hold them meanwhile.
            for active in self._active.values():
                if active.gate is not None:
                    active.gate.release()
            raise
        return self.result()

    def _load(self) -> None:
        """The study's trials as the in-memory table and rung tables: the one full read of a sweep."""
        for frozen in self.study.get_trials(deepcopy=False):
            if frozen.state == TrialState.RUNNING:
                self._orphans.append(frozen)
            attrs = frozen.user_attrs
            rungs = {int(k): float(v) for k, v in frozen.intermediate_values.items()}  # decisions (reported)
            rungs.update({int(k): float(v) for k, v in (attrs.get("kpi_per_rung") or {}).items()})  # at its end
            for epochs, value in sorted(rungs.items()):
                self.pruner.observe(frozen.number, epochs, value)
            if frozen.state == TrialState.COMPLETE and frozen.value is not None:
                self.pruner.completed(rungs, frozen.value)
            row = self._new_row(frozen.number, dict(frozen.params), attrs)
            row.update(state=frozen.state.name, value=frozen.value, kpi_per_rung={str(k): v for k, v in rungs.items()})
            if frozen.state == TrialState.RUNNING:  # its GPU-epochs are written when it ends; until then, rungs
                row["gpu_epochs"] = max(row["gpu_epochs"], max(rungs, default=0))
            self._rows[frozen.number] = row
            self.gpu_epochs += int(row["gpu_epochs"])
            self._started += 1

    def _new_row(self, number: int, params: dict[str, Any], attrs: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "number": number, "state": "RUNNING", "value": None, "params": params,
            "trained_with": dict(attrs.get("trained_with") or {}), "kpi_per_rung": {},
            "epochs": 0, "gpu_epochs": int(attrs.get("gpu_epochs") or 0), "last_value": None,
            "run_key": attrs.get("run_key"), "results_uri": attrs.get("results_uri"),
            "submitted_at": attrs.get("submitted_at"), "finished_at": attrs.get("finished_at"),
            "pruned_at_epoch": attrs.get("pruned_at_epoch"), "message": attrs.get("message"),
            "clock_start": None, "bracket": self.pruner.bracket(number), "max_epochs": self.settings.max_epochs,
            "baseline": bool(attrs.get("baseline")),
        }

    def _start_new(self) -> None:
        if self._started == 0 and self.settings.baseline and self.settings.sampler != "grid":
            self._enqueue_baseline()
        self._started += 1
        trial = self.study.ask(self._distributions)
        overrides = trial_overrides(self.skill, self.space, trial.params, self.settings)
        trial.set_user_attr("overrides", overrides)
        row = self._rows[trial.number] = self._new_row(trial.number, dict(trial.params), trial.user_attrs)
        try:
            run = self.make_run(overrides, trial.number)
        except Exception as exc:  # a spec the builder rejects fails the trial, not the sweep
            self._fail_now(trial, row, f"could not build the trial's run: {exc}")
            return
        self._submit(trial, run, row)

    def _enqueue_baseline(self) -> None:
        """A fresh study's first trial trains the values the run's own spec gives the searched keys — what
        `--automl off` would train — so a sweep's best is never a config that loses to training directly
        (up to the metric's noise), and the table shows what the search gained over it."""
        try:
            spec = self.make_run(trial_overrides(self.skill, self.space, {}, self.settings), 0).spec
        except Exception:  # the trial's own build reports the problem
            return
        values = self.space.baseline(lambda key: get_dotted(spec, key))
        if values:
            self.study.enqueue_trial(values, user_attrs={"baseline": True})

    def _adopt_running(self) -> None:
        """Continue the RUNNING trials a dead controller left behind (see the module docstring)."""
        for frozen in self._orphans:
            number, row = frozen.number, self._rows[frozen.number]
            trial = optuna.Trial(self.study, frozen._trial_id)
            overrides = frozen.user_attrs.get("overrides") or trial_overrides(
                self.skill, self.space, frozen.params, self.settings)
            try:
                run = self.make_run(dict(overrides), number)
            except Exception as exc:  # same: this trial fails, the sweep goes on
                self._fail_now(trial, row, f"could not rebuild the trial's run: {exc}")
                continue
            if self.store is not None:
                from taoflow.planner import refresh_resume

                run = refresh_resume(self.skill, self.store, run)
            trial.set_user_attr("adopted", int(frozen.user_attrs.get("adopted", 0)) + 1)
            rungs = {int(k): float(v) for k, v in row["kpi_per_rung"].items()}
            last = frozen.intermediate_values[max(frozen.intermediate_values)] if frozen.intermediate_values else None
            self._submit(trial, run, row, adopted=True, rungs=rungs, last=last)

    def _submit(self, trial: optuna.Trial, run: ActionRun, row: dict[str, Any], *, adopted: bool = False,
                rungs: dict[int, float] | None = None, last: float | None = None) -> None:
        gate = gate_for(self.launcher, run)
        decisions = self.pruner.decision_rungs(trial.number)
        if gate is not None:
            run.env.update(gate.environment([] if adopted else decisions))
            gate.reset()
        trained_with = {key: get_dotted(run.spec, key) for key in self.space.params}
        now = time.time()
        for key, value in (("run_key", run.run_key), ("results_uri", run.results_uri),
                           ("trained_with", trained_with), ("submitted_at", now)):
            trial.set_user_attr(key, value)
        row.update(run_key=run.run_key, results_uri=run.results_uri, trained_with=trained_with, submitted_at=now,
                   clock_start=self.clock)
        active = _Active(trial, run, row, gate, ordered=gate is not None and not adopted, start=self.clock,
                         decisions=decisions, rungs=dict(rungs or {}), last_value=last,
                         gpu_epochs=int(row.get("gpu_epochs") or 0))
        try:
            active.handle = self.launcher.submit(run)
        except Exception as exc:  # an unlaunchable trial fails, the sweep goes on
            self._fail_now(trial, row, f"launch failed: {exc}")
            return
        self._launched += 1
        if gate is not None and adopted:
            gate.release()
        self._active[trial.number] = active
        threading.Thread(target=self._read, args=(trial.number, active.handle), daemon=True).start()
        self._notify()

    def _fail_now(self, trial: optuna.Trial, row: dict[str, Any], message: str) -> None:
        now = time.time()
        trial.set_user_attr("message", message)
        trial.set_user_attr("finished_at", now)
        self.study.tell(trial, state=TrialState.FAIL)
        row.update(state="FAIL", message=message, finished_at=now)
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

    # ------------------------------------------------------------------ event order
    @property
    def clock(self) -> int:
        """The virtual clock of gated trials, in epochs (clock.py)."""
        return self._clock.now

    def _next_event(self) -> tuple[int, Any]:
        """The next event to handle: one that needs no decision order, else the gated decision whose turn
        it is on the virtual clock."""
        while True:
            if self._now:
                return self._now.popleft()
            ready = self._clock.next(self._active)
            if ready is not None:
                return ready
            number, event = self._events.get()
            active = self._active.get(number)
            if active is None:
                continue
            if self._clock.decides(active, event):
                active.pending.append(event)
            else:
                self._now.append((number, event))

    # ------------------------------------------------------------------ events
    def _metric_of(self, kpis: Mapping[str, Any]) -> float | None:
        """The sweep's metric from a KPI dict as taoflow.status parsed it, under any of TAO's names for it
        (taoflow/kpis.py)."""
        return metric_in(dict(kpis), self.settings.metric)

    def _handle(self, number: int, event: Any) -> None:
        active = self._active.get(number)
        if active is None:
            return
        if isinstance(event, EpochProgress):
            self._progress(active, event)
        elif isinstance(event, Finished):
            self._finish(active, event)

    def _progress(self, active: _Active, event: EpochProgress) -> None:
        step, row = event.epoch + 1, active.row
        if step > active.step:  # one status line per epoch trained (a resumed run starts past 1)
            gpus = max(active.run.gpus, 1) * max(active.run.nodes, 1)
            active.gpu_epochs += gpus
            self.gpu_epochs += gpus
            active.step = step
        value = self._metric_of(event.kpi)
        value = value if value is not None else self._metric_of(event.graphical)
        row.update(epochs=step, gpu_epochs=active.gpu_epochs)
        if value is not None:
            active.last_value = value
            row["last_value"] = value
        if step in self.rungs and value is not None and not active.told:
            active.rungs[step] = value
            row["kpi_per_rung"] = {str(k): v for k, v in sorted(active.rungs.items())}
        if step in active.decisions and not active.pruning and not active.told:
            self._decide(active, step, value)
        self._notify()

    def _decide(self, active: _Active, step: int, value: float | None) -> None:
        """At a decision rung: record the value, prune (cancel the job) or let the trial go on."""
        trial, row = active.trial, active.row
        if value is None:  # no metric at this rung: nothing to compare, the trial goes on
            if active.gate is not None:
                active.gate.ack(step)
            return
        trial.report(value, step)  # the one write of a decision (the rest is written when the trial ends)
        if row.get("baseline"):
            # Never pruned, whatever order trials reach their rungs in: the sweep learns what a direct train
            # reaches at full length. Its value still ranks the others (and a gated baseline still waits at
            # its rungs, so its values enter the rung tables in virtual-clock order).
            self.pruner.observe(trial.number, step, value)
            prune = False
        else:
            prune = self.pruner.should_prune(trial.number, step, value)
        if not prune:
            if active.gate is not None:
                active.gate.ack(step)
            return
        active.pruning = True
        row.update(state="PRUNING", pruned_at_epoch=step)
        self.launcher.cancel(active.handle)
        if active.gate is not None:
            active.gate.cancel()
        if active.ordered:  # it stopped at this rung: its GPU is free now, on the clock too
            self._tell_pruned(active)

    def _tell_pruned(self, active: _Active) -> None:
        now = time.time()
        for key, value in (("pruned_at_epoch", active.row["pruned_at_epoch"]), ("gpu_epochs", active.gpu_epochs),
                           ("kpi_per_rung", active.row["kpi_per_rung"]), ("finished_at", now)):
            active.trial.set_user_attr(key, value)
        self.study.tell(active.trial, state=TrialState.PRUNED)
        active.told = True
        active.row.update(state="PRUNED", finished_at=now)

    def _finish(self, active: _Active, event: Finished) -> None:
        trial, row = active.trial, active.row
        del self._active[trial.number]
        try:
            result: ActionResult | None = self.launcher.result(active.handle)
        except Exception as exc:  # no result object: the state comes from the event
            result = None
            row["message"] = f"no result: {exc}"
        if result is not None:
            self._results[trial.number] = result
        if active.told:  # pruned at its rung and already recorded; the job has now stopped
            self._notify()
            return
        if result is not None:
            compact = result.to_dict()
            compact.pop("manifest", None)
            trial.set_user_attr("result", compact)
        status = result.status if result is not None else event.status
        if active.pruning and status != "SUCCESS":
            self._tell_pruned(active)
        elif status == "SUCCESS":  # (a prune that came after the job had finished is moot: it completed)
            self._complete(active, result)
        else:
            failure = (result.failure_class if result else None) or event.failure_class
            message = (result.message if result else None) or event.message or status
            if failure == "infra" and self._retry(active, message):
                return
            trial.set_user_attr("failure_class", failure)
            trial.set_user_attr("gpu_epochs", active.gpu_epochs)
            trial.set_user_attr("kpi_per_rung", row["kpi_per_rung"])
            self._fail_now(trial, row, message)
            return
        self._notify()

    def _retry(self, active: _Active, message: str) -> bool:
        """Relaunch a trial whose job failed for the infrastructure, resuming from its newest checkpoint
        (False: its retries are spent). The epochs it trained stay counted; the new attempt's add to them."""
        trial, row = active.trial, active.row
        retries = int(row.get("retries") or 0)
        if retries >= INFRA_RETRIES:
            return False
        run = active.run
        if self.store is not None:
            from taoflow.planner import refresh_resume

            run = refresh_resume(self.skill, self.store, run)
        row.update(retries=retries + 1, gpu_epochs=active.gpu_epochs,
                   message=f"attempt {retries + 2} after an infrastructure failure: {message}")
        trial.set_user_attr("retries", retries + 1)
        self._submit(trial, run, row, adopted=True, rungs=active.rungs, last=active.last_value)
        return True

    def _complete(self, active: _Active, result: ActionResult | None) -> None:
        trial, row = active.trial, active.row
        value = self._metric_of(result.kpis_final) if result else None
        value = value if value is not None else active.last_value
        if value is None:
            self._fail_now(trial, row, f"the run never reported {self.settings.metric}")
            return
        if self.settings.max_epochs not in active.rungs:
            active.rungs[self.settings.max_epochs] = value
            row["kpi_per_rung"] = {str(k): v for k, v in sorted(active.rungs.items())}
        self.pruner.completed(active.rungs, value)
        now = time.time()
        for key, attr in (("kpi_per_rung", row["kpi_per_rung"]), ("gpu_epochs", active.gpu_epochs),
                          ("finished_at", now)):
            trial.set_user_attr(key, attr)
        self.study.tell(trial, value)
        row.update(state="COMPLETE", value=value, finished_at=now)

    def _stop(self) -> None:
        """`stop_when` said so: cancel what still runs and record it as failed (stopped)."""
        for active in list(self._active.values()):
            del self._active[active.trial.number]
            if active.told:
                continue
            self.launcher.cancel(active.handle)
            if active.gate is not None:
                active.gate.cancel()
            active.trial.set_user_attr("gpu_epochs", active.gpu_epochs)
            self._fail_now(active.trial, active.row, "the sweep was stopped before this trial ended")

    # ------------------------------------------------------------------ reporting
    def _notify(self) -> None:
        if self.on_update is not None:
            self.on_update(self.rows())

    def rows(self) -> list[dict[str, Any]]:
        """The trials table: one row per trial, oldest first (kept in memory, never re-read)."""
        return list(self._rows.values())

    def result(self) -> SweepResult:
        complete = [r for r in self._rows.values() if r["state"] == "COMPLETE" and r["value"] is not None]
        best = None
        if complete:
            pick = max if self.settings.direction == "maximize" else min
            best = pick(complete, key=lambda r: r["value"])
        best_result = None
        if best is not None:
            best_result = self._results.get(best["number"])
            uri = best.get("results_uri")
            if best_result is None and self.store is not None and uri:
                best_result = self.store.read_result(uri)
            if best_result is None:
                stored = next(t.user_attrs.get("result") for t in self.study.get_trials(deepcopy=False)
                              if t.number == best["number"])
                best_result = ActionResult.from_dict(dict(stored)) if stored else None
        return SweepResult(
            study_name=self.study.study_name, storage=self.storage_url, metric=self.settings.metric,
            direction=self.settings.direction,
            best_number=best["number"] if best else None, best_params=dict(best["params"]) if best else {},
            best_value=best["value"] if best else None,
            best_results_uri=best.get("results_uri") if best else None,
            best_result=best_result, trials=self.rows(),
            best_trained_with=dict(best.get("trained_with") or {}) if best else {},
            launched=self._launched,
        )
