"""`taoflow run` from the command line: dry runs (specs, Kubernetes objects) and a real emulated run."""

from __future__ import annotations

import json

import kubernetes_validate
import yaml

from flows.cli import main  # noqa: F401  (registers run/demo on the app)
from taoflow.cli import _register, run_cli

_register()


def _args(data, *extra: str) -> list[str]:
    return ["run", "rtdetr", "--data", f"train={data / 'train'}", "--data", f"eval={data / 'eval'}",
            "--set", "dataset.num_classes=5", *extra]


def test_dry_run_prints_every_spec_as_yaml(rtdetr_data, capsys):
    assert run_cli(_args(rtdetr_data, "--set", "train.train.num_epochs=3", "--dry-run")) == 0
    docs = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    assert len(docs) == 6
    train = docs[0]
    assert train["train"]["num_epochs"] == 3 and train["dataset"]["num_classes"] == 5
    assert all(d["dataset"]["num_classes"] == 5 for d in docs)


def test_kubernetes_dry_run_prints_valid_objects_for_two_nodes(rtdetr_data, capsys):
    code = run_cli(_args(rtdetr_data, "--launcher", "kubernetes", "--gpus", "8", "--nodes", "2",
                         "--store", "s3://bucket/tao", "--launcher-option", "namespace=vision", "--dry-run",
                         "--automl", "off"))
    assert code == 0
    objects = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
    for obj in objects:
        kubernetes_validate.validate(obj, "1.30", strict=True)
    jobs = {o["metadata"]["labels"]["taoflow.io/action"]: o for o in objects if o["kind"] == "Job"}
    assert set(jobs) == {"train", "evaluate", "export", "quantize", "gen_trt_engine", "trt_evaluate"}
    train = jobs["train"]
    assert train["metadata"]["namespace"] == "vision"
    assert train["spec"]["completionMode"] == "Indexed" and train["spec"]["parallelism"] == 2
    env = {e["name"]: e for e in train["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["WORLD_SIZE"]["value"] == "2" and env["NUM_GPU_PER_NODE"]["value"] == "8"
    limits = train["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] in (8, "8")
    assert [o["kind"] for o in objects].count("Service") == 1, "only multi-node train gets a headless Service"


def test_a_user_error_exits_2_without_a_traceback(rtdetr_data, capsys):
    assert run_cli(_args(rtdetr_data, "--set", "train.train.optim.lrr=0.1", "--dry-run")) == 2
    err = capsys.readouterr().err
    assert "train.optim.lrr" in err and "Traceback" not in err


def test_run_on_the_emulator_from_the_command_line(rtdetr_data, tmp_path, prefect_api, capsys):
    store = tmp_path / "store"
    code = run_cli(_args(rtdetr_data, "--actions", "train,evaluate", "--emulate", "--store", str(store),
                         "--set", "train.train.num_epochs=2"))
    assert code == 0
    out = capsys.readouterr().out
    assert "evaluate" in out and "SUCCESS" in out
    results = sorted(store.glob("runs/rtdetr/*/evaluate/result.json"))
    assert results and json.loads(results[0].read_text())["status"] == "SUCCESS"


def test_a_command_line_run_logs_to_the_prefect_ui_but_not_to_the_terminal(rtdetr_data, tmp_path, prefect_server,
                                                                          prefect_api):
    """`taoflow run` as a user starts it (the installed command, no PREFECT_LOGGING_LEVEL in the shell): the
    flow run's INFO log reaches the Prefect API, where the UI shows it, and Prefect's records stay off the
    terminal. (The CLI once set Prefect's level to WARNING for a quiet terminal, and the UI showed no logs.)"""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    env = {**os.environ, **prefect_server.env(), "TAOFLOW_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    env.pop("PREFECT_LOGGING_LEVEL")
    store = tmp_path / "store"
    taoflow = str(Path(sys.executable).parent / "taoflow")
    done = subprocess.run([taoflow, *_args(rtdetr_data, "--actions", "train", "--automl", "off", "--emulate",
                                                  "--store", str(store))],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Beginning flow run" not in done.stdout + done.stderr
    with get_client(sync_client=True) as client:
        (pipeline,) = [r for r in client.read_flow_runs() if r.parameters.get("store") == str(store)]
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[pipeline.id])))
    assert any(log.level == 20 and "Beginning flow run" in log.message for log in logs), [entry.message for entry in logs]
