"""The `run_action` task: one TAO action, run once per content.

- Cache key = the ActionRun's `run_key`. A hit returns the stored ActionResult and launches nothing; the
  store's own `result.json` is checked first, so a hit also works across machines sharing an S3 store.
- SERIALIZABLE isolation with a lease lock (tasks/locks.py): two flows with the same key run the action
  once, and a lock left by a killed controller lapses instead of blocking forever.
- Retries only on infrastructure failures (OOM, NCCL, preemption, killed pods); every attempt first
  points the resume keys at the newest checkpoint in the run's own results, so it continues, not restarts.
  Program and spec failures fail at once with the remedy from the skill's error patterns.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import CacheKeyFnPolicy

from taoflow.dotted import get_dotted
from taoflow.launchers import get_launcher
from taoflow.launchers.base import EpochProgress, Finished, LogLine
from taoflow.planner import refresh_resume
from taoflow.runs import ActionResult, ActionRun
from taoflow.skill import load_skill
from taoflow.store import ArtifactStore
from tasks.events import emit_action_event
from tasks.locks import LeaseLockManager
from tasks.progress import publish

DEFAULT_RETRIES = 3
LOCK_LEASE_SECONDS = float(os.environ.get("TAOFLOW_LOCK_LEASE_SECONDS", "30"))
# Least seconds between two progress-artifact updates of one action (each is one API request).
PROGRESS_SECONDS = float(os.environ.get("TAOFLOW_PROGRESS_SECONDS", "1"))


class InfraFailure(RuntimeError):
    """Retryable: the infrastructure failed (OOM, NCCL, preemption, eviction, a killed process)."""


class ActionFailed(RuntimeError):
    """Not retryable: the program or the spec is wrong; the message carries the remedy."""


def retry_on_infra_failure(task, task_run, state) -> bool:
    """Prefect retry condition (must be a plain function, see prefect-notes.md)."""
    return isinstance(state.data, InfraFailure)


def _run_key(_context, parameters: dict[str, Any]) -> str:
    run = parameters["run"]
    return run.run_key if isinstance(run, ActionRun) else run["run_key"]


def control_dir(store: ArtifactStore) -> Path:
    """Where cache records and locks live: inside a local store, else `$TAOFLOW_HOME` (~/.taoflow)."""
    local = store.local_path(store.root)
    if local is not None:
        return Path(local) / "control"
    return Path(os.environ.get("TAOFLOW_HOME", Path.home() / ".taoflow")) / "control"


def cache_policy_for(store: ArtifactStore) -> CacheKeyFnPolicy:
    base = control_dir(store)
    return CacheKeyFnPolicy(cache_key_fn=_run_key).configure(
        key_storage=str(base / "cache"),
        lock_manager=LeaseLockManager(base / "locks", lease_seconds=LOCK_LEASE_SECONDS),
        isolation_level="SERIALIZABLE",
    )


@task(
    name="run-action",
    retries=DEFAULT_RETRIES,
    retry_delay_seconds=1,
    retry_condition_fn=retry_on_infra_failure,
    persist_result=True,
    result_serializer="json",
)
def run_action(run: ActionRun, store_root: str, launcher: str = "local",
               launcher_options: dict[str, Any] | None = None) -> dict[str, Any]:
    logger = get_run_logger()
    store = ArtifactStore(store_root)
    stored = _stored_success(store, run)
    if stored is not None:
        logger.info("%s %s: results already in the store at %s; launching nothing",
                    run.model, run.action, run.results_uri)
        return stored.to_dict()

    skill = load_skill(run.model)
    run = refresh_resume(skill, store, run)
    for key, fn in skill.actions[run.action].handoffs.items():
        if fn == "resume_model" and get_dotted(run.spec, key):
            logger.info("%s %s resumes from %s", run.model, run.action, get_dotted(run.spec, key))
    result = launch_and_follow(run, launcher, launcher_options or {}, logger, store_root=store_root)
    store.write_result(run.results_uri, result)
    emit_action_event(run, result)
    if result.ok:
        return result.to_dict()
    detail = failure_detail(run, result)
    if result.failure_class == "infra":
        raise InfraFailure(detail)
    raise ActionFailed(detail)


def failure_detail(run: ActionRun, result: ActionResult) -> str:
    """One message for a failed action: model, action, failure class, TAO's message and the remedy."""
    detail = f"{run.model} {run.action} failed ({result.failure_class}): {result.message or ''}".strip()
    return detail + (f"\nRemedy: {result.remedy}" if result.remedy else "")


def _stored_success(store: ArtifactStore, run: ActionRun) -> ActionResult | None:
    stored = store.read_result(run.results_uri)
    return stored if stored is not None and stored.ok and stored.run_key == run.run_key else None


def launch_and_follow(run: ActionRun, launcher_name: str, options: dict[str, Any], logger,
                      store_root: str | None = None, progress_artifact: bool = True) -> ActionResult:
    """Launch and follow one attempt. `progress_artifact=False` where the caller's caller already shows it
    (the work pool's action flow: the pipeline's own progress artifact follows the same status.json)."""
    launcher = make_launcher(launcher_name, options, store_root)
    handle = launcher.submit(run)
    update = update_progress_artifact if progress_artifact else (lambda *_a, **_k: None)
    artifact_key = f"{run.model}-{run.action}-progress".replace("_", "-").lower()
    artifact_id = create_progress_artifact(
        progress=0.0, key=artifact_key, description=f"{run.model} {run.action}: starting ({run.run_key})"
    ) if progress_artifact else None
    last_update, percent = 0.0, 0.0
    try:
        for event in launcher.events(handle):
            publish(run, event)
            if isinstance(event, LogLine):
                logger.info(event.text)
            elif isinstance(event, EpochProgress):
                now, percent = time.monotonic(), _percent(event)
                if now - last_update >= PROGRESS_SECONDS or event.epoch >= event.max_epoch:
                    last_update = now
                    update(
                        artifact_id, progress=percent, description=_describe(run, event)
                    )
            elif isinstance(event, Finished):
                break
    except BaseException:
        launcher.cancel(handle)
        raise
    result = launcher.result(handle)
    update(
        artifact_id, progress=100.0 if result.ok else percent,
        description=f"{run.model} {run.action}: {result.status}"
        + (f" — {result.failure_class}: {result.message}" if not result.ok else ""),
    )
    return result


def make_launcher(name: str, options: dict[str, Any], store_root: str | None = None):
    """Engine launchers by name; `workpool` (Prefect's run_deployment, reading results back from the
    store at `store_root`) lives in this layer."""
    if name == "workpool":
        from tasks.workpool import WorkPoolLauncher

        if not store_root:
            raise ValueError("the workpool launcher needs the store root")
        return WorkPoolLauncher(store_root, **options)
    return get_launcher(name, **options)


def _percent(event: EpochProgress) -> float:
    total = max(event.max_epoch + 1, 1)
    return round(100.0 * min(event.epoch + 1, total) / total, 1)


def _describe(run: ActionRun, event: EpochProgress) -> str:
    kpis = ", ".join(f"{k}={v:.4g}" for k, v in sorted(event.kpi.items()) if isinstance(v, (int, float)))
    eta = f", ETA {event.eta}" if event.eta else ""
    return f"{run.model} {run.action}: epoch {event.epoch + 1}/{event.max_epoch + 1}{eta}" + (
        f" — {kpis}" if kpis else ""
    )
