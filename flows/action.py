"""The action flow: one TAO action run inside a TAO-derived image on a GPU work pool.

The pipeline's work-pool launcher (tasks/workpool.py) starts it with `run_deployment`; here the local
launcher runs TAO in the pod, uploads checkpoints to the store as they appear and writes `result.json`,
which the pipeline reads back."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from taoflow.runs import ActionRun
from taoflow.store import ArtifactStore
from tasks.run_action import launch_and_follow


@flow(name="tao-action")
def tao_action(run: dict[str, Any], store_root: str) -> dict[str, Any]:
    action_run = ActionRun(**run)
    result = launch_and_follow(action_run, "local", {}, get_run_logger())
    ArtifactStore(store_root).write_result(action_run.results_uri, result)
    return result.to_dict()
