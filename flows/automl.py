"""The AutoML sweep flow: Optuna trials as TAO train jobs, in parallel up to the GPU budget, pruned at rung
epochs, durable in the study's storage; the best trial's result is the pipeline's train result.

It runs as the train step of any model pipeline whose train action policy is on (the default of every model,
taoflow/automl/policy.py) and standalone (`tao-automl-sweep`, `taoflow tune`), which runs the pipeline up to
train (Sparse4D's dataset_convert first) with AutoML on. A sweep whose study already holds every trial of its
budget launches nothing: its train result is the best trial's, marked cached — answered before this subflow
even starts from the sweep's finished record (taoflow/automl/finished.py), else from the study and the store.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact

from flows.parameters import AutoMLSettings, LauncherProfile, PipelineParameters
from taoflow.automl.finished import FinishedSweep, read_record, remove_record, write_record
from taoflow.automl.report import best_summary, format_value
from taoflow.automl.study import default_storage, display_url
from taoflow.automl.sweep import SweepOptions, run_sweep, sweep_study
from taoflow.errors import UserError
from taoflow.planner import PipelineRequest
from taoflow.runs import ActionResult
from taoflow.skill import PIPELINE_ORDER, load_skill
from taoflow.store import ArtifactStore
from tasks.progress import publish_trials
from tasks.run_action import ActionFailed, make_launcher


@flow(name="tao-automl-train")
def automl_train(request: PipelineRequest, upstream: dict[str, dict[str, Any]], automl: AutoMLSettings,
                 launcher: LauncherProfile) -> dict[str, Any]:
    """The sweep that stands in for `train`: `{"result": the best trial's ActionResult as a dict, "sweep":
    what the model card says of it}`."""
    logger = get_run_logger()
    skill = load_skill(request.model)
    store = ArtifactStore(request.store)
    key = f"{skill.name}-automl".replace("_", "-")
    progress_id = create_progress_artifact(0.0, key=f"{key}-progress",
                                           description=f"{skill.name} AutoML: starting")
    last = [0.0]

    def on_update(rows: list[dict[str, Any]]) -> None:
        publish_trials(skill.name, rows)
        now = time.monotonic()
        if now - last[0] < 1.0:
            return
        last[0] = now
        finished = sum(1 for r in rows if r["state"] in ("COMPLETE", "PRUNED", "FAIL"))
        running = sum(1 for r in rows if r["state"] in ("RUNNING", "PRUNING"))
        update_progress_artifact(progress_id, progress=100.0 * finished / max(automl.max_trials, 1),
                                 description=f"{skill.name} AutoML: {finished}/{automl.max_trials} trials "
                                             f"finished, {running} running")

    trial_launcher = make_launcher(launcher.name, dict(launcher.options), store.root)
    result = run_sweep(
        skill, request, store, trial_launcher, sweep_options(automl),
        upstream={name: ActionResult.from_dict(res) for name, res in upstream.items()},
        on_update=on_update,
    )
    publish_trials(skill.name, result.trials)
    create_table_artifact(table=trial_rows(result.trials), key=f"{key}-trials",
                          description=f"{skill.name} AutoML trials (study {result.study_name}, {display_url(result.storage)})")
    update_progress_artifact(progress_id, progress=100.0, description=f"{skill.name} AutoML: best trial "
                             f"{result.best_number} {result.metric}={result.best_value}")
    if result.best_result is None:
        raise no_trial_completed(skill.name, store, result.trials, f"{key}-trials")
    logger.info("%s", best_summary(skill.name, result.trials, metric=result.metric, direction=result.direction))
    best = result.best_result.to_dict()
    best["cached"] = best.get("cached") or result.launched == 0  # the study answered: nothing was launched
    sweep = {"study": result.study_name, "storage": display_url(result.storage), "trials": len(result.trials),
             "launched": result.launched, "best_trial": result.best_number, "metric": result.metric,
             "direction": result.direction, "best_value": result.best_value,
             "trained_with": dict(result.best_trained_with)}
    write_record(store, skill.name, result, max_trials=automl.max_trials, sweep=sweep)
    return {"result": best, "sweep": sweep}


def sweep_options(automl: AutoMLSettings) -> SweepOptions:
    """The engine's options for a run's AutoML settings (the sweep and the lookup of its record agree)."""
    return SweepOptions(max_trials=automl.max_trials, max_concurrent=automl.max_concurrent,
                        max_epochs=automl.max_epochs, sampler=automl.sampler, pruner=automl.pruner,
                        seed=automl.seed, parameters=list(automl.parameters), space=automl.space,
                        storage=automl.storage)


def no_trial_completed(model: str, store: ArtifactStore, trials: list[dict[str, Any]], table: str) -> Exception:
    """The error of a sweep without a completed trial: when trials failed, the first failure as an action
    failure (its class, TAO's message, the remedy and the log, as a failed direct train says it)."""
    failed = [t for t in trials if t["state"] == "FAIL"]
    if not failed:
        return UserError(f"no AutoML trial of {model} completed; see the trials table ({table})")
    first = failed[0]
    stored = store.read_result(first["results_uri"]) if first.get("results_uri") else None
    message = (stored.message if stored else None) or first.get("message") or "failed"
    detail = (f"{model} train failed in {len(failed)} of {len(trials)} AutoML trials "
              f"({(stored.failure_class if stored else None) or 'program'}); trial {first['number']}: {message}")
    if stored and stored.remedy:
        detail += f"\nRemedy: {stored.remedy}"
    if stored and stored.products.get("log"):
        detail += f"\nLog: {stored.products['log']}"
    return ActionFailed(detail)


def trial_rows(trials: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trials table artifact: the values each trial trained with (its spec, after clamps)."""
    rows = []
    for t in trials:
        rows.append({
            "trial": t["number"], "state": t["state"], "value": t["value"], "epochs": t.get("epochs", 0),
            "trained with": " ".join(f"{k}={format_value(v)}"
                                     for k, v in sorted((t.get("trained_with") or t["params"]).items())),
            "KPI per rung": ", ".join(f"{e}:{v:.4g}" for e, v in sorted(
                ((int(k), v) for k, v in (t.get("kpi_per_rung") or {}).items()))),
            "GPU-epochs": t.get("gpu_epochs", 0), "results": t.get("results_uri") or "",
        })
    return rows


def automl_train_step(request: PipelineRequest, results: dict[str, ActionResult], params: PipelineParameters
                      ) -> tuple[ActionResult, dict[str, Any]]:
    """The pipeline's train step as a sweep: the best trial's result and the sweep's facts (automl_train),
    from the sweep's finished record when it answers (no subflow, no study opened), else from the sweep."""
    finished = finished_sweep(request, results, params.automl)
    if finished is not None:
        return finished.best, finished.sweep
    out = automl_train(request, {n: r.to_dict() for n, r in results.items()}, params.automl, params.launcher)
    return ActionResult.from_dict(out["result"]), out["sweep"]


def finished_sweep(request: PipelineRequest, results: dict[str, ActionResult], automl: AutoMLSettings
                   ) -> FinishedSweep | None:
    """The sweep's finished record if it answers this run; a record that does not is removed, since the
    sweep is about to run again and change its study (it writes a new record when it finishes)."""
    skill = load_skill(request.model)
    store = ArtifactStore(request.store)
    options = sweep_options(automl)
    study = sweep_study(skill, request, options, results)
    storage = default_storage(store.root, skill.name, study.name, options.storage)
    found = read_record(store, skill.name, study.name, max_trials=automl.max_trials, storage=storage,
                        emulated=bool(study.identity["emulated"]))
    logger = get_run_logger()
    if found.answer is None:
        if found.stale:
            logger.info("%s train: AutoML sweep %s runs: its finished record does not answer (%s)",
                        skill.name, study.name, found.reason)
            remove_record(store, skill.name, study.name)
        return None
    publish_trials(skill.name, found.answer.trials)  # the live board's and `taoflow tune`'s trials table
    sweep = found.answer.sweep
    logger.info("%s train: AutoML sweep %s answered from its finished record (%d trials, best trial %s, %s=%s); "
                "launching nothing: %s", skill.name, study.name, sweep["trials"], sweep["best_trial"],
                sweep["metric"], sweep["best_value"], found.answer.uri)
    return found.answer


@flow(name="tao-automl-sweep")
def tao_automl_sweep(model: str, params: PipelineParameters) -> dict[str, Any]:
    """Standalone sweep: the model's pipeline up to train (its dataset_convert too) with AutoML on."""
    from flows.pipeline import run_pipeline

    skill = load_skill(model)
    upto = [a for a in PIPELINE_ORDER[: PIPELINE_ORDER.index("train") + 1] if a in skill.actions]
    tuned = params.model_copy(update={"actions": upto, "automl": params.automl.model_copy(update={"policy": "on"})})
    return run_pipeline(model, tuned)
