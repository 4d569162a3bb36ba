"""Deployment checks a pipeline makes before anything runs: can the GPU steps reach the artifact store, and is
the store the deployment meant to give the flow run really there. Both fail on the CPU, before any GPU time,
with what to do."""

from __future__ import annotations

import os
from typing import Any

from prefect.client.orchestration import get_client
from prefect.context import FlowRunContext

from taoflow.errors import UserError
from taoflow.k8s import is_remote

STORE_ENV = "TAOFLOW_STORE"
STORE_VARIABLE = "taoflow_store"  # the Prefect variable prefect.yaml reads it from


def check_store_is_set(requested_store: str | None) -> None:
    """`TAOFLOW_STORE` present but empty means the deployment was made without its store (the Prefect variable
    was not set): every pod would write to its own disk, and the controller would never see the results."""
    if requested_store or STORE_ENV not in os.environ or os.environ[STORE_ENV].strip():
        return
    raise UserError(
        f"{STORE_ENV} is empty in this flow run's environment: the deployment was made without an artifact store, "
        "so every pod would keep its results on its own disk. Set the store and deploy again "
        f"(`prefect variable set {STORE_VARIABLE} s3://BUCKET/tao-flows`, then `prefect --no-prompt deploy --all`), "
        "or pass the `store` parameter."
    )


def check_launcher_reaches_store(launcher: str, options: dict[str, Any], store_root: str,
                                 requested_store: str | None) -> None:
    """A store on this machine's disk is invisible to a Kubernetes pod (unless it is on a mounted PVC) and to a
    work pool that is not a process pool on this machine."""
    check_store_is_set(requested_store)
    if is_remote(store_root):
        return
    if launcher == "kubernetes" and not options.get("store_pvc"):
        raise UserError(
            f"the artifact store {store_root} is a local folder, but the kubernetes launcher runs TAO in pods that "
            "cannot see it. Use an s3:// store (--store / TAOFLOW_STORE), or mount it with the launcher option "
            "store_pvc=<claim>."
        )
    if launcher == "workpool":
        from tasks.workpool import action_deployment, deployment_pool

        deployment = action_deployment(options)
        pool = deployment_pool(deployment)
        if pool.type != "process":
            raise UserError(
                f"the artifact store {store_root} is a local folder, but GPU steps run on the {pool.type} work pool "
                f"{pool.name!r} (deployment {deployment}), whose pods cannot see it. Use an s3:// store "
                f"(`prefect variable set {STORE_VARIABLE} s3://BUCKET/tao-flows` and redeploy, or the `store` "
                "parameter)."
            )


def tag_flow_run(*tags: str) -> None:
    """Add tags (the model) to the running flow run, so the UI filters pipelines by model whoever started them."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return
    current = list(context.flow_run.tags or [])
    wanted = current + [t for t in tags if t not in current]
    if wanted != current:
        with get_client(sync_client=True) as client:
            client.update_flow_run(context.flow_run.id, tags=wanted)
