"""prefect.yaml against a real Prefect server and a real `prefect worker`:

- `prefect deploy --all` registers every deployment, with dataset URIs from Prefect variables and the
  retraining concurrency limit; a `tao-local` process worker runs the rtdetr pipeline started with only its
  datasets and class count — the work-pool launcher comes from the deployment's environment — through an OOM
  at epoch 2 (`TAOFLOW_EMULATOR_FAULT=oom@epoch:2`): the train attempt's action flow run ends Failed with the
  failure class and remedy, a new attempt resumes from the newest checkpoint, the pipeline ends Completed,
  no task run is left Pending, and the server received the `tao.action.*` events.
- The same deployment run with the model's default train action policy sweeps: each AutoML trial is an
  action flow run on the pool, and evaluate gets the best trial's checkpoint.
- On a server *with* its scheduler (SQLAlchemy < 2.1), an operator-created schedule of a retraining
  deployment creates runs, and a redeploy keeps it (same id, same enabled or paused state).

Every wait is on a state the server reports (with a generous deadline as a safety net), and every process a
test starts is stopped with all its descendants."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from uuid import UUID

import optuna
import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    DeploymentFilter,
    DeploymentFilterName,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
)
from prefect.events.filters import EventFilter, EventNameFilter

from taoflow.datasets import write_sample_data
from tests.prefect_server import PrefectServer
from tests.processes import stop_tree

REPO = Path(__file__).resolve().parents[1]
DEADLINE = 600  # a safety net on a loaded machine; every wait ends as soon as the server reports the state


def _prefect(args: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "prefect", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def _wait_for(what: str, check: Callable[[], object], timeout: float = DEADLINE, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
    raise AssertionError(f"gave up waiting for {what}\n{tail}")


@pytest.fixture()
def workers(tmp_path):
    """Start `prefect worker start --pool P` processes; at teardown stop each with every descendant."""
    started: list[subprocess.Popen] = []

    def start(pool: str, env: dict[str, str]) -> Path:
        log = tmp_path / f"worker-{pool}-{len(started)}.log"
        started.append(subprocess.Popen(
            [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool], cwd=tmp_path, env=env,
            stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True,
        ))
        return log

    yield start
    # SIGINT: how `prefect worker start` is stopped by hand (Ctrl-C); it sits out SIGTERM until the timeout.
    left = [pid for process in started for pid in stop_tree(process, first=signal.SIGINT)]
    assert not left, f"processes left behind: {left}"


def _create_pools(env: dict[str, str]) -> None:
    _prefect(["work-pool", "create", "tao-local", "--type", "process", "--overwrite"], env)
    for pool in ("tao-controller", "tao-a100"):
        _prefect(["work-pool", "create", pool, "--type", "kubernetes", "--overwrite",
                  "--base-job-template", str(REPO / "infra" / "workpools" / f"{pool}.json")], env)


def _deploy_everything(tmp_path: Path, prefect_server: PrefectServer, **extra_env: str
                       ) -> tuple[dict[str, str], dict[str, str], Path]:
    """Pools, variables and `prefect deploy --all` for the rtdetr sample data: (env, datasets, store)."""
    store, data = tmp_path / "store", tmp_path / "data"
    write_sample_data("rtdetr", data)
    datasets = {"train": str(data / "train"), "eval": str(data / "eval")}
    env = {**os.environ, **prefect_server.env(), "TAOFLOW_REPO": str(REPO), "TAOFLOW_STORE": str(store),
           "TAOFLOW_HOME": str(tmp_path / "home"), "TAOFLOW_EMULATOR_EPOCH_SECONDS": "0",
           "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "1", **extra_env}
    _create_pools(env)
    _prefect(["variable", "set", "taoflow_store", "s3://tao-bucket/tao-flows", "--overwrite"], env)
    for role, uri in datasets.items():
        _prefect(["variable", "set", f"rtdetr_{role}_data", uri, "--overwrite"], env)
    _prefect(["--no-prompt", "deploy", "--all"], env)
    return env, datasets, store


def test_work_pool_pipeline_survives_an_oom_at_epoch_2_and_resumes(tmp_path, prefect_server, prefect_api, workers):
    env, datasets, store = _deploy_everything(tmp_path, prefect_server, TAOFLOW_EMULATOR_FAULT="oom@epoch:2")

    declared = {d["name"] for d in yaml.safe_load((REPO / "prefect.yaml").read_text())["deployments"]}
    with get_client(sync_client=True) as client:
        registered = {d.name: d for d in client.read_deployments()}
        assert declared <= set(registered), declared - set(registered)
        cluster = registered["rtdetr"]
        assert cluster.parameters == {"datasets": datasets, "num_classes": 5, "eval_class_ids": [1, 2, 3, 4]}
        unset = registered["centerpose"].parameters["datasets"]  # variables not set: deployed, caught in preflight
        assert unset == {"train": "", "eval": "", "calibration": ""}
        assert cluster.job_variables["env"]["TAOFLOW_STORE"] == "s3://tao-bucket/tao-flows"
        assert cluster.job_variables["env"]["TAOFLOW_LAUNCHER"] == "workpool"
        retrain = registered["rtdetr-retrain"]
        assert retrain.global_concurrency_limit.limit == 1
        assert retrain.concurrency_options.collision_strategy.value == "CANCEL_NEW"
        assert set(retrain.tags) == {"rtdetr", "retrain"}
        assert retrain.parameters == {**cluster.parameters, "promote": "prod"}, "retraining ends with the gate"
        schema = cluster.parameter_openapi_schema["properties"]
        assert list(schema)[:4] == ["datasets", "num_classes", "eval_class_ids", "actions"]

    # Only the datasets and the class count: where GPU steps run comes from the deployment, not the caller.
    # (And train directly: this is a direct train's retry through the pool; a sweep's trials resume after an
    # infrastructure failure too, tests/test_automl_flow.py.)
    started = _prefect(["deployment", "run", "rtdetr-pipeline/rtdetr-local", "--params",
                        json.dumps({"datasets": datasets, "num_classes": 5, "automl_policy": "off"})], env)
    flow_run_id = UUID(started.stdout.split("UUID:")[1].split()[0])
    log = workers("tao-local", env)
    with get_client(sync_client=True) as client:
        pipeline = _wait_for("the pipeline to finish",
                             lambda: _final(client.read_flow_run(flow_run_id)), log=log)
        assert pipeline.state.is_completed(), log.read_text(errors="replace")[-3000:]
        assert pipeline.name.startswith("rtdetr-20") and "rtdetr" in pipeline.tags

        actions = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])))
        train = sorted((r for r in actions if "train" in r.tags), key=lambda r: r.created)
        assert [r.state.type.value for r in train] == ["FAILED", "COMPLETED"], [r.state for r in train]
        failed = train[0].state.message
        assert "rtdetr train failed (infra)" in failed and "Remedy:" in failed
        resumed = train[1].parameters["run"]["spec"]["train"]["resume_training_checkpoint_path"]
        assert Path(resumed).name == "model_epoch_001.pth", "resumed from the newest checkpoint (RT-DETR: epoch-only names)"
        assert {r.state.type.value for r in actions} == {"COMPLETED", "FAILED"}
        expected = {"train", "evaluate", "export", "quantize", "gen_trt_engine", "trt_evaluate"}
        assert {t for r in actions if r.state.is_completed() for t in r.tags} & expected == expected

        # No task run of the pipeline is left Pending: each attempt's stand-in task run took its final state.
        task_runs = _wait_for("every task run to be final", lambda: _all_final(client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))))
        wrappers = {t.name: t.state.type.value for t in task_runs if "-attempt-" in t.name}
        assert len(wrappers) == len(actions), wrappers
        assert (wrappers["rtdetr-train-attempt-1"], wrappers["rtdetr-train-attempt-2"]) == ("FAILED", "COMPLETED")

        # One progress artifact per action, the pipeline's: the action flow runs publish none.
        in_actions = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[r.id for r in actions])))
        assert [a.key for a in in_actions] == []
        published = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
        keys = {a.key for a in published}
        assert {"rtdetr-train-progress", "rtdetr-train-results", "rtdetr-model-card"} <= keys, keys

        run_key = train[1].parameters["run"]["run_key"]
        events = _wait_for("the tao.action events of train", lambda: _action_events(client, run_key, 2))
        names = sorted(e.event for e in events)
        assert names == ["tao.action.completed", "tao.action.failed"]
        completed = next(e for e in events if e.event == "tao.action.completed")
        assert completed.resource["tao.model"] == "rtdetr" and completed.resource["tao.action"] == "train"
        assert completed.payload["kpis_best"] and completed.payload["results_uri"].startswith(str(store))
        failure = next(e for e in events if e.event == "tao.action.failed").payload
        assert failure["failure_class"] == "infra" and failure["will_retry"] is True and failure["attempt"] == 1
        assert completed.payload["attempt"] == 2
    assert (store / "runs" / "rtdetr" / "MODEL_CARD.md").is_file()


def test_the_default_train_step_is_a_sweep_whose_trials_run_on_the_work_pool(tmp_path, prefect_server, prefect_api,
                                                                            workers):
    """AutoML is every model's default: a deployment run of the pipeline sweeps, each trial an action flow
    run of `tao-action` on the worker's pool (the work-pool launcher), the best one handed on as train.

    Seed 2 makes trial 2 the worst of three at the first rung (`benchmarks/automl.py --predict-tune rtdetr
    --trials 3 --concurrency 2 --max-epochs 2 --seed 2`), so it is pruned whatever order the reports come in.
    The pool is not gated: its epochs are instant here, so the prune may land after the trial's run ended;
    either way the run ends as the study records it and nothing waits on the server's cancellation clean-up."""
    env, datasets, store = _deploy_everything(tmp_path, prefect_server)
    started = _prefect(["deployment", "run", "rtdetr-pipeline/rtdetr-local", "--params", json.dumps({
        "datasets": datasets, "num_classes": 5, "actions": ["train", "evaluate"], "automl_trials": 3,
        "automl_concurrency": 2, "automl_max_epochs": 2, "automl_seed": 2})], env)
    flow_run_id = UUID(started.stdout.split("UUID:")[1].split()[0])
    log = workers("tao-local", env)
    with get_client(sync_client=True) as client:
        pipeline = _wait_for("the pipeline to finish", lambda: _final(client.read_flow_run(flow_run_id)), log=log)
        assert pipeline.state.is_completed(), log.read_text(errors="replace")[-3000:]
        actions = [r for r in client.read_flow_runs() if r.deployment_id is not None and "run" in r.parameters
                   and r.parameters["run"]["results_uri"].startswith(str(store))]  # this test's, not the session's
    trials = [r for r in actions if r.parameters["run"]["action"] == "train"]
    (evaluate,) = [r for r in actions if r.parameters["run"]["action"] == "evaluate"]
    assert len(trials) == 3

    (db,) = (store / "automl" / "rtdetr").glob("*.db")
    storage = f"sqlite:///{db}"
    (study,) = optuna.get_all_study_summaries(storage)
    loaded = optuna.load_study(study_name=study.study_name, storage=storage)
    ended = {r.parameters["run"]["results_uri"]: r.state.name for r in trials}
    recorded = {t.number: (t.state.name, ended[t.user_attrs["results_uri"]]) for t in loaded.trials}
    assert recorded[0] == recorded[1] == ("COMPLETE", "Completed"), recorded
    assert recorded[2] in {("PRUNED", "Cancelled"), ("COMPLETE", "Completed")}, recorded  # pruned, or it ended first
    assert loaded.trials[2].user_attrs["kpi_per_rung"] and loaded.trials[2].intermediate_values, "decided at its rung"
    best = loaded.best_trial
    assert best.user_attrs["results_uri"] in {r.parameters["run"]["results_uri"] for r in trials}
    checkpoint = evaluate.parameters["run"]["spec"]["evaluate"]["checkpoint"]
    assert checkpoint.startswith(best.user_attrs["results_uri"] + "/"), "the best trial's checkpoint is evaluated"


def _final(run):
    return run if run.state is not None and run.state.is_final() else None


def _all_final(task_runs):
    return task_runs if task_runs and all(t.state is not None and t.state.is_final() for t in task_runs) else None


def _action_events(client, run_key: str, count: int):
    page = client.read_events(filter=EventFilter(event=EventNameFilter(prefix=["tao.action."])), limit=50)
    mine = [e for e in page.events if e.resource.get("tao.run-key") == run_key]
    return mine if len(mine) >= count else None


def test_an_enabled_schedule_creates_runs_and_survives_a_redeploy(tmp_path):
    """The session's server runs without its scheduler; this test starts one with it (1 s loop)."""
    from prefect.settings import PREFECT_API_URL, PREFECT_HOME, temporary_settings

    server = PrefectServer(scheduler=True, server_env={"PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1"})
    server.start()
    try:
        env = {**os.environ, **server.env()}
        with temporary_settings({PREFECT_API_URL: server.api_url, PREFECT_HOME: str(server.home)}):
            _schedule_survives_redeploy(env, server)
    finally:
        server.stop()
    log = (server.home / "server.log").read_text(errors="replace")
    assert "Traceback" not in log, log[-3000:]  # the scheduler ran without raising (SQLAlchemy < 2.1)


def _schedule_survives_redeploy(env: dict[str, str], server: PrefectServer) -> None:
    name = "rtdetr-pipeline/rtdetr-retrain"
    _create_pools(env)
    _prefect(["--no-prompt", "deploy", "--name", "rtdetr-retrain"], env)
    _prefect(["deployment", "schedule", "create", name, "--cron", "0 2 * * *", "--timezone", "UTC"], env)
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(name)
        (schedule,) = deployment.schedules
        assert schedule.active
        _wait_for("the scheduler to create runs", lambda: _scheduled_runs(client, "rtdetr-retrain"),
                  log=server.home / "server.log")

        _prefect(["--no-prompt", "deploy", "--name", "rtdetr-retrain"], env)
        (again,) = client.read_deployment_by_name(name).schedules
        assert (again.id, again.active) == (schedule.id, True)
        _wait_for("runs after the redeploy", lambda: _scheduled_runs(client, "rtdetr-retrain"),
                  log=server.home / "server.log")

        _prefect(["deployment", "schedule", "pause", name, str(schedule.id)], env)
        _prefect(["--no-prompt", "deploy", "--name", "rtdetr-retrain"], env)
        (paused,) = client.read_deployment_by_name(name).schedules
        assert (paused.id, paused.active) == (schedule.id, False), "the operator's pause survives a redeploy"


def _scheduled_runs(client, deployment: str):
    runs = client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment])))
    return [r for r in runs if r.auto_scheduled and r.state is not None and r.state.is_scheduled()]
