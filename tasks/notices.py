"""Telling whoever follows a run that an action is being retried, and why (the live board prints it)."""

from __future__ import annotations

from prefect import get_run_logger
from prefect.context import TaskRunContext

from taoflow.launchers.base import Retrying
from taoflow.runs import ActionResult, ActionRun
from tasks.progress import publish


def announce_retry(run: ActionRun, result: ActionResult) -> None:
    """Publish `Retrying` when this infrastructure failure leaves the task another attempt."""
    ctx = TaskRunContext.get()
    if ctx is None:
        return
    attempt, max_attempts = ctx.task_run.run_count, ctx.task.retries + 1
    if attempt >= max_attempts:
        return
    reason = (result.message or result.status).strip()
    get_run_logger().warning("%s %s: attempt %d/%d failed (%s); retrying from the newest checkpoint",
                             run.model, run.action, attempt, max_attempts, reason)
    publish(run, Retrying(attempt=attempt, max_attempts=max_attempts, reason=reason, remedy=result.remedy))
