"""Work-pool launcher: runs an ActionRun as a flow run of the `tao-action` deployment on a GPU work pool.

The pool's pods run a TAO-derived image (infra/docker/) where the local launcher runs TAO itself. The
flow run's idempotency key is the run key, so submitting the same run twice attaches to the first.
Progress comes from the run's status.json in the store; the result from its result.json.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.states import Cancelling

from taoflow.launchers.base import EpochProgress, Event, Finished
from taoflow.runs import ActionResult, ActionRun
from taoflow.status import parse_status_lines, progress_from_record
from taoflow.store import ArtifactStore

DEFAULT_DEPLOYMENT = "tao-action/tao-action-a100"


@dataclass
class WorkPoolHandle:
    run: ActionRun
    flow_run_id: UUID
    seen_lines: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


class WorkPoolLauncher:
    name = "workpool"

    def __init__(self, store_root: str, deployment: str = DEFAULT_DEPLOYMENT, poll_seconds: float = 2.0,
                 job_variables: dict[str, Any] | None = None) -> None:
        self.store = ArtifactStore(store_root)
        self.deployment = deployment
        self.poll_seconds = poll_seconds
        self.job_variables = job_variables or {}

    def submit(self, run: ActionRun) -> WorkPoolHandle:
        flow_run = run_deployment(
            self.deployment,
            parameters={"run": run.to_dict(), "store_root": self.store.root},
            timeout=0,
            idempotency_key=run.run_key,
            flow_run_name=f"{run.model}-{run.action}-{run.run_key[:8]}",
            job_variables={"gpus": run.gpus, **self.job_variables} if run.gpus else self.job_variables,
        )
        return WorkPoolHandle(run=run, flow_run_id=flow_run.id)

    def _state(self, handle: WorkPoolHandle):
        with get_client(sync_client=True) as client:
            return client.read_flow_run(handle.flow_run_id).state

    def events(self, handle: WorkPoolHandle) -> Iterator[Event]:
        status_uri = self.store.join(handle.run.results_uri, "status.json")
        while True:
            state = self._state(handle)
            yield from self._new_progress(handle, status_uri)
            if state is not None and state.is_final():
                yield Finished(status="SUCCESS" if state.is_completed() else "FAILURE",
                               message=state.message or "")
                return
            time.sleep(self.poll_seconds)

    def _new_progress(self, handle: WorkPoolHandle, status_uri: str) -> Iterator[Event]:
        try:
            lines = self.store.read_text(status_uri).splitlines()
        except FileNotFoundError:
            return
        for record in parse_status_lines(lines[handle.seen_lines:]):
            progress = progress_from_record(record)
            if isinstance(progress, EpochProgress):
                yield progress
        handle.seen_lines = len(lines)

    def cancel(self, handle: WorkPoolHandle) -> None:
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(handle.flow_run_id, Cancelling(), force=True)

    def result(self, handle: WorkPoolHandle) -> ActionResult:
        while not (state := self._state(handle)) or not state.is_final():
            time.sleep(self.poll_seconds)
        stored = self.store.read_result(handle.run.results_uri)
        if stored is not None and stored.run_key == handle.run.run_key:
            return stored
        run = handle.run
        return ActionResult(
            model=run.model, action=run.action, run_key=run.run_key, status="FAILURE",
            results_uri=run.results_uri, failure_class="infra",
            message=f"action flow run ended {state.name} without a result (pod lost?): {state.message or ''}",
        )
