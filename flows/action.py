"""The action flow: one TAO action run inside a TAO-derived image on a GPU work pool.

The pipeline's work-pool launcher (tasks/workpool.py) creates one flow run of it per attempt; here the local
launcher runs TAO in the pod, uploads checkpoints to the store as they appear and writes `result.json`,
which the pipeline reads back. A failed TAO action is a Failed flow run whose message carries the failure
class and the remedy (the pipeline decides whether to launch another attempt). The pipeline's run_action
task shows the progress artifact, so this flow adds none."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.states import Failed, State

from taoflow.runs import ActionRun
from taoflow.store import ArtifactStore
from tasks.run_action import failure_detail, launch_and_follow


@flow(name="tao-action")
def tao_action(run: dict[str, Any], store_root: str) -> dict[str, Any] | State:
    action_run = ActionRun(**run)
    result = launch_and_follow(action_run, "local", {}, get_run_logger(), progress_artifact=False)
    ArtifactStore(store_root).write_result(action_run.results_uri, result)
    if not result.ok:
        return Failed(message=failure_detail(action_run, result))
    return result.to_dict()
