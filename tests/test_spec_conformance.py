"""Conformance: for every model and action, the rendered spec — template, dataset roles, the typical overrides
from NVIDIA's skill notes and placeholder handoff values — merges strictly into TAO Core 7.3.0's
ExperimentConfig (`OmegaConf.merge(OmegaConf.structured(ExperimentConfig), spec)`: unknown keys and wrong
types fail), and passes our own complete validation. TAO Core is a test-only dependency."""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

import pytest

from taoflow.skill import Skill, load_skill, skill_names
from taoflow.spec import build_spec
from taoflow.validate import validate_spec

omegaconf = pytest.importorskip("omegaconf")
pytest.importorskip("nvidia_tao_core")

S3 = "s3://bucket/data"
DATA = {"train": f"{S3}/train", "eval": f"{S3}/eval", "inference": f"{S3}/inference", "calibration": f"{S3}/cal"}
RESULTS = "s3://bucket/runs/{model}/0123abcd/{action}"

# Typical overrides per (model, action) from NVIDIA's TAO skill notes per model (keys that do not
# exist in TAO Core 7.3.0 are left out: the notes' top-level `train_dataset.sequences_split_num` is
# `dataset.train_dataset.sequences_split_num` there).
COMMON_TRAIN = {"train.num_epochs": 10, "train.checkpoint_interval": 10, "train.validation_interval": 10,
                "train.num_gpus": 1, "train.gpu_ids": [0]}
TYPICAL: dict[str, dict[str, dict[str, Any]]] = {
    "rtdetr": {
        "*": {"dataset.num_classes": 5},
        "train": COMMON_TRAIN,
        "evaluate": {"dataset.eval_class_ids": [1, 2, 3, 4]},
        "trt_evaluate": {"dataset.eval_class_ids": [1, 2, 3, 4]},
        "export": {"export.input_height": 640, "export.input_width": 640},
        "quantize": {"quantize.layers": [{"module_name": "*", "weights": {"dtype": "float8_e4m3fn"},
                                          "activations": {"dtype": "float8_e4m3fn"}}]},
        "distill": {"distill.bindings": [{"student_module_name": "srcs", "teacher_module_name": "srcs",
                                          "criterion": "IOU", "weight": 1.0}]},
    },
    "centerpose": {
        "*": {"dataset.category": "bike"},
        "train": {**COMMON_TRAIN, "train.num_epochs": 30, "dataset.batch_size": 4},
        "inference": {"inference.focal_length_x": 615.0, "inference.focal_length_y": 615.0,
                      "inference.principle_point_x": 320.0, "inference.principle_point_y": 240.0},
    },
    "action_recognition": {
        "*": {"dataset.label_map": {"catch": 0, "smile": 1}},
        "train": {**COMMON_TRAIN, "train.num_epochs": 30, "dataset.batch_size": 2},
    },
    "sparse4d": {
        "train": {**COMMON_TRAIN, "train.num_epochs": 30, "dataset.sequences.split_num": 90,
                  "dataset.train_dataset.sequences_split_num": 90},
    },
    "nvpanoptix3d": {
        "*": {"dataset.enable_3d": True},
        "train": {**COMMON_TRAIN, "dataset.contiguous_id": True, "model.sem_seg_head.num_classes": 13},
    },
}

CASES = [(m, a) for m in skill_names() for a in load_skill(m).actions]


@cache
def tao_config(network: str):
    """TAO Core's ExperimentConfig for a network, structured once per test session."""
    module = importlib.import_module(f"nvidia_tao_core.config.{network}.default_config")
    return omegaconf.OmegaConf.structured(module.ExperimentConfig)


def placeholder_handoffs(skill: Skill, action: str) -> dict[str, Any]:
    """What the resolver would hand over, as plausible URIs (secrets never go into a spec)."""
    act = skill.action(action)
    results = RESULTS.format(model=skill.name, action=action)
    parent = RESULTS.format(model=skill.name, action=act.parent or "train")
    parent_file = {"export": f"{parent}/{skill.name}.onnx", "gen_trt_engine": f"{parent}/{skill.name}.engine"}.get(
        act.parent or "", f"{parent}/model_epoch_009_step_00100.pth")
    values = {
        "output_dir": results,
        "parent_model": parent_file,
        "parent_model_folder": parent,
        "parent_model_or_ptm": parent_file,
        "ptm": "s3://bucket/ptm/model.pth",
        "ptm_if_no_resume_model": "s3://bucket/ptm/model.pth",
        "resume_model": None,
        "create_onnx_file": f"{results}/{skill.name}.onnx",
        "create_onnx_file_2d": f"{results}/{skill.name}_2d.onnx",
        "create_engine_file": f"{results}/{skill.name}.engine",
        "create_cal_cache": f"{results}/cal.bin",
    }
    return {key: values[fn] for key, fn in act.handoffs.items() if fn != "key"}


def render(model: str, action: str) -> dict[str, Any]:
    skill = load_skill(model)
    overrides = {**TYPICAL.get(model, {}).get("*", {}), **TYPICAL.get(model, {}).get(action, {})}
    if skill.action(action).tao_action == "train":
        overrides.update(skill.automl.overrides)
    upstream = {f"dataset_convert:{r}": RESULTS.format(model=model, action=f"dataset_convert-{r}")
                for r in ("train", "eval", "inference")}
    role = "eval" if skill.action(action).per_role else None
    return build_spec(skill, action, data=DATA, handoffs=placeholder_handoffs(skill, action),
                      overrides=overrides, upstream=upstream, role=role)


@pytest.mark.parametrize(("model", "action"), CASES)
def test_rendered_spec_merges_strictly_into_tao_core(model, action):
    skill = load_skill(model)
    spec = render(model, action)
    network = skill.action(action).network or skill.network
    merged = omegaconf.OmegaConf.merge(tao_config(network), spec)  # raises on unknown keys / wrong types
    for key, value in placeholder_handoffs(skill, action).items():
        if value is not None:
            assert omegaconf.OmegaConf.select(merged, key) == value
    for ds in skill.action(action).data_sources:
        assert omegaconf.OmegaConf.select(merged, ds.key) not in (None, "", "???"), ds.key


@pytest.mark.parametrize(("model", "action"), CASES)
def test_rendered_spec_passes_complete_validation(model, action):
    skill = load_skill(model)
    assert [str(p) for p in validate_spec(skill, action, render(model, action), complete=True)] == []


def test_strict_merge_does_reject_what_our_validator_rejects():
    """The reference check is really strict: an unknown key and a wrong type both fail TAO Core's merge."""
    base = tao_config("rtdetr")
    with pytest.raises(omegaconf.errors.ConfigKeyError):
        omegaconf.OmegaConf.merge(base, {"train": {"optim": {"lrr": 0.1}}})
    with pytest.raises(omegaconf.errors.ValidationError):
        omegaconf.OmegaConf.merge(base, {"train": {"num_epochs": "ten"}})
