"""Prefect events a TAO action emits, so automations and deployment pipelines can react to them.

- `tao.action.completed`: an action succeeded; payload: results URI, final and best KPIs, products, epochs,
  GPU-seconds, emulated/cached flags.
- `tao.action.failed`: an attempt failed; payload: failure class (infra | program | spec), remedy, message,
  the attempt number and whether another attempt follows (infrastructure failures are retried from the newest
  checkpoint until the task's retries run out).

The resource is the action run itself, `tao.action.<run_key>`, labelled with `tao.model`, `tao.action` and
`tao.run-key`, so an automation trigger can match `{"tao.model": "rtdetr", "tao.action": "trt_evaluate"}`.

The promotion gate (tasks/promotion.py) emits, once per decision of a pipeline run:
- `tao.model.promoted`: the challenger is the new champion of a registry name (`rtdetr/prod`);
- `tao.model.rejected`: it is not (a rejection is not a failure: the champion stays).
Their resource is the registry name, `tao.model.<model>.<name>`, labelled `tao.model` and `tao.registry-name`,
so a deployment trigger matches `{"prefect.resource.id": "tao.model.*", "tao.registry-name": "prod"}`. The
payload has the model, the name, `engine` (the champion's engine after the decision: the one to deploy), the
challenger's KPIs and engine, every check with its numbers (`decision`), the reasons and the registry event's
`seq`. Delivery is at least once: re-running a promotion that was already recorded emits its event again with
`recorded: false` and the same Prefect event id (the registry event's), so deploy by engine URI, idempotently.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect.context import TaskRunContext
from prefect.events import emit_event

from taoflow.runs import ActionResult, ActionRun

ACTION_COMPLETED = "tao.action.completed"
ACTION_FAILED = "tao.action.failed"
MODEL_PROMOTED = "tao.model.promoted"
MODEL_REJECTED = "tao.model.rejected"


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


def model_resource(model: str, name: str) -> dict[str, str]:
    return {
        "prefect.resource.id": f"tao.model.{model}.{name}",
        "prefect.resource.name": f"{model}/{name}",
        "tao.model": model,
        "tao.registry-name": name,
    }


def emit_promotion_event(promotion: dict[str, Any], challenger: dict[str, Any]) -> None:
    """`tao.model.promoted` or `tao.model.rejected` for one promotion (tasks/promotion.py's summary and the
    challenger's record); no-op without a Prefect API."""
    payload = {
        "model": promotion["model"], "name": promotion["name"], "engine": promotion["engine"],
        "deployable": promotion["deployable"], "champion": promotion["champion"],
        "challenger": {key: challenger.get(key) for key in (
            "checkpoint", "onnx", "engine", "precision", "engine_bytes", "kpis_pytorch", "kpis_tensorrt",
            "run_keys", "ptm", "emulated")} | {"version": promotion["challenger"]},
        "reasons": promotion["reasons"], "decision": promotion["decision"], "seq": promotion["seq"],
        "recorded": promotion["recorded"], "registry": promotion.get("registry"),
    }
    event_id = promotion.get("event_id")
    emit_event(
        event=MODEL_PROMOTED if promotion["promoted"] else MODEL_REJECTED,
        resource=model_resource(promotion["model"], promotion["name"]),
        payload=payload,
        id=UUID(hex=event_id) if event_id else None,
    )
