"""The skill bank: every skill loads, agrees with TAO Core 7.3.0's network configs and schemas, and its error
patterns classify the real messages quoted in NVIDIA's notes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from taoflow.errors import UserError
from taoflow.skill import load_skill, skill_names, skills_dir
from taoflow.validate import load_schema

MODELS = ["action_recognition", "centerpose", "nvpanoptix3d", "rtdetr", "sparse4d"]


def tao_network_config(model: str) -> dict | None:
    try:
        import nvidia_tao_core
    except ImportError:
        return None
    path = Path(nvidia_tao_core.__file__).parent / "microservices/handlers/network_configs" / f"{model}.config.json"
    return json.loads(path.read_text())


def test_five_models_load_with_their_pipelines():
    assert skill_names() == MODELS
    pipelines = {m: load_skill(m).pipeline for m in MODELS}
    assert pipelines == {
        "action_recognition": ["train", "evaluate", "export"],
        "centerpose": ["train", "evaluate", "export", "gen_trt_engine", "trt_evaluate"],
        "nvpanoptix3d": ["train", "evaluate", "export"],
        "rtdetr": ["train", "evaluate", "export", "quantize", "gen_trt_engine", "trt_evaluate"],
        "sparse4d": ["dataset_convert", "train", "evaluate", "export", "quantize"],
    }
    assert "inference" in load_skill("centerpose").actions and "distill" in load_skill("rtdetr").actions


def test_entry_points_and_images():
    nvp = load_skill("nvpanoptix3d").action("train")
    assert nvp.argv == ["python", "-m", "nvidia_tao_pytorch.cv.nvpanoptix3d.entrypoint.nvpanoptix3d", "train",
                        "-e", "{spec}"]
    convert = load_skill("sparse4d").action("dataset_convert")
    assert (convert.network, convert.tao_action, convert.image.value) == ("annotations", "convert", "data-services")
    assert convert.argv[:2] == ["annotations", "convert"] and set(convert.per_role) == {"train", "eval", "inference"}
    for model in ("rtdetr", "centerpose"):
        trt = load_skill(model).action("trt_evaluate")
        assert (trt.tao_action, trt.image.value, trt.parent) == ("evaluate", "deploy", "gen_trt_engine")
        assert trt.handoffs["evaluate.trt_engine"] == "parent_model"
    assert load_skill("nvpanoptix3d").action("export").handoffs["export.onnx_file_2d"] == "create_onnx_file_2d"


def test_automl_and_monitoring_follow_tao_core_and_the_notes():
    automl = {m: (load_skill(m).automl.metric, load_skill(m).automl.direction) for m in MODELS}
    assert automl == {
        "action_recognition": ("val_loss", "minimize"),
        "centerpose": ("val_3DIoU", "maximize"),
        "nvpanoptix3d": ("train_loss", "minimize"),
        "rtdetr": ("val_mAP", "maximize"),
        "sparse4d": ("val_mAP", "maximize"),
    }
    assert load_skill("nvpanoptix3d").automl.overrides == {"train.optim.monitor_name": "train_loss"}
    for model in MODELS:
        config = tao_network_config(model)
        if config is None:
            pytest.skip("nvidia-tao-core not installed")
        declared = config["metrics"]["monitoring_metric"]
        if declared != "kpi":  # nvpanoptix3d's placeholder; PRQ is its panoptic KPI
            assert load_skill(model).monitoring.metric == declared


@pytest.mark.parametrize("model", MODELS)
def test_handoffs_match_tao_core_spec_params(model):
    config = tao_network_config(model)
    if config is None:
        pytest.skip("nvidia-tao-core not installed")
    skill = load_skill(model)
    ours: dict[str, dict[str, str]] = {}
    for action in skill.actions.values():
        ours.setdefault(action.tao_action, {}).update(action.handoffs)
    theirs = {("convert" if a == "dataset_convert" else a): dict(v) for a, v in config["spec_params"].items()}
    if model == "nvpanoptix3d":
        # TAO Core never implemented create_onnx_file_3d and the export entrypoint writes only the 2D model.
        assert theirs["export"].pop("export.onnx_file_3d") == "create_onnx_file_3d"
    if "inference" in theirs:
        # TensorRT inference (deploy image, inference.trt_engine) is not one of the skill's actions.
        theirs["inference"].pop("inference.trt_engine", None)
    for tao_action, mapping in theirs.items():
        assert ours.get(tao_action) == mapping, tao_action


@pytest.mark.parametrize("model", MODELS)
def test_data_source_keys_match_tao_core(model):
    config = tao_network_config(model)
    if config is None:
        pytest.skip("nvidia-tao-core not installed")
    skill = load_skill(model)
    for tao_step, sources in config["data_sources"].items():
        # TAO's value entries (nvpanoptix3d contiguous_id, name/downsample/iso from metadata) are
        # fixed values or rules here, not dataset paths.
        paths = {k for k, v in sources.items() if "value" not in v and "value_from_metadata" not in v}
        step = "dataset_convert" if tao_step == "dataset_convert" else tao_step
        assert {ds.key for ds in skill.action(step).data_sources} == paths, step


@pytest.mark.parametrize("model", MODELS)
def test_every_key_the_skill_names_exists_in_the_schema(model):
    skill = load_skill(model)
    for name, action in skill.actions.items():
        compiled = load_schema(skill, name)
        assert compiled is not None, f"{model} {name}: no schema"
        known = set(compiled.all_keys)
        named = [ds.key for ds in action.data_sources] + list(action.handoffs) + list(action.values)
        named += list(action.ignore_missing)
        for overrides in (action.per_role or {}).values():
            named += list(overrides)
        if action.tao_action == "train":
            named += list(skill.automl.overrides)
        assert [k for k in named if k not in known] == [], f"{model} {name}"


# Messages quoted in NVIDIA's notes (or printed by the tools they name) → (pattern name, class).
LOGS = [
    ("nvpanoptix3d", "Traceback (most recent call last):\nValueError: Only fp32 precision is supported",
     "fp16_rejected", "spec"),
    ("nvpanoptix3d", "/bin/sh: 1: nvpanoptix3d: not found", "console_script_missing", "program"),
    ("nvpanoptix3d", "FileNotFoundError: [Errno 2] No such file or directory: '/data/meta/frustum_mask.npz'",
     "missing_frustum_mask", "spec"),
    ("nvpanoptix3d", "ValueError: num_samples should be a positive integer value, but got num_samples=0",
     "inference_dataloader_empty", "spec"),
    ("nvpanoptix3d", "KeyError: 'trainId'", "label_map_without_train_id", "spec"),
    ("nvpanoptix3d", "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", "cuda_oom", "infra"),
    ("action_recognition", "NotADirectoryError: [Errno 20] Not a directory: '/data/train.tar.gz/catch'",
     "dataset_not_a_directory", "spec"),
    ("action_recognition", "AttributeError: 'NoneType' object has no attribute 'keys'", "missing_label_map", "spec"),
    ("rtdetr", "RuntimeError: CUDA error: device-side assert triggered", "category_id_assert", "spec"),
    ("rtdetr", ("RuntimeError: The size of tensor a (1020) must match the size of tensor b (1200) at non-singleton "
     "dimension 1"), "export_shape_mismatch", "spec"),
    ("rtdetr", "usage: rtdetr [-h] {train,evaluate}\nrtdetr: error: argument subtask: invalid choice: 'gen_trt_engine'",
     "gen_trt_engine_in_pyt_image", "program"),
    ("sparse4d", "FileNotFoundError: [Errno 2] No such file or directory: '/results/convert/anchor_init.npy'",
     "missing_anchor", "spec"),
    ("sparse4d", "FileNotFoundError: [Errno 2] No such file or directory: '/results/convert/annotations.pkl'",
     "dataset_convert_required", "spec"),
    ("centerpose", "RuntimeError: Error(s) in loading state_dict: size mismatch for hm_hp.2.weight",
     "num_joints_mismatch", "spec"),
    # common.yaml, merged into every skill
    ("centerpose", "torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:1970", "nccl", "infra"),
    ("sparse4d", "Epoch 3: 40%\nKilled\n", "oom_killed", "infra"),
    ("action_recognition", ("ERROR: Unexpected bus error encountered in worker. This might be caused by insufficient "
     "shared memory (shm).\nRuntimeError: DataLoader worker (pid 412) is killed by signal: Bus error."),
     "shared_memory", "infra"),
    ("rtdetr", "omegaconf.errors.ConfigKeyError: Key 'lrr' not in 'OptimConfig'\n    full_key: train.optim.lrr",
     "spec_rejected", "spec"),
]


@pytest.mark.parametrize(("model", "log", "name", "failure_class"), LOGS)
def test_error_patterns_classify_real_messages(model, log, name, failure_class):
    found = load_skill(model).classify(log)
    assert found is not None and (found.name, found.failure_class) == (name, failure_class)
    assert found.remedy


def test_printed_config_alone_classifies_as_nothing():
    """TAO prints the whole spec at start; key names in it must not look like failures."""
    for model in MODELS:
        skill = load_skill(model)
        spec_dump = (skill.directory / "templates" / "train.yaml").read_text()
        assert skill.classify("Loaded config:\n" + spec_dump + "\nEpoch 0: 100%") is None, model


def test_model_patterns_come_before_and_replace_common_ones():
    common = (skills_dir() / "common.yaml").read_text()
    assert "name: cuda_oom" in common
    for model in MODELS:
        names = [p.name for p in load_skill(model).error_patterns]
        assert names.count("cuda_oom") == 1 and names.index("cuda_oom") < names.index("nccl"), model
    remedy = load_skill("sparse4d").classify("CUDA out of memory").remedy
    assert "num_frames" in remedy


# ------------------------------------------------------------------ images that can run every action
def test_default_images_can_run_every_action(monkeypatch):
    """No default is known not to contain its action (TAO Core's 6.0.0 fallbacks cannot run Sparse4D, its
    converter, RT-DETR quantize or NVPanoptix3D); NVIDIA's launcher 6.26.3 maps all five models to 6.26.3."""
    for name in [n for n in os.environ if n.startswith("TAOFLOW_IMAGE_")]:
        monkeypatch.delenv(name)
    for model in MODELS:
        skill = load_skill(model)
        for action in skill.actions:
            assert skill.image_problem(action) is None, (model, action)
            image = skill.image_for(action)
            assert image.startswith("nvcr.io/nvidia/tao/tao-toolkit:"), image
    assert load_skill("rtdetr").image_for("gen_trt_engine").endswith(":6.26.3-deploy")
    assert load_skill("sparse4d").image_for("dataset_convert").endswith(":6.26.3-data-services")
    assert load_skill("sparse4d").image_for("quantize").endswith(":7.1.0-pyt")
    assert load_skill("nvpanoptix3d").image_for("train").endswith(":6.26.3-pyt")


@pytest.mark.parametrize(("model", "action", "tag", "refused"), [
    ("sparse4d", "train", "6.0.0-pyt", True),
    ("sparse4d", "dataset_convert", "6.0.0-data-services", True),
    ("sparse4d", "quantize", "6.26.3-pyt", True),
    ("sparse4d", "quantize", "7.0.1-pyt", False),
    ("rtdetr", "quantize", "6.25.7-pyt", True),
    ("rtdetr", "quantize", "6.25.9-pyt", False),
    ("rtdetr", "train", "6.0.0-pyt", False),
    ("nvpanoptix3d", "train", "6.25.11-pyt", True),
    ("centerpose", "train", "6.0.0-pyt", False),
])
def test_an_image_without_the_action_is_refused(model, action, tag, refused):
    skill = load_skill(model)
    problem = skill.image_problem(action, f"registry.example.com:5000/nvidia/tao/tao-toolkit:{tag}")
    assert (problem is not None) is refused, problem
    if refused:
        assert f"{model} {action} needs a TAO" in problem and tag.split("-")[0] in problem
    assert skill.image_problem(action, "registry.example.com/team/tao-custom:latest") is None  # unknown: trusted


def test_images_are_overridable_per_run_role_and_action(monkeypatch):
    skill = load_skill("sparse4d")
    monkeypatch.setenv("TAOFLOW_IMAGE_PYT", "nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt")
    assert skill.image_for("train").endswith(":6.0.0-pyt")
    assert "needs a TAO 6.25.7 or newer image" in skill.image_problem("train")
    monkeypatch.setenv("TAOFLOW_IMAGE_SPARSE4D_TRAIN", "nvcr.io/nvidia/tao/tao-toolkit:7.3.0-pyt")
    assert skill.image_for("train").endswith(":7.3.0-pyt") and skill.image_problem("train") is None
    assert skill.image_for("train", {"train": "mirror/tao-toolkit:6.26.3-pyt"}) == "mirror/tao-toolkit:6.26.3-pyt"
    assert skill.image_for("evaluate", {"pyt": "mirror/tao-toolkit:6.26.3-pyt"}) == "mirror/tao-toolkit:6.26.3-pyt"


def test_preflight_refuses_an_image_known_not_to_run_the_action(monkeypatch, tmp_path):
    from taoflow.planner import PipelineRequest, plan_pipeline, preflight
    from taoflow.store import ArtifactStore

    monkeypatch.setenv("TAOFLOW_IMAGE_PYT", "nvcr.io/nvidia/tao/tao-toolkit:6.0.0-pyt")
    skill = load_skill("sparse4d")
    request = PipelineRequest(model="sparse4d", data={"train": str(tmp_path / "train")}, actions=["train"])
    with pytest.raises(UserError) as info:
        preflight(skill, request, plan_pipeline(skill, request), ArtifactStore(str(tmp_path / "store")))
    assert any("train: sparse4d train needs a TAO 6.25.7 or newer image" in p for p in info.value.problems)


def test_skills_show_lists_each_actions_image(capsys):
    import taoflow.commands  # noqa: F401 - registers the command groups on the app
    from taoflow.cli import run_cli

    assert run_cli(["skills", "show", "sparse4d"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "image pyt (quantize): nvcr.io/nvidia/tao/tao-toolkit:7.1.0-pyt" in out
    assert "TAO >= 7.0.1" in out and "TAO >= 6.25.7" in out


# ------------------------------------------------------------------ templates that fit NVIDIA's PTMs
def test_templates_use_nvidia_ptm_values_where_tao_core_defaults_differ():
    from taoflow.spec import load_template

    ar = load_skill("action_recognition")
    for action in ar.actions:  # every action builds the model: the same input type and normalisation
        spec = load_template(ar, action)
        assert spec["model"]["input_type"] == "3d" and spec["model"]["sample_strategy"] == "consecutive"
        aug = spec["dataset"]["augmentation_config"]
        assert aug["rgb_input_mean"] == [0.5] and aug["rgb_input_std"] == [0.5] and aug["train_crop_type"] == "no_crop"
    assert load_template(ar, "train")["dataset"]["clips_per_video"] == 5
    cp = load_skill("centerpose")
    assert load_template(cp, "evaluate")["evaluate"]["opencv"] is False
    assert load_template(cp, "trt_evaluate")["evaluate"]["opencv"] is False
    assert load_template(cp, "inference")["inference"]["opencv"] is True  # NVIDIA's inference specs keep it
    nvp = load_template(load_skill("nvpanoptix3d"), "train")
    assert nvp["train"]["optim"]["lr_scheduler"].lower() == "warmuppoly"
    assert (nvp["model"]["object_mask_threshold"], nvp["model"]["overlap_threshold"]) == (0.8, 0.8)
    rt = load_skill("rtdetr")
    assert load_template(rt, "train")["train"]["precision"] == "bf16" and load_template(rt, "train")["train"]["enable_ema"]
    assert load_template(rt, "trt_evaluate")["evaluate"]["input_width"] == 640


def test_ptm_with_other_normalisation_is_a_warning():
    from taoflow.spec import build_spec
    from taoflow.validate import validation_report

    skill = load_skill("action_recognition")
    spec = build_spec(skill, "train", data={"train": "/d/train"}, overrides={
        "model.rgb_pretrained_model_path": "/ptm/resnet18_3d_rgb.tlt",
        "dataset.augmentation_config.rgb_input_mean": [0.485, 0.456, 0.406],
    })
    report = validation_report(skill, "train", spec)
    assert report.errors == []
    assert [w.key for w in report.warnings] == ["dataset.augmentation_config.rgb_input_mean"]
    assert "mean/std [0.5]" in str(report.warnings[0])
