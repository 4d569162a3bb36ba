"""Prefect events a TAO action emits, so automations and deployment pipelines can react to them.

- `tao.action.completed`: an action succeeded; payload: results URI, final and best KPIs, products, epochs,
  GPU-seconds, emulated/cached flags.
- `tao.action.failed`: an attempt failed; payload: failure class (infra | program | spec), remedy, message,
  the attempt number and whether another attempt follows (infrastructure failures are retried from the newest
  checkpoint until the task's retries run out).

The resource is the action run itself, `tao.action.<run_key>`, labelled with `tao.model`, `tao.action` and
`tao.run-key`, so an automation trigger can match `{"tao.model": "rtdetr", "tao.action": "trt_evaluate"}`.
(`tao.model.promoted|rejected`, from the registry's promotion gate, belong here too.)
"""

from __future__ import annotations

from typing import Any

from prefect.context import TaskRunContext
from prefect.events import emit_event

from taoflow.runs import ActionResult, ActionRun

ACTION_COMPLETED = "tao.action.completed"
ACTION_FAILED = "tao.action.failed"


def action_resource(run: ActionRun) -> dict[str, str]:
    return {
        "prefect.resource.id": f"tao.action.{run.run_key}",
        "prefect.resource.name": f"{run.model} {run.action}",
        "tao.model": run.model,
        "tao.action": run.action,
        "tao.run-key": run.run_key,
    }


def action_payload(result: ActionResult) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": result.model, "action": result.action, "run_key": result.run_key, "status": result.status,
        "results_uri": result.results_uri, "kpis_final": dict(result.kpis_final),
        "kpis_best": dict(result.kpis_best), "emulated": result.emulated, "cached": result.cached,
    }
    if result.ok:
        payload.update(products=dict(result.products), epochs_run=result.epochs_run, gpu_seconds=result.gpu_seconds)
    else:
        payload.update(failure_class=result.failure_class, remedy=result.remedy, message=result.message,
                       will_retry=result.failure_class == "infra" and _retries_left())
    context = TaskRunContext.get()
    if context is not None:
        payload["attempt"] = context.task_run.run_count
    return payload


def _retries_left() -> bool:
    """Whether the running task (run_action) will be retried after this attempt (True outside a task)."""
    context = TaskRunContext.get()
    if context is None:
        return True
    return context.task_run.run_count <= (context.task.retries or 0)


def emit_action_event(run: ActionRun, result: ActionResult) -> None:
    """`tao.action.completed` or `tao.action.failed` for one attempt's result (no-op without a Prefect API)."""
    emit_event(
        event=ACTION_COMPLETED if result.ok else ACTION_FAILED,
        resource=action_resource(run),
        payload=action_payload(result),
    )
