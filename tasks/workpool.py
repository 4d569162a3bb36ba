"""Work-pool launcher: runs an ActionRun as a flow run of the `tao-action` deployment on a (GPU) work pool.

The pool's pods run a TAO-derived image (infra/docker/) where the local launcher runs TAO itself; the action
flow (flows/action.py) ends Failed when TAO fails, after writing `result.json` to the store.

- Attempts: every submission of a run whose earlier attempts all ended is a *new* flow run (idempotency key
  `<run_key>-attempt-<n>`), so a retry after an infrastructure failure really relaunches and resumes from
  the newest checkpoint. A submission while an attempt is still live attaches to it (two controllers, or a
  restarted one, never run the same attempt twice). Each attempt is linked to the calling flow run through
  a task run of its own whose state follows the attempt's final state (none is left Pending).
- Images and GPUs: the job variables the pool declares get the action's image (its role: pyt, deploy,
  data-services) and its GPU count — 0 for CPU-only actions, which then also drop the GPU node selector.
- GPU concurrency: while an attempt is live it holds `run.gpus` slots of the global concurrency limit
  `gpus:<pool>` (create it with the pool's GPU count; absent, nothing is bounded). Pipelines and AutoML
  sweeps share it; slots are leases, so a killed controller's slots lapse.
- Following: progress from the run's status.json in the store, the attempt's state from the API, polled
  with an adaptive back-off (fast at first and whenever progress moves, up to `max_poll_seconds`), so 64
  GPU jobs cost a few requests a second, not 32.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from prefect import Task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter, FlowRunFilterTags
from prefect.client.schemas.objects import TaskRunResult, WorkPool
from prefect.concurrency.sync import concurrency
from prefect.context import FlowRunContext, TaskRunContext
from prefect.exceptions import ObjectNotFound
from prefect.states import Cancelling, Pending, State

from taoflow.errors import UserError
from taoflow.launchers.base import EpochProgress, Event, Finished
from taoflow.runs import ActionResult, ActionRun
from taoflow.skill import load_skill
from taoflow.status import parse_status_lines, progress_from_record
from taoflow.store import ArtifactStore

DEFAULT_DEPLOYMENT = "tao-action/tao-action-a100"
DEPLOYMENT_ENV = "TAOFLOW_ACTION_DEPLOYMENT"  # set by the controller pool / deployment (prefect.yaml)
RUN_KEY_TAG = "tao-run-key:"
GPU_LIMIT_PREFIX = "gpus:"
# What a CPU-only action sets instead of the GPU pool's defaults (when the pool declares these variables).
CPU_JOB_VARIABLES = {"node_selector": {}, "tolerations": []}


def action_deployment(options: dict[str, Any] | None = None) -> str:
    """The `tao-action` deployment GPU steps go to: the launcher option, else the deployment's environment."""
    return (options or {}).get("deployment") or os.environ.get(DEPLOYMENT_ENV) or DEFAULT_DEPLOYMENT


def deployment_pool(deployment: str) -> WorkPool:
    """The work pool of a deployment, or a UserError saying how to create either."""
    return _deployment_and_pool(deployment)[1]


def _deployment_and_pool(deployment: str):
    with get_client(sync_client=True) as client:
        try:
            found = client.read_deployment_by_name(deployment)
        except ObjectNotFound:
            raise UserError(f"the action deployment {deployment!r} does not exist on this Prefect server: create "
                            "the work pools and run `prefect --no-prompt deploy --all` (infra/README.md)") from None
        if not found.work_pool_name:
            raise UserError(f"the action deployment {deployment!r} has no work pool")
        try:
            return found, client.read_work_pool(found.work_pool_name)
        except ObjectNotFound:
            raise UserError(f"work pool {found.work_pool_name!r} of {deployment!r} does not exist: "
                            "create it (infra/README.md)") from None


@dataclass
class WorkPoolHandle:
    run: ActionRun
    flow_run_id: UUID
    wrapper_task_run_id: UUID | None = None
    attempt: int = 1
    seen_lines: int = 0
    slots: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    final_state: State | None = None


class WorkPoolLauncher:
    name = "workpool"

    def __init__(self, store_root: str, deployment: str | None = None, poll_seconds: float = 1.0,
                 max_poll_seconds: float = 30.0, job_variables: dict[str, Any] | None = None,
                 images: dict[str, str] | None = None, gpu_limit: str | None = None) -> None:
        self.store = ArtifactStore(store_root)
        self.deployment = action_deployment({"deployment": deployment})
        self.poll_seconds = float(poll_seconds)
        self.max_poll_seconds = max(float(max_poll_seconds), self.poll_seconds)
        self.job_variables = dict(job_variables or {})
        self.images = dict(images or {})  # role → image, else the run's image
        self.gpu_limit = gpu_limit

    # --------------------------------------------------------------------------------------- submit

    def submit(self, run: ActionRun) -> WorkPoolHandle:
        deployment, pool = _deployment_and_pool(self.deployment)
        live, attempts = self._attempts(deployment.id, run)
        if live is not None:
            return WorkPoolHandle(run=run, flow_run_id=live.id, attempt=attempts)
        handle = WorkPoolHandle(run=run, flow_run_id=UUID(int=0), attempt=attempts + 1)
        if run.gpus:
            handle.slots.enter_context(self._gpu_slots(pool, run))
        try:
            self._create_attempt(handle, deployment, pool)
        except BaseException:
            handle.slots.close()
            raise
        return handle

    def _attempts(self, deployment_id: UUID, run: ActionRun):
        """(a live attempt or None, how many attempts this run has had)."""
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
                flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[RUN_KEY_TAG + run.run_key])),
            )
        live = [r for r in runs if r.state is None or not r.state.is_final()]
        return (live[0] if live else None), len(runs)

    def _gpu_slots(self, pool: WorkPool, run: ActionRun):
        name = self.gpu_limit or GPU_LIMIT_PREFIX + pool.name
        with get_client(sync_client=True) as client:
            try:
                limit = client.read_global_concurrency_limit_by_name(name)
            except ObjectNotFound:
                limit = None
        if limit is not None and limit.active and limit.limit < run.gpus:
            raise UserError(f"{run.model} {run.action} needs {run.gpus} GPUs but the concurrency limit {name!r} "
                            f"allows {limit.limit}: lower gpus or raise the limit (`prefect gcl update {name} "
                            f"--limit N`)")
        return concurrency(name, occupy=run.gpus, strict=False)

    def _job_variables(self, pool: WorkPool, run: ActionRun) -> dict[str, Any]:
        declared = set(((pool.base_job_template or {}).get("variables") or {}).get("properties") or {})
        role = load_skill(run.model).action(run.action).image.value
        wanted: dict[str, Any] = {"image": self.images.get(role) or run.image, "gpus": run.gpus}
        if not run.gpus:
            wanted.update(CPU_JOB_VARIABLES)
        return {**{k: v for k, v in wanted.items() if k in declared}, **self.job_variables}

    def _create_attempt(self, handle: WorkPoolHandle, deployment, pool: WorkPool) -> None:
        run = handle.run
        parameters = {"run": run.to_dict(), "store_root": self.store.root}
        tags = [run.model, run.action, RUN_KEY_TAG + run.run_key]
        key = f"{run.run_key}-attempt-{handle.attempt}"
        with get_client(sync_client=True) as client:
            wrapper = _wrapper_task_run(client, self.deployment, key, name=f"{run.model}-{run.action}-attempt-{handle.attempt}")
            flow_run = client.create_flow_run_from_deployment(
                deployment.id, parameters=parameters, name=f"{run.model}-{run.action}-{run.run_key[:8]}-{handle.attempt}",
                tags=tags, idempotency_key=key, parent_task_run_id=wrapper,
                job_variables=self._job_variables(pool, run),
            )
            if wrapper is not None and flow_run.parent_task_run_id != wrapper:
                client.delete_task_run(wrapper)  # another controller created this attempt first
                wrapper = None
        handle.flow_run_id, handle.wrapper_task_run_id = flow_run.id, wrapper

    # --------------------------------------------------------------------------------------- follow

    def _state(self, handle: WorkPoolHandle) -> State | None:
        with get_client(sync_client=True) as client:
            return client.read_flow_run(handle.flow_run_id).state

    def events(self, handle: WorkPoolHandle) -> Iterator[Event]:
        status_uri = self.store.join(handle.run.results_uri, "status.json")
        delay = self.poll_seconds
        while True:
            state = self._state(handle)
            moved = False
            for event in self._new_progress(handle, status_uri):
                moved = True
                yield event
            if state is not None and state.is_final():
                self._finish(handle, state)
                yield Finished(status="SUCCESS" if state.is_completed() else "FAILURE", message=state.message or "")
                return
            delay = self.poll_seconds if moved else min(delay * 1.5, self.max_poll_seconds)
            time.sleep(delay)

    def _new_progress(self, handle: WorkPoolHandle, status_uri: str) -> Iterator[Event]:
        try:
            lines = self.store.read_text(status_uri).splitlines()
        except FileNotFoundError:
            return
        if len(lines) < handle.seen_lines:
            handle.seen_lines = 0  # a new attempt rewrote the file
        for record in parse_status_lines(lines[handle.seen_lines:]):
            progress = progress_from_record(record)
            if isinstance(progress, EpochProgress):
                yield progress
        handle.seen_lines = len(lines)

    def _finish(self, handle: WorkPoolHandle, state: State) -> None:
        """The attempt ended: free its GPU slots, and give its wrapper task run the attempt's final state."""
        if handle.final_state is not None:
            return
        handle.final_state = state
        handle.slots.close()
        if handle.wrapper_task_run_id is not None:
            mirrored = State(type=state.type, name=state.name, message=state.message)
            with get_client(sync_client=True) as client:
                client.set_task_run_state(handle.wrapper_task_run_id, mirrored, force=True)

    def cancel(self, handle: WorkPoolHandle) -> None:
        """Ask the attempt's worker to stop it. Not forced: the server refuses Cancelling for an attempt that
        already ended, which a forced state would reopen with no process left to stop it."""
        try:
            with get_client(sync_client=True) as client:
                client.set_flow_run_state(handle.flow_run_id, Cancelling())
        finally:
            handle.slots.close()

    def result(self, handle: WorkPoolHandle) -> ActionResult:
        delay = self.poll_seconds
        while not (state := self._state(handle)) or not state.is_final():
            time.sleep(delay)
            delay = min(delay * 1.5, self.max_poll_seconds)
        self._finish(handle, state)
        stored = self.store.read_result(handle.run.results_uri)
        if stored is not None and stored.run_key == handle.run.run_key and (stored.ok or not state.is_completed()):
            return stored
        run = handle.run
        return ActionResult(
            model=run.model, action=run.action, run_key=run.run_key, status="FAILURE",
            results_uri=run.results_uri, failure_class="infra",
            remedy="retried from the newest checkpoint (a new attempt).",
            message=f"action flow run ended {state.name} without a result (pod lost?): {state.message or ''}",
        )


def _wrapper_task_run(client, deployment_name: str, attempt_key: str, name: str) -> UUID | None:
    """The task run in the calling flow run that stands for the attempt (as `run_deployment` makes one, but
    ours gets the attempt's final state instead of staying Pending forever)."""
    flow_ctx, task_ctx = FlowRunContext.get(), TaskRunContext.get()
    if flow_ctx is None and task_ctx is None:
        return None
    wrapper = Task(name=deployment_name, fn=lambda: None)
    wrapper.task_key = f"tasks.workpool.{deployment_name.replace('/', '-')}"
    flow_run_id = flow_ctx.flow_run.id if flow_ctx and flow_ctx.flow_run else task_ctx.task_run.flow_run_id
    inputs = {"__parents__": [TaskRunResult(id=task_ctx.task_run.id)]} if task_ctx else {}
    created = client.create_task_run(task=wrapper, flow_run_id=flow_run_id, dynamic_key=attempt_key, name=name,
                                     task_inputs=inputs, state=Pending())
    return created.id
