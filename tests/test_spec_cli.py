"""`taoflow skills` and `taoflow spec` through the real CLI entry (`run_cli`): exit 0 when fine, 2 with one
line per problem (naming the dotted key) on stderr, never a traceback."""

from __future__ import annotations

import pytest
import yaml

import taoflow.commands  # noqa: F401 - registers the command groups on the app
from taoflow.cli import run_cli
from taoflow.skill import load_skill, skill_names
from taoflow.spec import build_spec, dump_spec_yaml

ACCEPTANCE = ["spec", "render", "rtdetr", "train", "--data", "train=s3://bucket/train", "--data",
              "eval=s3://bucket/eval", "--set", "dataset.num_classes=5", "--set", "train.num_epochs=10"]


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = run_cli(list(argv))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.out, captured.err


def test_skills_list_shows_the_five_models(capsys):
    code, out, _ = cli(capsys, "skills", "list")
    assert code == 0
    for model in ("rtdetr", "centerpose", "action_recognition", "sparse4d", "nvpanoptix3d"):
        assert model in out
    for text in ("val_mAP (maximize)", "train_loss (minimize)", "front3d, matterport", "6.26.3-data-services"):
        assert text in out


def test_skills_show_prints_actions_sources_and_remedies(capsys):
    code, out, _ = cli(capsys, "skills", "show", "sparse4d")
    assert code == 0
    assert "annotations convert" in out and "anchor_init.npy" in out and "per role" in out
    assert "missing_anchor" in out
    code, _, err = cli(capsys, "skills", "show", "yolo")
    assert code == 2 and "unknown model 'yolo'" in err


def test_acceptance_render_prints_a_spec_tao_core_accepts_strictly(capsys):
    code, out, err = cli(capsys, *ACCEPTANCE)
    assert code == 0, err
    spec = yaml.safe_load(out)
    assert spec["dataset"]["num_classes"] == 5 and spec["train"]["num_epochs"] == 10
    assert spec["dataset"]["train_data_sources"][0]["json_file"] == "s3://bucket/train/annotations.json"
    omegaconf = pytest.importorskip("omegaconf")
    from nvidia_tao_core.config.rtdetr.default_config import ExperimentConfig

    merged = omegaconf.OmegaConf.merge(omegaconf.OmegaConf.structured(ExperimentConfig), spec)
    assert merged.dataset.val_data_sources.image_dir == "s3://bucket/eval/images"


def test_render_to_file_with_overrides_file_upstream_and_role(capsys, tmp_path):
    overrides = tmp_path / "over.yaml"
    overrides.write_text("train:\n  num_epochs: 4\n")
    out_file = tmp_path / "out" / "train.yaml"
    code, out, err = cli(
        capsys, "spec", "render", "sparse4d", "train", "--data", "train=/d/train", "--data", "eval=/d/eval",
        "--upstream", "dataset_convert:train=/r/ct", "--upstream", "dataset_convert:eval=/r/ce",
        "--overrides", str(overrides), "--set", "train.optim.lr=1e-4", "-o", str(out_file),
    )
    assert code == 0, err
    assert out == "" and "wrote" in err
    spec = yaml.safe_load(out_file.read_text())
    assert spec["train"]["num_epochs"] == 4 and spec["train"]["optim"]["lr"] == 1e-4
    assert spec["model"]["head"]["instance_bank"]["anchor"] == "/r/ct/anchor_init.npy"
    code, out, err = cli(capsys, "spec", "render", "sparse4d", "dataset_convert", "--data", "eval=/d/eval",
                         "--role", "eval")
    assert code == 0, err
    assert yaml.safe_load(out)["aicity"] == {**yaml.safe_load(out)["aicity"], "root": "/d/eval", "split": "val"}


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["spec", "render", "rtdetr", "evaluate", "--data", "train=/t"], "dataset.test_data_sources needs dataset role eval"),
        (["spec", "render", "rtdetr", "train", "--data", "train"], "invalid --data 'train'"),
        (["spec", "render", "rtdetr", "train", "--data", "train=/t", "--data", "eval=/e", "--set", "train.num_epochs"],
         "invalid override"),
        (["spec", "render", "rtdetr", "train", "--data", "train=/t", "--data", "eval=/e", "--set", "train.epochs=3"],
         "train.epochs: unknown key; did you mean 'train.num_epochs'?"),
        (["spec", "render", "rtdetr", "fly", "--data", "train=/t"], "rtdetr has no action 'fly'"),
        (["spec", "render", "rtdetr", "export", "--set", "export.input_width=960"], "export.input_width: must be 640"),
        (["spec", "render", "rtdetr", "export", "--force", "shape"], "unknown --force shape"),
    ],
)
def test_render_user_errors_exit_2_with_the_reason(capsys, argv, expected):
    code, _, err = cli(capsys, *argv)
    assert code == 2
    assert expected in " ".join(err.split())


def test_render_force_accepts_a_non_640_export(capsys):
    code, out, err = cli(capsys, "spec", "render", "rtdetr", "export", "--set", "export.input_width=960",
                         "--force", "export_shape")
    assert code == 0, err
    assert yaml.safe_load(out)["export"]["input_width"] == 960


def _write(tmp_path, spec: dict) -> str:
    path = tmp_path / "spec.yaml"
    path.write_text(dump_spec_yaml(spec))
    return str(path)


def _template(model: str, action: str) -> dict:
    return yaml.safe_load((load_skill(model).directory / "templates" / f"{action}.yaml").read_text())


def _case_unknown_top_level():
    spec = _template("rtdetr", "train")
    spec["trainer"] = {"num_epochs": 3}
    return "rtdetr", "train", spec, ["trainer: unknown key"]


def _case_misspelt_nested():
    spec = _template("rtdetr", "train")
    spec["train"]["optim"]["lrr"] = 0.001
    return "rtdetr", "train", spec, ["train.optim.lrr: unknown key; did you mean 'train.optim.lr'?"]


def _case_string_for_integer():
    spec = _template("centerpose", "train")
    spec["train"]["num_epochs"] = "thirty"
    spec["dataset"]["batch_size"] = "4x"
    return "centerpose", "train", spec, ["train.num_epochs: must be an integer (got 'thirty')",
                                         "dataset.batch_size: must be an integer"]


def _case_fp16():
    spec = _template("nvpanoptix3d", "train")
    spec["train"]["precision"] = "fp16"
    return "nvpanoptix3d", "train", spec, ["train.precision: must be fp32"]


def _case_tarball_dir():
    spec = _template("action_recognition", "train")
    spec["dataset"]["train_dataset_dir"] = "/data/train.tar.gz"
    return "action_recognition", "train", spec, ["dataset.train_dataset_dir: must be a directory"]


def _case_sparse4d_no_anchor():
    skill = load_skill("sparse4d")
    spec = build_spec(skill, "train", data={"train": "/d/train", "eval": "/d/eval"},
                      upstream={"dataset_convert:train": "/r/ct", "dataset_convert:eval": "/r/ce"})
    del spec["model"]["head"]["instance_bank"]["anchor"]
    return "sparse4d", "train", spec, ["model.head.instance_bank.anchor: required for train"]


@pytest.mark.parametrize("case", [_case_unknown_top_level, _case_misspelt_nested, _case_string_for_integer,
                                  _case_fp16, _case_tarball_dir, _case_sparse4d_no_anchor])
def test_validate_exits_2_naming_the_dotted_key(capsys, tmp_path, case):
    model, action, spec, expected = case()
    code, _, err = cli(capsys, "spec", "validate", model, action, _write(tmp_path, spec))
    assert code == 2
    lines = [" ".join(line.split()) for line in err.splitlines()]
    for text in expected:
        assert any(text in line for line in lines), (text, err)


@pytest.mark.parametrize("model", skill_names())
def test_validate_exits_0_on_every_shipped_template(capsys, model):
    for action in load_skill(model).actions:
        path = load_skill(model).directory / "templates" / f"{action}.yaml"
        code, out, err = cli(capsys, "spec", "validate", model, action, str(path))
        assert code == 0, (action, err)
        assert "valid" in out


def test_validate_file_errors_are_user_errors(capsys, tmp_path):
    code, _, err = cli(capsys, "spec", "validate", "rtdetr", "train", str(tmp_path / "nope.yaml"))
    assert code == 2 and "cannot read spec file" in " ".join(err.split())
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    code, _, err = cli(capsys, "spec", "validate", "rtdetr", "train", str(bad))
    assert code == 2 and "not valid YAML" in " ".join(err.split())
    bad.write_text("- a\n- b\n")
    code, _, err = cli(capsys, "spec", "validate", "rtdetr", "train", str(bad))
    assert code == 2 and "must hold a YAML mapping" in " ".join(err.split())


def test_validate_complete_asks_for_mandatory_values(capsys):
    path = load_skill("rtdetr").directory / "templates" / "evaluate.yaml"
    code, _, err = cli(capsys, "spec", "validate", "rtdetr", "evaluate", str(path), "--complete")
    assert code == 2 and "evaluate.checkpoint" in err


# ------------------------------------------------------------------ values the user gives satisfy data sources
def test_user_values_satisfy_handoff_inputs(capsys):
    """An anchor or annotation file the user names needs no --data/--upstream (issue 10, point 3)."""
    code, out, err = cli(capsys, "spec", "render", "sparse4d", "export", "--set",
                         "model.head.instance_bank.anchor=/r/anchor_init.npy",
                         "--handoff", "export.checkpoint=/r/train/model_epoch_004_step_00050.pth")
    assert code == 0, err
    assert yaml.safe_load(out)["model"]["head"]["instance_bank"]["anchor"] == "/r/anchor_init.npy"
    ann = ["--set", "dataset.train_dataset.ann_file=/r/ct/train", "--set", "dataset.val_dataset.ann_file=/r/ce/val",
           "--set", "dataset.test_dataset.ann_file=/r/ce/val", "--set", "model.head.instance_bank.anchor=/r/ct/a.npy"]
    for action in ("train", "evaluate"):
        code, out, err = cli(capsys, "spec", "render", "sparse4d", action, "--data", "train=/d/train", "--data",
                             "eval=/d/eval", *ann)
        assert code == 0, err
        dataset = yaml.safe_load(out)["dataset"]
        assert dataset["train_dataset"]["ann_file"] == "/r/ct/train" and dataset["val_dataset"]["ann_file"] == "/r/ce/val"
    # a whole section given as a mapping covers the keys under it
    code, _, err = cli(capsys, "spec", "render", "sparse4d", "export", "--set",
                       "model.head.instance_bank={anchor: /r/a.npy, num_anchor: 900}")
    assert code == 0, err
    # what is still missing is named, with both ways to give it
    code, _, err = cli(capsys, "spec", "render", "sparse4d", "train", "--data", "train=/d/train", *ann[:2])
    assert code == 2 and "dataset.val_dataset.ann_file needs" in err and "--set dataset.val_dataset.ann_file=" in err


# ------------------------------------------------------------------ warnings never change the exit code
def test_warnings_are_printed_and_exit_0(capsys, tmp_path):
    spec = tmp_path / "engine.yaml"
    spec.write_text("gen_trt_engine:\n  tensorrt:\n    data_type: fp32\n    opt_batch_size: 2\n    max_batch_size: 4\n")
    code, out, err = cli(capsys, "spec", "validate", "centerpose", "gen_trt_engine", str(spec))
    assert code == 0 and "2 warning(s)" in out
    assert "warning: gen_trt_engine.tensorrt.max_batch_size: outside TAO's suggested values (should be >= 8)" in " ".join(
        err.split())
    placeholders = tmp_path / "evaluate.yaml"
    placeholders.write_text("dataset:\n  label_map: {walk: 0}\nevaluate:\n  checkpoint: '??'\n  test_dataset_dir: /d/test\n")
    code, _, err = cli(capsys, "spec", "validate", "action_recognition", "evaluate", str(placeholders))
    assert code == 0 and "evaluate.checkpoint: is NVIDIA's '??' placeholder" in err
    code, _, err = cli(capsys, "spec", "validate", "action_recognition", "evaluate", str(placeholders), "--complete")
    assert code == 2 and "error:" in err and "evaluate.checkpoint" in err


def test_every_rejected_key_is_named_with_what_was_found_and_what_tao_allows(capsys, tmp_path):
    spec = tmp_path / "train.yaml"
    spec.write_text("model_config: {}\ntrain:\n  num_epochs: 7.5\n  precision: fp64\n"
                    "dataset:\n  augmentation:\n    multi_scales: [[480, 800, 3]]\n")
    code, _, err = cli(capsys, "spec", "validate", "rtdetr", "train", str(spec))
    text = " ".join(err.split())
    assert code == 2
    assert "model_config: unknown key" in text
    assert "train.num_epochs: must be an integer (got 7.5)" in text
    assert "train.precision: must be one of: bf16, fp32, fp16 (any case) (got 'fp64')" in text
    assert "dataset.augmentation.multi_scales[0]: must have at most 2 item(s) (got [480, 800, 3])" in text
