"""Validator: JSON schema + model rules against A1's generated schemas, every problem at once, named by key.

Remote annotation reads go through moto's S3 *server* on loopback (tests.s3server), not in-process mocks."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from taoflow.errors import UserError
from taoflow.skill import load_skill, skill_names
from taoflow.spec import build_spec, load_template
from taoflow.validate import Problem, check_spec, validate_spec, validation_report
from tests.s3server import s3_root, s3_server  # noqa: F401

TEMPLATES = [(m, a) for m in skill_names() for a in load_skill(m).actions]


def _keys(problems: list[Problem]) -> list[str]:
    return [p.key for p in problems]


def _one(problems: list[Problem], key: str) -> Problem:
    found = [p for p in problems if p.key == key]
    assert found, f"no problem for {key}: {[str(p) for p in problems]}"
    return found[0]


@pytest.mark.parametrize(("model", "action"), TEMPLATES)
def test_every_shipped_template_is_valid(model, action):
    skill = load_skill(model)
    assert (skill.directory / "templates" / f"{action}.yaml").is_file()
    assert validate_spec(skill, action, load_template(skill, action)) == []


def test_schema_problems_are_all_reported_at_once_with_key_value_and_allowed():
    skill = load_skill("rtdetr")
    spec = load_template(skill, "train")
    spec["trian"] = {"num_epochs": 3}
    spec["train"]["optim"]["lrr"] = 0.1
    spec["train"]["lr"] = 3
    spec["train"]["num_epochs"] = "ten"
    spec["dataset"]["batch_size"] = 0
    spec["model"]["backbone"] = "resnet_5"
    report = validation_report(skill, "train", spec)
    problems = report.errors
    assert sorted(_keys(problems)) == sorted(["trian", "train.optim.lrr", "train.lr", "train.num_epochs", "model.backbone"])
    assert "did you mean 'train'?" in str(_one(problems, "trian"))
    assert "did you mean 'train.optim.lr'?" in str(_one(problems, "train.optim.lrr"))
    assert "did you mean 'train.optim.lr'?" in str(_one(problems, "train.lr"))  # right name, wrong level
    assert str(_one(problems, "train.num_epochs")) == "train.num_epochs: must be an integer (got 'ten')"
    # TAO's valid_min is metadata TAO does not enforce: a warning, not an error
    batch = str(_one(report.warnings, "dataset.batch_size"))
    assert "should be >= 1" in batch and "(got 0)" in batch
    backbone = str(_one(problems, "model.backbone"))
    assert "must be one of:" in backbone and "resnet_50" in backbone and "'resnet_5'" in backbone


def test_unknown_key_far_from_any_name_lists_the_allowed_keys():
    skill = load_skill("centerpose")
    problems = validate_spec(skill, "train", {"train": {"zzzzzz": 1}})
    assert "allowed keys under train:" in str(_one(problems, "train.zzzzzz"))


def test_nullable_and_list_items_are_checked_inside():
    skill = load_skill("rtdetr")
    spec = {"dataset": {"train_data_sources": [{"image_dir": "/i", "json_file": 3}], "eval_class_ids": ["a"]}}
    problems = validate_spec(skill, "train", spec)
    assert "dataset.train_data_sources[0].json_file" in _keys(problems)
    assert any(k.startswith("dataset.eval_class_ids") for k in _keys(problems))


def test_check_spec_raises_one_user_error_listing_every_problem():
    skill = load_skill("rtdetr")
    with pytest.raises(UserError) as info:
        check_spec(skill, "train", {"bogus": 1, "train": {"num_epochs": "x"}})
    assert len(info.value.problems) == 2
    assert "bogus: unknown key" in str(info.value) and "train.num_epochs" in str(info.value)


# ------------------------------------------------------------------ completeness
def test_complete_requires_mandatory_values_only_in_sections_the_action_reads():
    skill = load_skill("rtdetr")
    spec = load_template(skill, "evaluate")
    problems = validate_spec(skill, "evaluate", spec, complete=True)
    assert _keys(problems) == ["evaluate.checkpoint"]
    assert "mandatory" in str(problems[0])
    spec["evaluate"]["checkpoint"] = "/r/model_epoch_009_step_00100.pth"
    assert validate_spec(skill, "evaluate", spec, complete=True) == []


def test_deploy_evaluate_does_not_ask_for_a_checkpoint():
    skill = load_skill("rtdetr")
    spec = build_spec(skill, "trt_evaluate", data={"eval": "/d/eval"},
                      handoffs={"evaluate.trt_engine": "/r/model.engine", "results_dir": "/r"})
    assert validate_spec(skill, "trt_evaluate", spec, complete=True) == []


# ------------------------------------------------------------------ rules
def test_nvpanoptix3d_train_precision_must_be_fp32():
    skill = load_skill("nvpanoptix3d")
    spec = load_template(skill, "train")
    spec["train"]["precision"] = "fp16"
    problem = _one(validate_spec(skill, "train", spec), "train.precision")
    assert "Only fp32 precision is supported" in str(problem) and "'fp16'" in str(problem)


def test_nvpanoptix3d_downsample_factor_follows_the_dataset():
    skill = load_skill("nvpanoptix3d")
    spec = load_template(skill, "train")
    spec["dataset"]["name"] = "matterport"
    assert "must be 2" in str(_one(validate_spec(skill, "train", spec), "dataset.downsample_factor"))
    spec["dataset"]["downsample_factor"] = 2
    assert _keys(validate_spec(skill, "train", spec)) == ["dataset.iso_value"]
    spec["dataset"]["iso_value"] = 2.0
    assert validate_spec(skill, "train", spec) == []


def test_nvpanoptix3d_contiguous_id_when_the_label_map_has_train_ids(tmp_path):
    skill = load_skill("nvpanoptix3d")
    colormap = tmp_path / "colormap.json"
    colormap.write_text(json.dumps([{"id": 0, "name": "wall", "trainId": 0}]))
    spec = {"dataset": {"label_map": str(colormap), "contiguous_id": False}}
    problem = _one(validate_spec(skill, "train", spec), "dataset.contiguous_id")
    assert "trainId" in str(problem)
    spec["dataset"]["contiguous_id"] = True
    assert validate_spec(skill, "train", spec) == []
    colormap.write_text(json.dumps([{"id": 0, "name": "wall"}]))
    assert validate_spec(skill, "train", {"dataset": {"label_map": str(colormap)}}) == []


@pytest.mark.parametrize("key", ["dataset.train_dataset_dir", "dataset.val_dataset_dir"])
def test_action_recognition_dataset_dirs_are_not_archives(key):
    skill = load_skill("action_recognition")
    spec = build_spec(skill, "train", data={"train": "/d/train", "eval": "/d/eval"},
                      overrides={key: "/d/train/train.tar.gz"})
    problem = _one(validate_spec(skill, "train", spec), key)
    assert "NotADirectoryError" in str(problem) and "train.tar.gz" in str(problem)


def test_action_recognition_evaluate_needs_the_label_map():
    skill = load_skill("action_recognition")
    spec = build_spec(skill, "evaluate", data={"eval": "/d/eval"},
                      handoffs={"evaluate.checkpoint": "/r/model_epoch_001_step_00010.pth"})
    assert validate_spec(skill, "evaluate", spec) == []
    spec["dataset"]["label_map"] = None
    assert "required for evaluate" in str(_one(validate_spec(skill, "evaluate", spec), "dataset.label_map"))


def test_action_recognition_label_map_classes_need_folders(tmp_path):
    skill = load_skill("action_recognition")
    for cls in ("catch", "smile"):
        (tmp_path / "train" / cls).mkdir(parents=True)
    spec = {"dataset": {"train_dataset_dir": str(tmp_path / "train"), "label_map": {"catch": 0, "run": 1}}}
    assert "['run'] have no folder" in str(_one(validate_spec(skill, "train", spec), "dataset.label_map"))


def _sparse4d_train_spec() -> dict:
    upstream = {"dataset_convert:train": "/r/c-train", "dataset_convert:eval": "/r/c-eval"}
    return build_spec(load_skill("sparse4d"), "train", data={"train": "/d/train", "eval": "/d/eval"},
                      upstream=upstream)


@pytest.mark.parametrize("missing", ["delete", "", None])
def test_sparse4d_train_without_anchor_is_rejected(missing):
    spec = _sparse4d_train_spec()
    assert validate_spec(load_skill("sparse4d"), "train", spec) == []
    if missing == "delete":
        del spec["model"]["head"]["instance_bank"]["anchor"]
    else:
        spec["model"]["head"]["instance_bank"]["anchor"] = missing
    problems = validate_spec(load_skill("sparse4d"), "train", spec)
    texts = [str(p) for p in problems if p.key == "model.head.instance_bank.anchor"]
    assert any("anchor_init.npy" in t for t in texts), texts


@pytest.mark.parametrize("action", ["evaluate", "inference", "export", "quantize"])
def test_sparse4d_anchor_is_required_by_every_model_action(action):
    skill = load_skill("sparse4d")
    spec = load_template(skill, action)
    parent_key = {"evaluate": "evaluate.checkpoint", "inference": "inference.checkpoint",
                  "export": "export.checkpoint", "quantize": "quantize.model_path"}[action]
    section, leaf = parent_key.split(".")
    spec[section][leaf] = "/r/train/model_epoch_004_step_00050.pth"
    assert "model.head.instance_bank.anchor" in _keys(validate_spec(skill, action, spec))
    # the untouched template is a skeleton: only complete validation asks for the run's inputs
    assert "model.head.instance_bank.anchor" in _keys(
        validate_spec(skill, action, load_template(skill, action), complete=True)
    )


def test_centerpose_num_joints_and_pnp_intrinsics():
    skill = load_skill("centerpose")
    assert "dataset.num_joints" in _keys(validate_spec(skill, "train", {"dataset": {"num_joints": 9}}))
    spec = build_spec(skill, "inference", data={"inference": "/d/inference"},
                      handoffs={"inference.checkpoint": "/r/model_epoch_001_step_00010.pth"})
    problems = validate_spec(skill, "inference", spec)
    assert sorted(_keys(problems)) == sorted(
        ["inference.focal_length_x", "inference.focal_length_y", "inference.principle_point_x",
         "inference.principle_point_y"]
    )
    for key, value in (("focal_length_x", 615.0), ("focal_length_y", 615.0), ("principle_point_x", 320.0),
                       ("principle_point_y", 240.0)):
        spec["inference"][key] = value
    assert validate_spec(skill, "inference", spec) == []
    spec["inference"]["focal_length_x"] = 0.0
    spec["inference"]["use_pnp"] = False
    assert validate_spec(skill, "inference", spec) == []


def _coco(path, category_ids):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 8}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": category_ids[-1], "bbox": [0, 0, 2, 2]}],
        "categories": [{"id": i, "name": f"c{i}"} for i in category_ids],
    }))


def test_rtdetr_num_classes_and_eval_class_ids_against_local_annotations(tmp_path):
    skill = load_skill("rtdetr")
    _coco(tmp_path / "train" / "annotations.json", [1, 2, 3, 4])
    _coco(tmp_path / "eval" / "annotations.json", [1, 2, 3, 4])
    data = {"train": str(tmp_path / "train"), "eval": str(tmp_path / "eval")}
    spec = build_spec(skill, "train", data=data, overrides=["dataset.num_classes=4", "dataset.eval_class_ids=[1, 5]"])
    problems = validate_spec(skill, "train", spec)
    assert "max(category_id) + 1 = 5" in str(_one(problems, "dataset.num_classes"))
    assert "[5]" in str(_one(problems, "dataset.eval_class_ids"))
    good = build_spec(skill, "train", data=data, overrides=["dataset.num_classes=5", "dataset.eval_class_ids=[1, 2, 3, 4]"])
    assert validate_spec(skill, "train", good) == []
    # unreadable annotations are skipped silently (the dataset preflight reports them)
    missing = build_spec(skill, "train", data={"train": "/nowhere/train", "eval": "/nowhere/eval"},
                         overrides=["dataset.num_classes=2"])
    assert validate_spec(skill, "train", missing) == []


def test_rtdetr_num_classes_reads_annotations_from_s3(s3_root, tmp_path):  # noqa: F811
    from taoflow.store import ArtifactStore

    store = ArtifactStore(s3_root)
    _coco(tmp_path / "annotations.json", [1, 2, 7])
    store.upload_file(str(tmp_path / "annotations.json"), f"{s3_root}/train/annotations.json")
    skill = load_skill("rtdetr")
    spec = build_spec(skill, "train", data={"train": f"{s3_root}/train", "eval": f"{s3_root}/eval"},
                      overrides=["dataset.num_classes=5"])
    assert "max(category_id) + 1 = 8" in str(_one(validate_spec(skill, "train", spec), "dataset.num_classes"))
    assert validate_spec(skill, "train", spec, read_data=False) == []


def test_rtdetr_export_shape_is_640_unless_forced():
    skill = load_skill("rtdetr")
    spec = copy.deepcopy(load_template(skill, "export"))
    spec["export"]["input_width"], spec["export"]["input_height"] = 960, 544
    problems = validate_spec(skill, "export", spec)
    assert sorted(_keys(problems)) == ["export.input_height", "export.input_width"]
    assert "--force export_shape" in str(problems[0])
    assert validate_spec(skill, "export", spec, force=["export_shape"]) == []


def test_problem_text_names_key_value_and_rule():
    problem = Problem("train.precision", "fp16", "must be fp32")
    assert str(problem) == "train.precision: must be fp32 (got 'fp16')"
    assert yaml.safe_load("a: 1")  # keep yaml imported for template fixtures


def test_rtdetr_feature_levels_and_distill_bindings():
    skill = load_skill("rtdetr")
    problems = validate_spec(skill, "train", {"model": {"return_interm_indices": [1, 2], "num_feature_levels": 3}})
    assert "num_feature_levels (3)" in str(_one(problems, "model.return_interm_indices"))
    spec = load_template(skill, "distill")
    assert validate_spec(skill, "distill", spec) == []
    spec["distill"]["bindings"] = [{"student_module_name": "pred_logits", "teacher_module_name": "srcs",
                                    "criterion": "IOU", "weight": 1.0}]
    assert _keys(validate_spec(skill, "distill", spec)) == ["distill.bindings[0].student_module_name"]


def test_nvpanoptix3d_other_strategies_are_ignored_with_a_warning():
    """NVPanoptix3D's trainer runs anything but ddp with Lightning's default (nvidia-tao-pytorch 7.3.0,
    cv/nvpanoptix3d/scripts/train.py:46-51): TAO accepts fsdp, so it is a warning."""
    skill = load_skill("nvpanoptix3d")
    report = validation_report(skill, "train", {"train": {"distributed_strategy": "fsdp"}})
    assert report.errors == []
    assert "is ignored" in str(_one(report.warnings, "train.distributed_strategy"))
    # TAO lower-cases both the option and the precision check
    assert validate_spec(skill, "train", {"train": {"distributed_strategy": "DDP", "precision": "FP32"}}) == []
