"""The train action policy: every model trains through an AutoML sweep unless a run says `off` — the policy
NVIDIA's model notes define ("Train Action Policy": AutoML-enabled at the model layer, `automl_policy` on or
auto by default, off for one run). The policy in force is part of the train run key, is shown in the plan, the
board and the model card, and a model whose AutoML cannot run (no train schema or template) trains directly
and says why. Runs go through the real flows on the emulator against a real Prefect API (one loopback
server); the deployment test has the real server merge a deployment's `automl_policy: off` with a run's
parameters. Nothing waits on a timing margin: the emulator's rung gate orders the sweep."""

from __future__ import annotations

import dataclasses
import shutil
import uuid
from pathlib import Path

import optuna
import pytest
from prefect.client.orchestration import get_client

from flows import model_flow
from flows.cli import main  # noqa: F401  (registers run/demo on the app)
from flows.demo import demo_parameters
from flows.live import pipeline_board
from taoflow.automl.policy import DEFAULT_CONCURRENCY, DEFAULT_TRIALS, resolve_policy
from taoflow.cli import _register, run_cli
from taoflow.errors import UserError
from taoflow.planner import plan_pipeline, planned_runs, preflight
from taoflow.skill import load_skill, skills_dir
from taoflow.store import ArtifactStore
from tasks.artifacts import model_card

_register()

# What NVIDIA's notes for each model say the default is (`auto` is their CenterPose/Sparse4D word for on).
NOTES_DEFAULT = {"rtdetr": "on", "action_recognition": "on", "nvpanoptix3d": "on",
                 "centerpose": "auto", "sparse4d": "auto"}


def _cli_args(data: Path, *extra: str) -> list[str]:
    return ["run", "rtdetr", "--data", f"train={data / 'train'}", "--data", f"eval={data / 'eval'}",
            "--set", "dataset.num_classes=5", *extra]


@pytest.mark.parametrize("model", sorted(NOTES_DEFAULT))
def test_every_model_sweeps_by_default_and_off_trains_directly(model):
    skill = load_skill(model)
    default = resolve_policy(skill, None)
    assert (default.asked, default.from_skill, default.sweep) == (NOTES_DEFAULT[model], True, True)
    off = resolve_policy(skill, "off")
    assert (off.sweep, off.from_skill, off.in_force) == (False, False, "off")
    assert resolve_policy(skill, "auto").in_force == resolve_policy(skill, "on").in_force == "on"


def test_an_unknown_policy_is_a_user_error():
    with pytest.raises(UserError, match="choose on, auto"):
        resolve_policy(load_skill("rtdetr"), "sometimes")


def test_the_policy_in_force_is_in_the_train_run_key_only(rtdetr_data, tmp_path):
    """on and off give different train run keys; auto is on; steps that are not train keep their keys
    here (in a real run their parent digest follows the train result that differs)."""
    skill = load_skill("rtdetr")

    def keys(policy: str) -> dict[str, str]:
        params = demo_parameters("rtdetr", rtdetr_data, str(tmp_path / "store"), automl_policy=policy)
        request = params.to_request("rtdetr")
        plan = plan_pipeline(skill, request)
        specs = preflight(skill, request, plan, ArtifactStore(request.store))
        return {run.action: run.run_key for run in planned_runs(skill, request, plan, specs,
                                                                 ArtifactStore(request.store))}

    on, auto, off = keys("on"), keys("auto"), keys("off")
    assert on == auto
    assert on["train"] != off["train"]
    assert {a: k for a, k in on.items() if a != "train"} == {a: k for a, k in off.items() if a != "train"}


def test_the_plan_says_how_train_runs_and_how_to_switch(rtdetr_data, capsys):
    assert run_cli(_cli_args(rtdetr_data, "--dry-run")) == 0
    out = capsys.readouterr().out
    assert (f"train: AutoML sweep of {DEFAULT_TRIALS} trials, {DEFAULT_CONCURRENCY} at a time "
            "(automl_policy on, the rtdetr skill's default)") in out
    assert "`--automl off`" in out
    assert run_cli(_cli_args(rtdetr_data, "--automl", "off", "--dry-run")) == 0
    out = capsys.readouterr().out
    assert "train: one train run (automl_policy off, this run's choice)" in out
    assert "AutoML sweep (each trial" not in out and "`--automl on` trains through an AutoML sweep" in out
    assert run_cli(_cli_args(rtdetr_data, "--automl", "maybe", "--dry-run")) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "choose on, auto" in err and "Traceback" not in err


def test_the_board_and_the_model_card_show_the_policy(rtdetr_data, tmp_path):
    params = demo_parameters("rtdetr", rtdetr_data, str(tmp_path / "store"))
    board = pipeline_board("rtdetr", params)
    assert board.trials_budget == DEFAULT_TRIALS and "AutoML sweep of 8 trials" in board.training
    off = pipeline_board("rtdetr", demo_parameters("rtdetr", rtdetr_data, str(tmp_path), automl_policy="off"))
    assert off.trials_budget is None and off.training.startswith("train: one train run (automl_policy off")
    card = model_card("rtdetr", {}, [], str(tmp_path), training={
        "line": "train: AutoML sweep of 8 trials, 4 at a time (automl_policy on, the rtdetr skill's default)",
        "warning": None, "sweep": None})
    assert "Training: AutoML sweep of 8 trials" in card


def test_a_model_without_its_train_schema_says_automl_cannot_run_and_trains_directly(tmp_path, monkeypatch,
                                                                                      rtdetr_data, capsys):
    skills = tmp_path / "skills"
    shutil.copytree(skills_dir(), skills)
    (skills / "rtdetr" / "schemas" / "train.schema.json").unlink()
    monkeypatch.setenv("TAOFLOW_SKILLS_DIR", str(skills))
    policy = resolve_policy(load_skill("rtdetr"), None)
    assert not policy.sweep and policy.in_force == "off"
    assert policy.notice.startswith("AutoML is enabled but not runnable for rtdetr until schemas are generated")
    assert policy.notice.endswith("train runs directly")
    assert run_cli(_cli_args(rtdetr_data, "--dry-run")) == 0
    out = capsys.readouterr().out
    assert "# warning: AutoML is enabled but not runnable for rtdetr" in out
    assert "train: one train run" in out


def _study_trials(store: Path) -> int:
    (db,) = (store / "automl" / "rtdetr").glob("*.db")
    storage = f"sqlite:///{db}"
    return sum(len(optuna.load_study(study_name=s.study_name, storage=storage).trials)
               for s in optuna.get_all_study_summaries(storage))


def test_the_default_pipeline_sweeps_and_its_rerun_launches_nothing(rtdetr_data, tmp_path, prefect_api):
    store = tmp_path / "store"
    params = demo_parameters("rtdetr", rtdetr_data, str(store), actions=["train", "evaluate"])
    flow_fn, _ = model_flow("rtdetr")
    first = flow_fn(params)
    assert first["training"]["in_force"] == "on" and first["training"]["source"] == "the rtdetr skill's default"
    sweep = first["training"]["sweep"]
    assert sweep["trials"] == DEFAULT_TRIALS and sweep["launched"] > 0
    assert _study_trials(store) == DEFAULT_TRIALS
    assert first["results"]["evaluate"]["status"] == "SUCCESS"

    again = flow_fn(params)
    assert again["training"]["sweep"]["launched"] == 0
    assert _study_trials(store) == DEFAULT_TRIALS  # no trial asked again
    assert all(r["cached"] for r in again["results"].values()), {n: r["cached"] for n, r in again["results"].items()}
    assert again["results"]["train"]["results_uri"] == first["results"]["train"]["results_uri"]


def test_a_study_answers_only_sweeps_on_its_image_and_its_kind_of_run(rtdetr_data, tmp_path, prefect_api,
                                                                       monkeypatch):
    """The study's name holds what each trial's run key holds that the trials share: another train image
    starts a new sweep; an emulated study is never the study of a sweep that must use TAO."""
    store = tmp_path / "store"
    params = demo_parameters("rtdetr", rtdetr_data, str(store), actions=["train"],
                             automl={"policy": "on", "max_trials": 2, "max_concurrent": 2})
    flow_fn, _ = model_flow("rtdetr")
    assert flow_fn(params)["training"]["sweep"]["launched"] == 2
    monkeypatch.setenv("TAOFLOW_IMAGE_RTDETR_TRAIN", "registry.example.com/tao/tao-toolkit:custom-pyt")
    other = flow_fn(params)["training"]["sweep"]
    assert other["launched"] == 2 and len(list((store / "automl" / "rtdetr").glob("*.db"))) == 2

    from taoflow.automl.sweep import sweep_identity

    request = params.to_request("rtdetr")
    emulated = sweep_identity(load_skill("rtdetr"), request)
    real = sweep_identity(load_skill("rtdetr"), dataclasses.replace(request, emulate=False))
    assert emulated["emulated"] is True and real["emulated"] is False


def test_automl_off_from_the_command_line_trains_once(rtdetr_data, tmp_path, prefect_api, capsys):
    store = tmp_path / "store"
    code = run_cli(_cli_args(rtdetr_data, "--automl", "off", "--actions", "train", "--emulate", "--store",
                             str(store), "--set", "train.train.num_epochs=2"))
    assert code == 0
    assert not (store / "automl").exists(), "a run with --automl off started a sweep"
    assert len(list(store.glob("runs/rtdetr/*/train/result.json"))) == 1


def test_a_deployments_automl_policy_off_trains_directly(rtdetr_data, tmp_path, prefect_api):
    """The real server merges the deployment's `automl_policy: off` into a run that does not mention it; the
    flow run with the merged parameters trains once, directly."""
    store = tmp_path / "store"
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("rtdetr-pipeline")
        deployment_id = client.create_deployment(
            flow_id=flow_id, name=f"policy-{uuid.uuid4().hex[:6]}", entrypoint="flows/rtdetr.py:rtdetr_pipeline",
            parameters={"automl_policy": "off", "num_classes": 5, "eval_class_ids": [1, 2, 3, 4]})
        run = client.create_flow_run_from_deployment(deployment_id, parameters={
            "datasets": {"train": str(rtdetr_data / "train"), "eval": str(rtdetr_data / "eval")},
            "store": str(store), "actions": ["train"], "launcher": "local", "emulate": True,
            "overrides": {"train": {"train.num_epochs": 2}}})
        merged = client.read_flow_run(run.id).parameters
    assert merged["automl_policy"] == "off"
    from flows.rtdetr import rtdetr_pipeline

    summary = rtdetr_pipeline(**merged)
    assert summary["training"]["in_force"] == "off" and summary["training"]["source"] == "this run's choice"
    assert summary["training"]["sweep"] is None and not (store / "automl").exists()
    assert summary["results"]["train"]["status"] == "SUCCESS"
