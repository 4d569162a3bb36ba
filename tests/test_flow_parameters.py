"""Pipeline flow parameters as the Prefect UI, the API and the CLI see them: top-level (Prefect merges a
deployment's parameters with a run's one level deep), datasets by named role, the model's own fields first,
actions an enum of the model's actions, and the launcher from the deployment's environment — checked through
Prefect's own schema generation, validation and the real server's merge of deployment and run parameters."""

from __future__ import annotations

import inspect
import uuid

import pytest
from prefect.client.orchestration import get_client
from prefect.exceptions import ParameterTypeError

from flows import MODEL_FLOWS, model_flow, pipeline_flow_of
from flows.cli import build_parameters
from flows.parameters import PipelineParameters, RunSettings, datasets_model
from taoflow.errors import UserError
from taoflow.skill import load_skill

MODELS = list(MODEL_FLOWS)


@pytest.mark.parametrize("model", MODELS)
def test_the_form_is_top_level_with_roles_model_fields_first_and_an_actions_enum(model):
    flow = pipeline_flow_of(model)
    _, params_cls = model_flow(model)
    schema = flow.parameters.model_dump()
    names = list(schema["properties"])
    own = params_cls.model_fields_own()
    assert names == ["datasets", *own, *RunSettings.model_fields], names
    assert schema["required"] == ["datasets"]
    roles = schema["definitions"][schema["properties"]["datasets"]["$ref"].rsplit("/", 1)[-1]]["properties"]
    assert list(roles) == load_skill(model).roles()
    actions = schema["properties"]["actions"]["anyOf"][0]["items"]["enum"]
    assert actions == list(load_skill(model).actions)
    # no nested settings object a caller could replace wholesale (overrides/launcher_options are free maps)
    nested = {n for n, p in schema["properties"].items() if "$ref" in p or "allOf" in p}
    assert nested == {"datasets"}
    assert flow.name == model.replace("_", "-") + "-pipeline"


def test_prefect_validates_actions_and_dataset_roles():
    flow = pipeline_flow_of("rtdetr")
    flow.validate_parameters({"datasets": {"train": "/d/train"}, "actions": ["train", "evaluate"]})
    with pytest.raises(ParameterTypeError, match="actions"):
        flow.validate_parameters({"datasets": {"train": "/d/train"}, "actions": ["distil"]})
    with pytest.raises(ParameterTypeError, match="calibratoin"):
        flow.validate_parameters({"datasets": {"calibratoin": "/d/cal"}})


def test_an_unset_dataset_variable_counts_as_not_given():
    model = datasets_model("rtdetr")
    assert model.model_validate({"train": "", "eval": "s3://b/eval"}).model_dump() == {
        "train": None, "eval": "s3://b/eval", "inference": None}
    assert model.model_validate("").model_dump() == {"train": None, "eval": None, "inference": None}


def _resolve(model: str, values: dict) -> PipelineParameters:
    flow = pipeline_flow_of(model)
    _, params_cls = model_flow(model)
    bound = inspect.signature(flow.fn).bind(**flow.validate_parameters(values))
    bound.apply_defaults()  # as the flow itself does
    return params_cls.from_flow(bound.arguments)


def test_a_run_with_only_datasets_and_class_count_keeps_the_deployments_launcher(prefect_api, monkeypatch):
    """The real server merges the deployment's parameters with the run's; the launcher is in neither."""
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("rtdetr-pipeline")
        deployment_id = client.create_deployment(
            flow_id=flow_id, name=f"merge-{uuid.uuid4().hex[:6]}", entrypoint="flows/rtdetr.py:rtdetr_pipeline",
            parameters={"datasets": {"train": "s3://b/train", "eval": "s3://b/eval"}, "num_classes": 5,
                        "eval_class_ids": [1, 2, 3, 4]})
        run = client.create_flow_run_from_deployment(
            deployment_id, parameters={"datasets": {"train": "s3://b/new-train", "eval": "s3://b/eval"},
                                       "num_classes": 7})
        merged = client.read_flow_run(run.id).parameters
    assert merged["num_classes"] == 7 and merged["eval_class_ids"] == [1, 2, 3, 4]
    monkeypatch.setenv("TAOFLOW_LAUNCHER", "workpool")
    monkeypatch.setenv("TAOFLOW_LAUNCHER_OPTIONS", '{"max_poll_seconds": 10}')
    params = _resolve("rtdetr", merged)
    assert params.launcher.name == "workpool" and params.launcher.options == {"max_poll_seconds": 10}
    assert params.datasets == {"train": "s3://b/new-train", "eval": "s3://b/eval"} and params.num_classes == 7
    assert _resolve("rtdetr", {**merged, "launcher": "local"}).launcher.name == "local"  # a caller may choose
    monkeypatch.delenv("TAOFLOW_LAUNCHER")
    assert _resolve("rtdetr", merged).launcher.name == "local"


def test_the_pools_emulation_choice_applies_unless_the_run_decides(monkeypatch):
    """tao-local's environment says its pods run the emulator (emulation is part of each run key, so the
    controller must know it); a run that names `emulate` or its own launcher decides for itself."""
    values = {"datasets": {"train": "/d"}}
    assert _resolve("rtdetr", values).launcher.emulate is None
    monkeypatch.setenv("TAOFLOW_EMULATE", "true")
    assert _resolve("rtdetr", values).launcher.emulate is True
    assert _resolve("rtdetr", {**values, "emulate": False}).launcher.emulate is False
    assert _resolve("rtdetr", {**values, "launcher": "docker"}).launcher.emulate is None
    monkeypatch.setenv("TAOFLOW_EMULATE", "sometimes")
    with pytest.raises(UserError, match="TAOFLOW_EMULATE must be true or false"):
        _resolve("rtdetr", values)


def test_bad_launcher_options_from_the_environment_are_a_clear_error(monkeypatch):
    monkeypatch.setenv("TAOFLOW_LAUNCHER_OPTIONS", "poll_seconds=1")
    with pytest.raises(UserError, match="JSON object"):
        _resolve("rtdetr", {"datasets": {"train": "/d"}})


@pytest.mark.parametrize("model", MODELS)
def test_parameters_round_trip_through_the_flow_signature(model):
    params = build_parameters(
        model, data=["train=s3://b/train", "eval=s3://b/eval"], actions="train", sets=["train.train.num_epochs=3"],
        ptm=None, store="s3://b/store", launcher={"name": "workpool", "gpus": 2, "options": {"poll_seconds": 3}},
        automl={"policy": "off", "max_trials": 6, "max_concurrent": 2, "parameters": ["train.optim.lr=1e-5:1e-3:log"]},
    )
    again = _resolve(model, params.flow_parameters())
    assert again == params


def test_the_cli_refuses_a_misspelt_dataset_role():
    with pytest.raises(UserError, match="evl"):
        build_parameters("rtdetr", data=["evl=s3://b/eval"], actions=None, sets=[], ptm=None, store=None,
                         launcher={"name": "local"}, automl={})
