"""A sweep as a pipeline's train step: the planner builds each trial's train run, the controller runs them.

Shared by the Prefect sweep flow (flows/automl.py) and `taoflow tune`, so both name studies, trials and
run keys the same way: a rerun after the controller died attaches to the same study and the same jobs.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import optuna

from taoflow.automl.controller import SweepController, SweepResult
from taoflow.automl.policy import DEFAULT_CONCURRENCY, DEFAULT_TRIALS
from taoflow.automl.space import SearchSpace, build_space
from taoflow.automl.study import SweepSettings, default_storage, open_study, settings_for, study_name
from taoflow.cache import verify
from taoflow.errors import UserError
from taoflow.launchers.base import Launcher
from taoflow.planner import PipelineRequest, PlannedStep, RunContext, digest_uri, prepare_run, resolve_emulate
from taoflow.runs import ActionResult, ActionRun
from taoflow.skill import Skill
from taoflow.store import ArtifactStore


@dataclass
class SweepOptions:
    max_trials: int = DEFAULT_TRIALS
    max_concurrent: int = DEFAULT_CONCURRENCY
    max_epochs: int | None = None
    sampler: str = "auto"
    pruner: str | None = None  # None: the default (ASHA with the rung check, study.default_pruner)
    seed: int = 0
    parameters: list[str] = field(default_factory=list)
    space: str = "default"  # "default": the model's AutoML parameters, extended by `parameters`; "none": only them
    storage: str | None = None


def run_sweep(
    skill: Skill,
    request: PipelineRequest,
    store: ArtifactStore,
    launcher: Launcher,
    options: SweepOptions,
    *,
    upstream: dict[str, ActionResult] | None = None,
    on_update: Callable[[list[dict[str, Any]]], None] | None = None,
) -> SweepResult:
    """Run (or resume) the AutoML sweep that replaces `train` in `request`'s pipeline."""
    planned = sweep_study(skill, request, options, upstream)
    settings, space, name = planned.settings, planned.space, planned.name
    storage = default_storage(store.root, skill.name, name, options.storage)
    study = open_study(settings, space, storage=storage, name=name)
    results = dict(upstream or {})

    def make_run(trial_overrides: dict[str, Any], _number: int) -> ActionRun:
        trial_request = copy.deepcopy(request)
        trial_request.overrides.setdefault("train", {}).update(trial_overrides)
        return prepare_run(RunContext(skill, trial_request, store, results), PlannedStep("train"))

    controller = SweepController(
        study, space, settings, skill, launcher, make_run, store=store, storage_url=storage, on_update=on_update
    )
    result = controller.run()
    return retrain_deleted_best(result, study, launcher, make_run, store, emulated=bool(planned.identity["emulated"]))


def retrain_deleted_best(result: SweepResult, study: optuna.Study, launcher: Launcher,
                         make_run: Callable[[dict[str, Any], int], ActionRun], store: ArtifactStore, *,
                         emulated: bool) -> SweepResult:
    """A finished study still names its best trial after that trial's results were deleted from the store,
    and the steps after train would find no checkpoint there. Train that trial again — its values, its run
    key, its results folder — as a deleted direct train runs again (taoflow/cache.py), once, outside the
    study (its value is already in it)."""
    best = result.best_result
    if best is None or result.best_number is None or verify(store, best, best.run_key, emulated=emulated).result:
        return result
    (trial,) = [t for t in study.get_trials(deepcopy=False) if t.number == result.best_number]
    run = make_run(dict(trial.user_attrs.get("overrides") or {}), trial.number)
    if run.run_key != best.run_key:  # the trial's run is built differently now: retraining would not restore it
        return result
    again = launcher.result(launcher.submit(run))  # blocks until the run ends (Launcher.result)
    if not again.ok:
        raise UserError(f"{run.model} train: the best AutoML trial {trial.number}'s results were deleted from the "
                        f"store and training it again failed: {again.message or again.status}",
                        [f"see its log under {run.results_uri}"])
    return dataclasses.replace(result, best_result=again, launched=result.launched + 1)


@dataclass(frozen=True)
class SweepStudy:
    """The study a sweep runs in: its settings, its search space, what else names it (sweep_identity) and
    its durable name."""

    settings: SweepSettings
    space: SearchSpace
    identity: dict[str, Any]
    name: str


def sweep_study(skill: Skill, request: PipelineRequest, options: SweepOptions,
                upstream: dict[str, ActionResult] | None = None) -> SweepStudy:
    """The study `run_sweep` would open, without opening it: one function for both, so a caller that
    looks a sweep up by its study's name (flows/automl.py, the finished record) never names another one."""
    settings = settings_for(
        skill, sampler=options.sampler, pruner=options.pruner, max_trials=options.max_trials,
        max_concurrent=options.max_concurrent, max_epochs=options.max_epochs or _train_epochs(request),
        seed=options.seed,
    )
    space = build_space(skill, options.parameters, base=options.space)
    identity = sweep_identity(skill, request, upstream)
    return SweepStudy(settings, space, identity, study_name(settings, space, identity))


def sweep_identity(skill: Skill, request: PipelineRequest, upstream: dict[str, ActionResult] | None = None
                   ) -> dict[str, Any]:
    """What names the study besides its settings and space: what every trial's run key holds that the
    trials share — the data, the overrides, the PTM, the upstream steps, the train image, and whether the
    emulator runs it. A study of emulated trials never answers a sweep that must use TAO (nor one on another
    image), as a stored result never answers such a run (taoflow/runs.py)."""
    return {
        "datasets": {role: digest_uri(uri) for role, uri in sorted(request.data.items())},
        "overrides": request.overrides,
        "ptm": request.ptm,
        "upstream": {name: res.run_key for name, res in sorted((upstream or {}).items())},
        "image": skill.image_for("train"),
        "emulated": resolve_emulate(skill, "train", request.launcher, request.emulate),
    }


def _train_epochs(request: PipelineRequest) -> int:
    """The user's train.num_epochs (train overrides, then model-wide), else TAO AutoML's 27."""
    for scope in ("train", "*"):
        value = request.overrides.get(scope, {}).get("train.num_epochs")
        if value:
            return int(value)
    return 27
