"""The AutoML sweep as the train step of a pipeline, on the emulator, against a real Prefect API:
parallel trials within the GPU budget, pruned jobs stopped at their rung whatever the epoch length, the
best trial's checkpoint handed to evaluate. It waits for events only (the flow's end), never on a timing
margin: the rung gate (taoflow/emulator/rungs.py) holds each trial until the controller has decided."""

from __future__ import annotations

import json
import os
from pathlib import Path

import optuna
import yaml

from flows import model_flow
from flows.demo import demo_parameters
from taoflow.datasets import write_sample_data

PID_FILE = ".taoflow_run.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _the_study(store: Path) -> optuna.Study:
    """The one rtdetr study the sweep kept in the store's SQLite file."""
    (db,) = (store / "automl" / "rtdetr").glob("*.db")
    storage = f"sqlite:///{db}"
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    running = peak = 0
    for _, delta in edges:
        running += delta
        peak = max(peak, running)
    return peak


def test_sixteen_trials_four_at_a_time_best_goes_to_evaluate(tmp_path, prefect_api, monkeypatch):
    monkeypatch.setenv("TAOFLOW_EMULATOR_EPOCH_SECONDS", "0")
    write_sample_data("rtdetr", tmp_path / "data")
    store = tmp_path / "store"
    params = demo_parameters(
        "rtdetr", tmp_path / "data", str(store), actions=["train", "evaluate"],
        automl={"policy": "on", "max_trials": 16, "max_concurrent": 4, "max_epochs": 9, "seed": 3},
    )
    flow_fn, _ = model_flow("rtdetr")
    summary = flow_fn(params)
    assert summary["results"]["evaluate"]["status"] == "SUCCESS"

    study = _the_study(store)
    trials = study.get_trials()
    assert len(trials) == 16
    intervals = [(t.user_attrs["submitted_at"], t.user_attrs["finished_at"]) for t in trials]
    assert _max_overlap(intervals) <= 4

    pruned = [t for t in trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, "ASHA pruned nothing in 16 trials"
    for trial in pruned:
        pid_file = Path(trial.user_attrs["results_uri"]) / PID_FILE
        if pid_file.exists():
            assert not _alive(json.loads(pid_file.read_text())["pid"]), f"trial {trial.number} still running"
        lines = [json.loads(x) for x in (Path(trial.user_attrs["results_uri"]) / "status.json").read_text().splitlines()
                 if x.strip()]
        trained = [x["epoch"] for x in lines if x.get("status") == "RUNNING" and "epoch" in x]
        assert max(trained) + 1 == trial.user_attrs["pruned_at_epoch"] == trial.user_attrs["gpu_epochs"]

    best = study.best_trial
    evaluate_spec = yaml.safe_load(
        (Path(summary["results"]["evaluate"]["results_uri"]) / "spec.yaml").read_text()
    )
    assert evaluate_spec["evaluate"]["checkpoint"].startswith(best.user_attrs["results_uri"] + "/")
    assert summary["results"]["train"]["results_uri"] == best.user_attrs["results_uri"]


def test_trials_that_hit_an_infrastructure_failure_resume_instead_of_failing(tmp_path, prefect_api, monkeypatch):
    """Every trial's first attempt dies of OOM at the start of epoch 2 (the emulator's fault fires once per
    results folder): each is relaunched in its own folder, resumes from its newest checkpoint, and ends
    COMPLETE or PRUNED — none FAIL — as a direct train's retries would."""
    monkeypatch.setenv("TAOFLOW_EMULATOR_EPOCH_SECONDS", "0")
    monkeypatch.setenv("TAOFLOW_EMULATOR_FAULT", "oom@epoch:2")
    write_sample_data("rtdetr", tmp_path / "data")
    store = tmp_path / "store"
    params = demo_parameters(
        "rtdetr", tmp_path / "data", str(store), actions=["train"],
        automl={"policy": "on", "max_trials": 4, "max_concurrent": 2, "max_epochs": 4, "seed": 1},
    )
    flow_fn, _ = model_flow("rtdetr")
    summary = flow_fn(params)
    assert summary["results"]["train"]["status"] == "SUCCESS"

    trials = _the_study(store).get_trials()
    assert {t.state for t in trials} <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}
    retried = [t for t in trials if t.user_attrs.get("retries")]
    assert retried, "no trial reached epoch 2"
    for trial in retried:
        assert trial.user_attrs["retries"] == 1
        folder = Path(trial.user_attrs["results_uri"])
        assert (folder / ".emulator_faults_fired").is_file()
        spec = yaml.safe_load((folder / "spec.yaml").read_text())
        assert Path(spec["train"]["resume_training_checkpoint_path"]).name == "model_epoch_001.pth"
