"""The `run_action` task: one TAO action, run once per content.

- Caching and exactly-once launches live in tasks/cache.py over the store (taoflow/cache.py): the store's
  verified `result.json` answers a run key (a hit ends the task run "Cached"), and a store lease makes two
  controllers sharing the store launch the action once; a killed controller's lease lapses.
- Retries only on infrastructure failures (OOM, NCCL, preemption, killed pods); every attempt first
  points the resume keys at the newest checkpoint in the run's own results, so it continues, not restarts.
  Program and spec failures fail at once with the remedy from the skill's error patterns.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.states import State

from taoflow.dotted import get_dotted
from taoflow.launchers import get_launcher
from taoflow.launchers.base import EpochProgress, Finished, LogLine
from taoflow.planner import refresh_resume
from taoflow.runs import ActionResult, ActionRun
from taoflow.skill import load_skill
from taoflow.storage_errors import is_transient
from taoflow.store import ArtifactStore
from tasks.cache import cached_or_launched
from tasks.events import emit_action_event
from tasks.notices import announce_retry
from tasks.progress import publish

DEFAULT_RETRIES = 3
# Least seconds between two progress-artifact updates of one action (each is one API request).
PROGRESS_SECONDS = float(os.environ.get("TAOFLOW_PROGRESS_SECONDS", "1"))


class InfraFailure(RuntimeError):
    """Retryable: the infrastructure failed (OOM, NCCL, preemption, eviction, a killed process)."""


class ActionFailed(RuntimeError):
    """Not retryable: the program or the spec is wrong; the message carries the remedy."""


def retry_on_infra_failure(task, task_run, state) -> bool:
    """Prefect retry condition (must be a plain function, see prefect-notes.md). A storage failure that
    outlasted the store's own retries (taoflow.storage_errors.is_transient) is an infrastructure failure too."""
    return isinstance(state.data, InfraFailure) or (isinstance(state.data, Exception) and is_transient(state.data))


@task(
    name="run-action",
    retries=DEFAULT_RETRIES,
    retry_delay_seconds=1,
    retry_condition_fn=retry_on_infra_failure,
    cache_policy=NO_CACHE,  # the store is the cache (tasks/cache.py)
    persist_result=False,
)
def run_action(run: ActionRun, store_root: str, launcher: str = "local",
               launcher_options: dict[str, Any] | None = None) -> dict[str, Any] | State:
    logger = get_run_logger()
    store = ArtifactStore(store_root)

    def launch(run: ActionRun) -> ActionResult:
        skill = load_skill(run.model)
        run = refresh_resume(skill, store, run)
        for key, fn in skill.actions[run.action].handoffs.items():
            if fn == "resume_model" and get_dotted(run.spec, key):
                logger.info("%s %s resumes from %s", run.model, run.action, get_dotted(run.spec, key))
        return launch_and_follow(run, launcher, launcher_options or {}, logger, store_root=store_root)

    result = cached_or_launched(run, store, launcher, launch, logger)
    if isinstance(result, State):
        return result  # Completed "Cached", carrying the stored result
    emit_action_event(run, result)
    if result.ok:
        return result.to_dict()
    detail = failure_detail(run, result)
    if result.failure_class == "infra":
        announce_retry(run, result)
        raise InfraFailure(detail)
    raise ActionFailed(detail)


def failure_detail(run: ActionRun, result: ActionResult) -> str:
    """One message for a failed action: model, action, failure class, TAO's message, the remedy and the log."""
    detail = f"{run.model} {run.action} failed ({result.failure_class}): {result.message or ''}".strip()
    if result.remedy:
        detail += f"\nRemedy: {result.remedy}"
    if result.products.get("log"):
        detail += f"\nLog: {result.products['log']}"
    return detail


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
        description=f"{run.model} {run.action}: {result.status}" + (" (EMULATED)" if result.emulated else "")
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
