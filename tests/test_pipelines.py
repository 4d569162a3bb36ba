"""The model pipelines end to end on the TAO emulator against a real Prefect API (one loopback server).

Nothing is mocked: the flows run their tasks, the local launcher starts emulator processes, results land
in a real artifact store, and the checks read Prefect's own task-run states back from its API."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

from flows import model_flow
from flows.demo import demo_parameters
from taoflow.datasets import write_sample_data
from taoflow.errors import UserError

MODELS = ["rtdetr", "centerpose", "action_recognition", "sparse4d", "nvpanoptix3d"]


@pytest.fixture(scope="module")
def sample_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("samples")
    for model in MODELS:
        write_sample_data(model, root / model)
    return root


def _run(model: str, params, return_state: bool = False):
    flow_fn, _ = model_flow(model)
    return flow_fn(params, return_state=return_state) if return_state else flow_fn(params)


def _task_states(flow_run_id, timeout: float = 30.0) -> dict[str, str]:
    """Task run name → final state name of one flow run, read back from the Prefect API (task-run states
    reach the API through its event pipeline, a moment after the flow returns)."""
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            if (runs and all(r.state and r.state.is_final() for r in runs)) or time.monotonic() > deadline:
                return {run.name: run.state.name for run in runs if run.state}
            time.sleep(0.2)


def _epochs_trained(results_uri: str) -> list[int]:
    status = Path(results_uri) / "status.json"
    records = [json.loads(line) for line in status.read_text().splitlines() if line.strip()]
    return [r["epoch"] for r in records if r.get("status") == "RUNNING" and "epoch" in r and r.get("kpi")]


@pytest.mark.parametrize("model", MODELS)
def test_full_pipeline_on_the_emulator(model, sample_root, tmp_path, prefect_api):
    params = demo_parameters(model, sample_root / model, str(tmp_path / "store"), promotion={"name": "pipeline-test"})
    summary = _run(model, params)
    assert summary["promotion"]["promoted"], summary["promotion"]["summary"]  # the first model, parity holds
    skill_steps = set(summary["results"])
    assert "train" in skill_steps
    for name, result in summary["results"].items():
        assert result["status"] == "SUCCESS", (name, result)
        assert result["emulated"] is True
        assert Path(result["results_uri"]).is_dir()
    train = summary["results"]["train"]
    assert train["kpis_best"], "train reports its best KPIs"
    if "export" in summary["results"]:
        assert any(uri.endswith(".onnx") for uri in summary["results"]["export"]["products"].values())
    if "gen_trt_engine" in summary["results"]:
        assert any(uri.endswith(".engine") for uri in summary["results"]["gen_trt_engine"]["products"].values())
    # Every asked-for action the model lacks is reported, none is faked.
    from taoflow.skill import PIPELINE_ORDER, load_skill

    missing = [a for a in PIPELINE_ORDER if a not in load_skill(model).actions]
    assert {s["action"] for s in summary["skipped"]} == set()  # default plan = the skill's own pipeline
    assert not (set(missing) & skill_steps)
    assert_chain_hands_on_the_right_files(model, summary["results"])


def _spec(result: dict) -> dict:
    return yaml.safe_load((Path(result["results_uri"]) / "spec.yaml").read_text())


def assert_chain_hands_on_the_right_files(model: str, results: dict[str, dict]) -> None:
    """train → evaluate → export → gen_trt_engine → trt_evaluate (as far as the model has them), on the store
    layout TAO really writes: each step's files in `<run>/<step>/` (TAO handed the run folder), TAO's lines
    (no SUCCESS), and each step given the file its parent made — the best checkpoint by the skill's metric,
    the export's ONNX, the engine — with TensorRT's KPIs close to PyTorch's."""
    from taoflow.kpis import metric_in
    from taoflow.skill import load_skill
    from taoflow.status import read_status

    skill = load_skill(model)
    for name, result in results.items():
        folder = Path(result["results_uri"])
        action = skill.actions[result["action"]]
        assert _spec(result)["results_dir"] == (str(folder) if action.image.value == "data-services"
                                                else str(folder.parent)), name
        lines = read_status(folder / "status.json")
        assert lines and "SUCCESS" not in {r["status"] for r in lines}, name
        assert lines[-1]["message"].endswith("finished successfully."), name
    entries = results["train"]["manifest"]["entries"]
    best = max((e for e in entries if e["metric_value"] is not None), key=lambda e: (e["metric_value"], e["epoch"]))
    handed = {"evaluate": ("evaluate", "checkpoint"), "export": ("export", "checkpoint"),
              "quantize": ("quantize", "model_path")}
    for step, (section, key) in handed.items():
        if step in results:
            assert _spec(results[step])[section][key] == best["uri"], step
    if "gen_trt_engine" in results:
        assert _spec(results["gen_trt_engine"])["gen_trt_engine"]["onnx_file"] == results["export"]["products"]["onnx"]
        engine = results["gen_trt_engine"]["products"]["engine"]
        assert _spec(results["trt_evaluate"])["evaluate"]["trt_engine"] == engine
        metric = skill.monitoring.metric
        torch = metric_in(results["evaluate"]["kpis_final"], metric)
        trt = metric_in(results["trt_evaluate"]["kpis_final"], metric)
        assert torch is not None and trt is not None and 0 < torch - trt < 0.005  # fp32 engines: close
    if model == "sparse4d":
        converted = {r["results_uri"].rsplit("-", 1)[1]: Path(r["results_uri"]) for n, r in results.items()
                     if n.startswith("dataset_convert")}
        dataset = _spec(results["train"])["dataset"]
        assert dataset["train_dataset"]["ann_file"] == str(converted["train"] / "train")
        assert dataset["val_dataset"]["ann_file"] == str(converted["eval"] / "val")
        assert list((converted["train"] / "train").glob("*_infos_train.pkl"))
        assert Path(_spec(results["train"])["model"]["head"]["instance_bank"]["anchor"]).is_file()


def test_train_killed_at_epoch_5_retries_and_resumes(sample_root, tmp_path, prefect_api, monkeypatch):
    monkeypatch.setenv("TAOFLOW_EMULATOR_FAULT", "sigkill@epoch:5")
    params = demo_parameters(
        "rtdetr", sample_root / "rtdetr", str(tmp_path / "store"), actions=["train", "evaluate"],
        overrides={"train": {"train.num_epochs": 10, "train.checkpoint_interval": 1}}, automl_policy="off",
    )
    summary = _run("rtdetr", params)
    train = summary["results"]["train"]
    assert train["status"] == "SUCCESS"
    results = Path(train["results_uri"])
    resumed_from = yaml.safe_load((results / "spec.yaml").read_text())["train"]["resume_training_checkpoint_path"]
    assert Path(resumed_from).name == "model_epoch_004.pth", "resumed from the checkpoint of epoch 5"
    epochs = _epochs_trained(train["results_uri"])
    assert max(epochs) == 9
    assert len(epochs) <= 10 + 1, f"trained {len(epochs)} emulated epochs in total: {epochs}"
    names = sorted(p.name for p in results.glob("model_epoch_*.pth"))
    assert [n[:15] for n in names] == [f"model_epoch_{e:03d}" for e in range(10)]


def test_rerun_launches_nothing_and_an_evaluate_change_reruns_evaluate_alone(sample_root, tmp_path, prefect_api):
    store = str(tmp_path / "store")
    params = demo_parameters("rtdetr", sample_root / "rtdetr", store, automl_policy="off")
    first = _run("rtdetr", params, return_state=True)
    assert first.is_completed()

    again = _run("rtdetr", params, return_state=True)
    states = _task_states(again.state_details.flow_run_id)
    action_states = {n: s for n, s in states.items() if n.startswith("rtdetr-")}
    assert action_states and set(action_states.values()) == {"Cached"}, action_states

    changed = demo_parameters(
        "rtdetr", sample_root / "rtdetr", store, automl_policy="off",
        overrides={"train": demo_parameters("rtdetr", sample_root / "rtdetr", store).overrides["train"],
                   "evaluate": {"evaluate.conf_threshold": 0.25}},
    )
    third = _run("rtdetr", changed, return_state=True)
    states = _task_states(third.state_details.flow_run_id)
    ran = sorted(n for n, s in states.items() if n.startswith("rtdetr-") and s != "Cached")
    assert ran == ["rtdetr-evaluate"], states


def test_spec_error_in_export_overrides_fails_in_preflight_before_train(sample_root, tmp_path, prefect_api):
    store = tmp_path / "store"
    params = demo_parameters(
        "rtdetr", sample_root / "rtdetr", str(store),
        overrides={"export": {"export.input_widht": 640}}, automl_policy="off",
    )
    state = _run("rtdetr", params, return_state=True)
    assert state.is_failed()
    with pytest.raises(UserError) as err:
        state.result()
    assert "export.input_widht" in str(err.value)
    assert not (store / "runs").exists(), "nothing may run before the whole plan validates"


def test_actions_killed_after_writing_their_products_retry_and_hand_on_fresh_files(sample_root, tmp_path,
                                                                                    prefect_api, monkeypatch):
    """Every action of the first attempt is killed after its products are written (`sigkill@end`): each
    retries (infra), train resumes from its own checkpoint, and export's retry does not trip over the ONNX
    the killed attempt left (TAO refuses to overwrite it): it is moved aside and listed in the manifest."""
    monkeypatch.setenv("TAOFLOW_EMULATOR_FAULT", "sigkill@end")
    params = demo_parameters("rtdetr", sample_root / "rtdetr", str(tmp_path / "store"),
                             actions=["train", "export"],
                             overrides={"train": {"train.num_epochs": 2, "train.checkpoint_interval": 1}},
                             automl_policy="off")
    summary = _run("rtdetr", params)
    export = summary["results"]["export"]
    assert export["status"] == "SUCCESS"
    entries = {e["path"]: e for e in export["manifest"]["entries"]}
    assert entries["model.onnx"]["complete"] and not entries["model.failed-attempt-1.onnx.partial"]["complete"]
    assert export["products"]["onnx"].endswith("/export/model.onnx")
    train = summary["results"]["train"]
    assert _spec(train)["train"]["resume_training_checkpoint_path"].endswith("model_epoch_001.pth")
