"""prefect.yaml against a real Prefect server: `prefect deploy --all` registers every deployment, and a
`tao-local` process worker runs the rtdetr pipeline deployment end to end on the emulator, its GPU steps
going through the work-pool launcher to the `tao-action` deployment."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterParentFlowRunId,
)

from taoflow.datasets import write_sample_data

REPO = Path(__file__).resolve().parents[1]


def _prefect(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "prefect", *args], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=timeout,
    )


def test_deploy_all_then_a_local_worker_runs_the_rtdetr_pipeline(tmp_path, prefect_server, prefect_api):
    env = {**os.environ, **prefect_server.env(), "TAOFLOW_REPO": str(REPO), "TAOFLOW_STORE": str(tmp_path / "store"),
           "TAOFLOW_EMULATOR_EPOCH_SECONDS": "0", "PREFECT_WORKER_QUERY_SECONDS": "1",
           "PREFECT_WORKER_PREFETCH_SECONDS": "1"}
    for pool, kind in (("tao-local", "process"), ("tao-controller", "kubernetes"), ("tao-a100", "kubernetes")):
        args = ["work-pool", "create", pool, "--type", kind, "--overwrite"]
        if kind == "kubernetes":
            args += ["--base-job-template", str(REPO / "infra" / "workpools" / f"{pool}.json")]
        created = _prefect(args, env)
        assert created.returncode == 0, created.stdout + created.stderr

    deployed = _prefect(["--no-prompt", "deploy", "--all"], env, timeout=300)
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    declared = {d["name"] for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]}
    with get_client(sync_client=True) as client:
        registered = {d.name for d in client.read_deployments()}
    assert declared <= registered, declared - registered

    write_sample_data("rtdetr", tmp_path / "data")
    params = {"params": {
        "datasets": {"train": str(tmp_path / "data" / "train"), "eval": str(tmp_path / "data" / "eval")},
        "num_classes": 5, "eval_class_ids": [1, 2, 3, 4], "store": str(tmp_path / "store"),
        "overrides": {"train": {"train.num_epochs": 3}},
        "launcher": {"name": "workpool", "emulate": True,
                     "options": {"deployment": "tao-action/tao-action-local", "poll_seconds": 1}},
    }}
    started = _prefect(["deployment", "run", "rtdetr-pipeline/rtdetr-local", "--params", json.dumps(params)], env)
    assert started.returncode == 0, started.stdout + started.stderr
    flow_run_id = UUID(re.search(r"UUID: ([0-9a-f-]{36})", started.stdout).group(1))

    worker = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "tao-local"], cwd=tmp_path, env=env,
        stdout=open(tmp_path / "worker.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        pipeline_run = _wait_for_final(flow_run_id, timeout=300)
    finally:
        worker.terminate()
        worker.wait(30)
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert pipeline_run.state.is_completed(), log[-3000:]
    with get_client(sync_client=True) as client:
        actions = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["tao-action"])),
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])),
        )
    names = sorted(run.name.rsplit("-", 1)[0] for run in actions if run.state.is_completed())
    assert names == sorted(f"rtdetr-{a}" for a in
                           ("train", "evaluate", "export", "quantize", "gen_trt_engine", "trt_evaluate"))
    assert (tmp_path / "store" / "runs" / "rtdetr" / "MODEL_CARD.md").is_file()


def _wait_for_final(flow_run_id: UUID, timeout: float):
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(flow_run_id)
            if run.state and run.state.is_final():
                return run
            time.sleep(1)
    raise AssertionError(f"flow run {flow_run_id} did not finish within {timeout} s")
