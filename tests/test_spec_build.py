"""Spec builder and dotted keys: template ⊕ values ⊕ data sources ⊕ handoffs ⊕ overrides, per model."""

from __future__ import annotations

import pytest
import yaml

from taoflow.dotted import (
    delete_dotted,
    expand,
    flatten,
    get_dotted,
    parse_assignment,
    parse_value,
    set_dotted,
)
from taoflow.errors import UserError
from taoflow.skill import load_skill
from taoflow.spec import build_spec, dump_spec_yaml, join_uri, load_template

S3 = "s3://bucket/data"


# ------------------------------------------------------------------ dotted keys
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("10", 10),
        ("-3", -3),
        ("1e-4", 1e-4),
        ("2.5E3", 2500.0),
        (".5", 0.5),
        ("true", True),
        ("False", False),
        ("null", None),
        ("~", None),
        ("[1, 2]", [1, 2]),
        ("[1e-4, 2e-3]", [1e-4, 2e-3]),
        ("{catch: 0, smile: 1}", {"catch": 0, "smile": 1}),
        ("fan_small", "fan_small"),
        ("'10'", "10"),
        ('"1e-4"', "1e-4"),
        ("s3://bucket/a b", "s3://bucket/a b"),
        ("", ""),
    ],
)
def test_parse_value_reads_yaml_scalars(raw, expected):
    value = parse_value(raw)
    assert value == expected
    assert type(value) is type(expected)


def test_parse_assignment_splits_on_first_equals():
    assert parse_assignment("train.optim.lr=1e-4") == ("train.optim.lr", 1e-4)
    assert parse_assignment("dataset.train_data=s3://b/x?a=b") == ("dataset.train_data", "s3://b/x?a=b")


@pytest.mark.parametrize("bad", ["train.num_epochs", "=3", "train..lr=1", "train.num epochs=3"])
def test_parse_assignment_rejects_malformed_items(bad):
    with pytest.raises(UserError):
        parse_assignment(bad)


def test_set_get_delete_dotted():
    tree: dict = {"train": {"optim": {"lr": 1.0}}, "model": "x"}
    set_dotted(tree, "train.optim.momentum", 0.9)
    set_dotted(tree, "model.backbone", "resnet")  # replaces a non-mapping level
    assert get_dotted(tree, "train.optim") == {"lr": 1.0, "momentum": 0.9}
    assert tree["model"] == {"backbone": "resnet"}
    assert get_dotted(tree, "train.nope.deeper", "default") == "default"
    assert delete_dotted(tree, "train.optim.lr") is True
    assert delete_dotted(tree, "train.optim.lr") is False
    assert flatten(tree) == {"train.optim.momentum": 0.9, "model.backbone": "resnet"}


def test_expand_nests_and_merges_dotted_keys():
    assert expand({"a.b": 1, "a.c": 2, "d": {"e.f": 3}, "a": {"g": 4}}) == {
        "a": {"b": 1, "c": 2, "g": 4},
        "d": {"e": {"f": 3}},
    }


# ------------------------------------------------------------------ builder
def test_join_uri_keeps_scheme_and_single_slashes():
    assert join_uri("s3://bucket/train/", "images") == "s3://bucket/train/images"
    assert join_uri("s3://bucket/train", "") == "s3://bucket/train"
    assert join_uri("/data/train", "/meta/train.json") == "/data/train/meta/train.json"


def test_rtdetr_train_wraps_train_sources_in_a_list_and_keeps_template_order():
    skill = load_skill("rtdetr")
    spec = build_spec(
        skill, "train", data={"train": f"{S3}/train", "eval": f"{S3}/eval"},
        overrides=["dataset.num_classes=5", "train.num_epochs=10"],
    )
    assert spec["dataset"]["train_data_sources"] == [
        {"image_dir": f"{S3}/train/images", "json_file": f"{S3}/train/annotations.json"}
    ]
    assert spec["dataset"]["val_data_sources"] == {
        "image_dir": f"{S3}/eval/images", "json_file": f"{S3}/eval/annotations.json"
    }
    assert spec["dataset"]["num_classes"] == 5 and spec["train"]["num_epochs"] == 10
    template = load_template(skill, "train")
    assert list(spec) == list(template)  # overrides and data sources never reorder TAO's sections
    dumped = yaml.safe_load(dump_spec_yaml(spec))
    assert dumped == spec
    assert dump_spec_yaml(spec).splitlines()[0].split(":")[0] == next(iter(template))


def test_missing_roles_are_one_error_listing_every_key():
    with pytest.raises(UserError) as info:
        build_spec(load_skill("rtdetr"), "quantize", data={})
    text = str(info.value)
    for key in ("dataset.train_data_sources", "dataset.val_data_sources", "dataset.quant_calibration_data_sources"):
        assert key in text
    assert "--data train=URI" in text and "--data eval=URI" in text


def test_optional_sources_are_left_to_the_template():
    spec = build_spec(load_skill("rtdetr"), "train", data={"train": "/d/train"})
    assert spec["dataset"]["val_data_sources"] is None  # validation mAP only when an eval dataset is given


def test_unknown_role_and_unknown_action_are_user_errors():
    with pytest.raises(UserError, match="unknown dataset role"):
        build_spec(load_skill("rtdetr"), "train", data={"training": "/x"})
    with pytest.raises(UserError, match="has no action"):
        build_spec(load_skill("rtdetr"), "dataset_convert", data={})


def test_centerpose_reads_tarballs_and_falls_back_for_calibration():
    skill = load_skill("centerpose")
    train = build_spec(skill, "train", data={"train": f"{S3}/train", "eval": f"{S3}/eval"})
    assert train["dataset"]["train_data"] == f"{S3}/train/train.tar.gz"
    assert train["dataset"]["val_data"] == f"{S3}/eval/val.tar.gz"
    engine = build_spec(skill, "gen_trt_engine", data={"train": f"{S3}/train"})
    assert engine["gen_trt_engine"]["tensorrt"]["calibration"]["cal_image_dir"] == [f"{S3}/train/train.tar.gz"]
    engine = build_spec(skill, "gen_trt_engine", data={"train": f"{S3}/train", "calibration": f"{S3}/cal"})
    assert engine["gen_trt_engine"]["tensorrt"]["calibration"]["cal_image_dir"] == [f"{S3}/cal/train.tar.gz"]


def test_action_recognition_points_at_extracted_directories():
    skill = load_skill("action_recognition")
    spec = build_spec(skill, "train", data={"train": "/d/train", "eval": "/d/eval"})
    assert spec["dataset"]["train_dataset_dir"] == "/d/train/train"
    assert spec["dataset"]["val_dataset_dir"] == "/d/eval/test"
    assert spec["dataset"]["label_map"] == {"catch": 0, "smile": 1}
    only_train = build_spec(skill, "evaluate", data={"train": "/d/train"})
    assert only_train["evaluate"]["test_dataset_dir"] == "/d/train/test"  # TAO's own layout: test.tar.gz in train


def test_sparse4d_convert_runs_per_role_and_train_reads_its_outputs():
    skill = load_skill("sparse4d")
    data = {"train": f"{S3}/train", "eval": f"{S3}/eval"}
    convert = build_spec(skill, "dataset_convert", data=data, role="eval", handoffs={"results_dir": "s3://r/c-eval"})
    assert convert["aicity"]["root"] == f"{S3}/eval"
    assert convert["aicity"]["split"] == "val"
    assert convert["results_dir"] == "s3://r/c-eval"
    default_role = build_spec(skill, "dataset_convert", data=data)
    assert default_role["aicity"]["split"] == "train" and default_role["aicity"]["root"] == f"{S3}/train"
    with pytest.raises(UserError, match="not for 'calibration'"):
        build_spec(skill, "dataset_convert", data=data, role="calibration")

    upstream = {"dataset_convert:train": "s3://r/c-train", "dataset_convert:eval": "s3://r/c-eval",
                "dataset_convert": "s3://r/c-train"}
    train = build_spec(skill, "train", data=data, upstream=upstream)
    assert train["dataset"]["data_root"] == f"{S3}/train"
    assert train["model"]["head"]["instance_bank"]["anchor"] == "s3://r/c-train/anchor_init.npy"
    # the converter's per-split folders of per-scene pickles (docs/tao-contract.md D2, D6)
    assert train["dataset"]["train_dataset"]["ann_file"] == "s3://r/c-train/train"
    assert train["dataset"]["val_dataset"]["ann_file"] == "s3://r/c-eval/val"
    assert train["dataset"]["test_dataset"]["ann_file"] == "s3://r/c-eval/val"  # inference → eval's val split

    with pytest.raises(UserError) as info:
        build_spec(skill, "train", data=data, upstream={"dataset_convert": "s3://r/c-train"})
    assert "results of dataset_convert for the train dataset" in str(info.value)


def test_nvpanoptix3d_meta_files_values_and_test_split_fallback():
    skill = load_skill("nvpanoptix3d")
    spec = build_spec(skill, "evaluate", data={"eval": f"{S3}/eval"})
    dataset = spec["dataset"]
    assert dataset["frustum_mask_path"] == f"{S3}/eval/meta/frustum_mask.npz"
    assert dataset["label_map"] == f"{S3}/eval/meta/colormap.json"
    assert dataset["test"] == {**dataset["test"], "json_path": f"{S3}/eval/meta/val.json", "base_dir": f"{S3}/eval"}
    assert dataset["contiguous_id"] is True and dataset["enable_3d"] is True
    with_inference = build_spec(skill, "evaluate", data={"eval": f"{S3}/eval", "inference": f"{S3}/inf"})
    assert with_inference["dataset"]["test"]["json_path"] == f"{S3}/inf/meta/test.json"
    inference = build_spec(skill, "inference", data={"inference": f"{S3}/inf"})
    assert inference["inference"]["images_dir"] == f"{S3}/inf/images"


def test_override_layers_apply_in_order(tmp_path):
    skill = load_skill("action_recognition")
    file = tmp_path / "over.yaml"
    file.write_text(
        "train:\n  num_epochs: 3\n  optim:\n    lr: 0.01\n"
        "dataset:\n  label_map: {run: 0, walk: 1}\n"
        "train.checkpoint_interval: 2\n"
    )
    spec = build_spec(
        skill, "train", data={"train": "/d/train"}, handoffs={"results_dir": "/r", "train.num_epochs": 1},
        overrides_file=file, overrides={"train.num_epochs": 7},
    )
    assert spec["train"]["num_epochs"] == 7  # --set beats the file, the file beats handoffs
    assert spec["train"]["checkpoint_interval"] == 2
    assert spec["train"]["optim"]["lr"] == 0.01
    assert spec["train"]["optim"]["momentum"] == 0.9  # nested sections merge key by key
    assert spec["dataset"]["label_map"] == {"run": 0, "walk": 1}  # free-form maps are replaced, not merged
    assert spec["results_dir"] == "/r"
    replaced = build_spec(skill, "train", data={"train": "/d/train"}, overrides=["dataset.label_map={a: 0}"])
    assert replaced["dataset"]["label_map"] == {"a": 0}


def test_overrides_file_errors_name_the_file(tmp_path):
    skill = load_skill("rtdetr")
    data = {"train": "/d/train", "eval": "/d/eval"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("- just\n- a list\n")
    with pytest.raises(UserError, match=r"bad\.yaml must hold a YAML mapping"):
        build_spec(skill, "train", data=data, overrides_file=bad)
    with pytest.raises(UserError, match="cannot read overrides file"):
        build_spec(skill, "train", data=data, overrides_file=tmp_path / "absent.yaml")


def test_builder_never_mutates_the_cached_template():
    skill = load_skill("rtdetr")
    data = {"train": "/d/train", "eval": "/d/eval"}
    first = build_spec(skill, "train", data=data, overrides=["train.optim.lr=0.5"])
    first["dataset"]["augmentation"]["multi_scales"].append(1)
    second = build_spec(skill, "train", data=data)
    assert second["train"]["optim"]["lr"] != 0.5
    assert 1 not in second["dataset"]["augmentation"]["multi_scales"]
