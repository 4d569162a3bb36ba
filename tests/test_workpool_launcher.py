"""The work-pool launcher against the session's real Prefect server (no worker: the attempts stay Scheduled,
which is what these checks need): per-action image role and GPU job variables, GPU slots of the pool's global
concurrency limit counted in GPUs and freed on cancel, attaching to a live attempt, and the preflight refusal
of a local store with a Kubernetes pool."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, WorkPoolCreate

from taoflow.errors import UserError
from taoflow.runs import ActionRun
from taoflow.skill import load_skill
from tasks.preflight import check_launcher_reaches_store
from tasks.workpool import CPU_JOB_VARIABLES, WorkPoolLauncher

TEMPLATE = json.loads((Path(__file__).resolve().parents[1] / "infra" / "workpools" / "tao-a100.json").read_text())


@pytest.fixture()
def gpu_deployment(prefect_api):
    """A kubernetes pool with the tao-a100 template, a tao-action deployment on it, and `gpus:<pool>` = 4."""
    pool = f"gpu-{uuid.uuid4().hex[:6]}"
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name=pool, type="kubernetes", base_job_template=TEMPLATE))
        flow_id = client.create_flow_from_name("tao-action")
        client.create_deployment(flow_id=flow_id, name=pool, work_pool_name=pool,
                                 entrypoint="flows/action.py:tao_action")
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=f"gpus:{pool}", limit=4))
    return pool


def _run(action: str, gpus: int, key: str | None = None) -> ActionRun:
    skill = load_skill("rtdetr")
    key = key or uuid.uuid4().hex[:20]
    return ActionRun(model="rtdetr", action=action, spec={}, image=skill.image_for(action), run_key=key,
                     results_uri=f"s3://bucket/runs/rtdetr/{key}/{action}", gpus=gpus)


def _slots(pool: str) -> int:
    with get_client(sync_client=True) as client:
        return client.read_global_concurrency_limit_by_name(f"gpus:{pool}").active_slots


def _job_variables(flow_run_id) -> dict:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id).job_variables


def test_gpu_slots_count_gpus_and_each_action_gets_its_image_role(gpu_deployment, tmp_path):
    launcher = WorkPoolLauncher(str(tmp_path), deployment=f"tao-action/{gpu_deployment}",
                                images={"pyt": "reg/tao-flows:pyt", "deploy": "reg/tao-flows:deploy"})
    train = launcher.submit(_run("train", gpus=3))
    assert _slots(gpu_deployment) == 3
    assert _job_variables(train.flow_run_id) == {"image": "reg/tao-flows:pyt", "gpus": 3}

    engine = launcher.submit(_run("gen_trt_engine", gpus=1))
    assert _slots(gpu_deployment) == 4
    assert _job_variables(engine.flow_run_id)["image"] == "reg/tao-flows:deploy"

    with pytest.raises(UserError, match="allows 4"):
        launcher.submit(_run("train", gpus=8))

    launcher.cancel(engine)
    launcher.cancel(train)
    assert _slots(gpu_deployment) == 0


def test_a_cpu_action_asks_for_no_gpu_and_holds_no_slot(gpu_deployment, tmp_path):
    launcher = WorkPoolLauncher(str(tmp_path), deployment=f"tao-action/{gpu_deployment}")
    run = _run("export", gpus=0)
    handle = launcher.submit(run)
    assert _slots(gpu_deployment) == 0
    assert _job_variables(handle.flow_run_id) == {"image": run.image, "gpus": 0, **CPU_JOB_VARIABLES}
    launcher.cancel(handle)


def test_a_live_attempt_is_attached_to_and_an_ended_one_is_followed_by_a_new_attempt(gpu_deployment, tmp_path):
    launcher = WorkPoolLauncher(str(tmp_path), deployment=f"tao-action/{gpu_deployment}")
    run = _run("train", gpus=1)
    first = launcher.submit(run)
    again = launcher.submit(run)
    assert again.flow_run_id == first.flow_run_id and again.attempt == 1
    launcher.cancel(first)
    with get_client(sync_client=True) as client:
        from prefect.states import Cancelled

        client.set_flow_run_state(first.flow_run_id, Cancelled(), force=True)
    second = launcher.submit(run)
    assert second.flow_run_id != first.flow_run_id and second.attempt == 2
    launcher.cancel(second)
    assert _slots(gpu_deployment) == 0


def test_a_prune_that_lands_after_the_attempt_ended_leaves_it_as_it_ended(gpu_deployment, tmp_path):
    """A pruned trial is cancelled by setting its attempt Cancelling. If the attempt finished first (short
    epochs), that must not reopen it: a Completed run forced into Cancelling has no process left to stop, so
    only the server's clean-up (minutes) would end it, and the sweep would hold the trial's place till then.
    The server's own rules refuse the late Cancelling; a live attempt still takes it."""
    from prefect.states import Completed, Running

    launcher = WorkPoolLauncher(str(tmp_path), deployment=f"tao-action/{gpu_deployment}", poll_seconds=0.01)
    ended, live = launcher.submit(_run("train", gpus=1)), launcher.submit(_run("train", gpus=1))
    with get_client(sync_client=True) as client:
        client.set_flow_run_state(ended.flow_run_id, Completed(), force=True)  # as its worker's run would end
        client.set_flow_run_state(live.flow_run_id, Running(), force=True)
    launcher.cancel(ended)
    launcher.cancel(live)
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(ended.flow_run_id).state.is_completed()
        assert client.read_flow_run(live.flow_run_id).state.name == "Cancelling"
    assert [type(e).__name__ for e in launcher.events(ended)][-1] == "Finished"  # not waiting on a clean-up
    assert _slots(gpu_deployment) == 0


def test_a_local_store_is_refused_for_a_kubernetes_pool_and_an_empty_store_everywhere(gpu_deployment, tmp_path,
                                                                                      monkeypatch):
    options = {"deployment": f"tao-action/{gpu_deployment}"}
    with pytest.raises(UserError, match="pods cannot see it"):
        check_launcher_reaches_store("workpool", options, str(tmp_path), None)
    check_launcher_reaches_store("workpool", options, "s3://bucket/tao-flows", None)
    with pytest.raises(UserError, match="store_pvc"):
        check_launcher_reaches_store("kubernetes", {}, str(tmp_path), None)
    check_launcher_reaches_store("kubernetes", {"store_pvc": "tao-store"}, str(tmp_path), None)
    with pytest.raises(UserError, match="does not exist"):
        check_launcher_reaches_store("workpool", {"deployment": "tao-action/nowhere"}, str(tmp_path), None)
    monkeypatch.setenv("TAOFLOW_STORE", "")
    with pytest.raises(UserError, match="TAOFLOW_STORE is empty"):
        check_launcher_reaches_store("local", {}, str(tmp_path), None)
    check_launcher_reaches_store("local", {}, str(tmp_path), str(tmp_path))  # the `store` parameter wins
