"""The emulator as a process: TAO's error messages (each classified by the model's skill patterns), spec
loading like OmegaConf, fault injection with TAO-like exit codes, SIGTERM, and products marked EMULATED.
What it writes on success is checked against NVIDIA's source in test_emulator_contract.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from taoflow.datasets import write_sample_data
from taoflow.skill import load_skill
from taoflow.status import classify_failure, read_status
from tests.test_emulator_specs import make_spec

MODELS = ["rtdetr", "centerpose", "action_recognition", "sparse4d", "nvpanoptix3d"]


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("samples")
    for model in MODELS:
        write_sample_data(model, root / model)
    # action recognition's tarballs extracted once (what the launcher does) for direct emulator runs
    from taoflow.archive import safe_extract

    safe_extract(root / "action_recognition" / "train" / "train.tar.gz", root / "action_recognition" / "train")
    safe_extract(root / "action_recognition" / "eval" / "test.tar.gz", root / "action_recognition" / "eval")
    return root


def emulate(model: str, action: str, spec: dict, tmp: Path, *overrides: str, fault: str | None = None,
            epoch_seconds: str = "0") -> tuple[int, str]:
    tao_action = load_skill(model).action(action).tao_action
    spec_path = tmp / f"{action}-{len(list(tmp.glob('*.yaml')))}.yaml"
    spec_path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "TAOFLOW_EMULATOR_EPOCH_SECONDS": epoch_seconds}
    env.pop("TAOFLOW_EMULATOR_FAULT", None)
    if fault:
        env["TAOFLOW_EMULATOR_FAULT"] = fault
    proc = subprocess.run([sys.executable, "-m", "taoflow.emulator", model, tao_action, "-e", str(spec_path),
                           *overrides], capture_output=True, text=True, timeout=60, env=env, check=False)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def trained(samples, tmp_path_factory):
    """`trained(model)`: a one-epoch checkpoint of `model`, trained once per module."""
    cache: dict[str, str] = {}

    def get(model: str) -> str:
        if model not in cache:
            tmp = tmp_path_factory.mktemp(f"trained-{model}")
            results = tmp / "train"
            rc, out = emulate(model, "train", make_spec(model, "train", samples / model, results,
                                                        {"num_epochs": 1}), tmp)
            assert rc == 0, out
            cache[model] = str(next(results.glob("model_epoch_000*.pth")))
        return cache[model]

    return get


@pytest.fixture(scope="module")
def converted(samples, tmp_path_factory):
    """Sparse4D's dataset_convert outputs for the train and eval roles (run once per module)."""
    tmp = tmp_path_factory.mktemp("convert")
    up = {}
    for role, split in (("train", "train"), ("eval", "val")):
        out = tmp / f"dataset_convert-{role}"  # the store names per-role convert folders so
        rc, log = emulate("sparse4d", "dataset_convert",
                          make_spec("sparse4d", "dataset_convert", samples / "sparse4d", out,
                                    {"root": samples / "sparse4d" / role, "split": split}), tmp)
        assert rc == 0, log
        up[f"convert_{role}"] = out
    return up


def convert(converted: dict, tmp: Path) -> dict:
    """A private copy of the convert outputs (tests delete files from it)."""
    up = {}
    for key, folder in converted.items():
        shutil.copytree(folder, tmp / folder.name)
        up[key] = tmp / folder.name
    return up


def assert_pattern(model: str, rc: int, out: str, name: str, klass: str) -> None:
    assert rc != 0, out
    info = classify_failure(out, rc, load_skill(model))
    assert (info.pattern, info.failure_class) == (name, klass), out


# ------------------------------------------------------------------------ the skills' error patterns

def test_nvpanoptix3d_rejects_fp16(samples, tmp_path):
    spec = make_spec("nvpanoptix3d", "train", samples / "nvpanoptix3d", tmp_path / "r", {"precision": "fp16"})
    rc, out = emulate("nvpanoptix3d", "train", spec, tmp_path)
    assert "ValueError: Only fp32 precision is supported" in out
    assert_pattern("nvpanoptix3d", rc, out, "fp16_rejected", "spec")
    last = read_status(tmp_path / "r" / "status.json")[-1]  # monitor_status: ValueError → this FAILURE line
    assert (last["status"], last["message"]) == ("FAILURE", "Parameter validation error: Only fp32 precision is "
                                                 "supported")


def test_action_recognition_tarball_is_not_a_directory(samples, tmp_path):
    spec = make_spec("action_recognition", "train", samples / "action_recognition", tmp_path / "r", {})
    spec["dataset"]["train_dataset_dir"] = str(samples / "action_recognition" / "train" / "train.tar.gz")
    rc, out = emulate("action_recognition", "train", spec, tmp_path)
    assert "NotADirectoryError: [Errno 20] Not a directory" in out
    assert_pattern("action_recognition", rc, out, "dataset_not_a_directory", "spec")


def test_action_recognition_needs_the_label_map_downstream(samples, trained, tmp_path):
    ckpt = trained("action_recognition")
    spec = make_spec("action_recognition", "evaluate", samples / "action_recognition", tmp_path / "e",
                     {"checkpoint": ckpt})
    del spec["dataset"]["label_map"]
    rc, out = emulate("action_recognition", "evaluate", spec, tmp_path)
    assert_pattern("action_recognition", rc, out, "missing_label_map", "spec")


def test_action_recognition_clips_shorter_than_the_sequence(samples, tmp_path):
    spec = make_spec("action_recognition", "train", samples / "action_recognition", tmp_path / "r", {})
    spec["model"]["rgb_seq_length"] = 8
    rc, out = emulate("action_recognition", "train", spec, tmp_path)
    assert_pattern("action_recognition", rc, out, "sequence_too_short", "spec")


def test_sparse4d_missing_anchor_file(samples, converted, tmp_path):
    up = convert(converted, tmp_path)
    (up["convert_train"] / "anchor_init.npy").unlink()
    rc, out = emulate("sparse4d", "train", make_spec("sparse4d", "train", samples / "sparse4d", tmp_path / "r", up),
                      tmp_path)
    assert "anchor_init.npy" in out and "FileNotFoundError" in out
    assert_pattern("sparse4d", rc, out, "missing_anchor", "spec")


def test_sparse4d_without_dataset_convert(samples, converted, tmp_path):
    up = convert(converted, tmp_path)
    shutil.rmtree(up["convert_eval"] / "val")
    rc, out = emulate("sparse4d", "train", make_spec("sparse4d", "train", samples / "sparse4d", tmp_path / "r", up),
                      tmp_path)
    assert_pattern("sparse4d", rc, out, "dataset_convert_required", "spec")


def test_rtdetr_category_id_at_num_classes_is_a_device_side_assert(samples, tmp_path):
    spec = make_spec("rtdetr", "train", samples / "rtdetr", tmp_path / "r", {"num_classes": 4})
    rc, out = emulate("rtdetr", "train", spec, tmp_path)
    assert "RuntimeError: CUDA error: device-side assert triggered" in out
    assert_pattern("rtdetr", rc, out, "category_id_assert", "spec")
    assert not list((tmp_path / "r").glob("*.pth"))


def test_rtdetr_export_at_960x544_is_a_shape_mismatch(samples, trained, tmp_path):
    ckpt = trained("rtdetr")
    spec = make_spec("rtdetr", "export", samples / "rtdetr", tmp_path / "x",
                     {"checkpoint": ckpt, "height": 544, "width": 960})
    rc, out = emulate("rtdetr", "export", spec, tmp_path)
    assert "The size of tensor a (510) must match the size of tensor b (400)" in out
    assert_pattern("rtdetr", rc, out, "export_shape_mismatch", "spec")
    assert not (tmp_path / "x" / "rtdetr.onnx").exists()


def test_nvpanoptix3d_inference_on_a_nested_folder_has_zero_length(samples, trained, tmp_path):
    ckpt = trained("nvpanoptix3d")
    spec = make_spec("nvpanoptix3d", "inference", samples / "nvpanoptix3d", tmp_path / "i",
                     {"checkpoint": ckpt, "images_dir": samples / "nvpanoptix3d" / "inference" / "data"})
    rc, out = emulate("nvpanoptix3d", "inference", spec, tmp_path)
    assert_pattern("nvpanoptix3d", rc, out, "inference_dataloader_empty", "spec")


def test_rtdetr_inference_on_a_nested_folder_is_a_spec_failure(samples, trained, tmp_path):
    spec = make_spec("rtdetr", "inference", samples / "rtdetr", tmp_path / "i", {"checkpoint": trained("rtdetr")})
    spec["dataset"]["infer_data_sources"]["image_dir"] = [str(samples / "rtdetr" / "inference")]
    rc, out = emulate("rtdetr", "inference", spec, tmp_path)
    assert "Inference dataloader length is zero" in out
    info = classify_failure(out, rc, load_skill("rtdetr"))
    assert (info.pattern, info.failure_class) == ("empty_dataloader", "spec")


def test_nvpanoptix3d_missing_frustum_mask_and_train_id(samples, tmp_path):
    spec = make_spec("nvpanoptix3d", "train", samples / "nvpanoptix3d", tmp_path / "r", {})
    spec["dataset"]["frustum_mask_path"] = str(tmp_path / "meta" / "frustum_mask.npz")
    rc, out = emulate("nvpanoptix3d", "train", spec, tmp_path)
    assert_pattern("nvpanoptix3d", rc, out, "missing_frustum_mask", "spec")
    bad_map = tmp_path / "colormap.json"
    bad_map.write_text(json.dumps([{"id": 1, "name": "wall"}]))
    spec = make_spec("nvpanoptix3d", "train", samples / "nvpanoptix3d", tmp_path / "r2", {})
    spec["dataset"]["label_map"] = str(bad_map)
    rc, out = emulate("nvpanoptix3d", "train", spec, tmp_path)
    assert_pattern("nvpanoptix3d", rc, out, "label_map_without_train_id", "spec")


def test_centerpose_num_joints_mismatch(samples, tmp_path):
    spec = make_spec("centerpose", "train", samples / "centerpose", tmp_path / "r", {})
    spec["dataset"]["num_joints"] = 9
    rc, out = emulate("centerpose", "train", spec, tmp_path)
    assert_pattern("centerpose", rc, out, "num_joints_mismatch", "spec")


# ------------------------------------------------------------------------ spec loading like OmegaConf

def test_unknown_key_fails_like_omegaconf(samples, tmp_path):
    spec = make_spec("rtdetr", "train", samples / "rtdetr", tmp_path / "r", {})
    spec["train"]["num_epoch"] = 3
    rc, out = emulate("rtdetr", "train", spec, tmp_path)
    assert "omegaconf.errors.ConfigKeyError: Key 'num_epoch' not in 'RTTrainExpConfig'" in out, out
    assert "full_key: train.num_epoch" in out
    assert_pattern("rtdetr", rc, out, "spec_rejected", "spec")


def test_wrong_type_fails_like_omegaconf(samples, tmp_path):
    spec = make_spec("rtdetr", "train", samples / "rtdetr", tmp_path / "r", {})
    rc, out = emulate("rtdetr", "train", spec, tmp_path, "train.num_epochs=ten")
    assert "Value 'ten' of type 'str' could not be converted to Integer" in out and "full_key: train.num_epochs" in out
    assert_pattern("rtdetr", rc, out, "spec_rejected", "spec")


def test_mandatory_value_left_missing_fails_when_read(samples, tmp_path):
    spec = make_spec("rtdetr", "evaluate", samples / "rtdetr", tmp_path / "e", {"checkpoint": "???"})
    rc, out = emulate("rtdetr", "evaluate", spec, tmp_path)
    assert "omegaconf.errors.MissingMandatoryValue: Missing mandatory value: evaluate.checkpoint" in out
    assert_pattern("rtdetr", rc, out, "spec_rejected", "spec")


def test_override_values_are_applied_and_never_printed(samples, tmp_path):
    spec = make_spec("rtdetr", "train", samples / "rtdetr", tmp_path / "r", {"num_epochs": 1})
    rc, out = emulate("rtdetr", "train", spec, tmp_path, "encryption_key=sup3r-s3cret", "train.num_epochs=2")
    assert rc == 0, out
    assert "sup3r-s3cret" not in out and "encryption_key" in out
    assert len(list((tmp_path / "r").glob("model_epoch_*.pth"))) == 2


# ------------------------------------------------------------------------ faults and signals

@pytest.mark.parametrize(("fault", "code", "text", "klass"), [
    ("oom", 1, "torch.OutOfMemoryError: CUDA out of memory", "infra"),
    ("nccl", 1, "NCCL error", "infra"),
    ("preempt", 143, "Received SIGTERM", "infra"),
    ("crash@epoch:1", 1, "EMULATED crash at epoch 1", "program"),
    ("sigkill@epoch:1", -signal.SIGKILL, "injecting fault 'sigkill@epoch:1'", "infra"),
])
def test_faults_fail_like_the_real_thing_once(samples, tmp_path, fault, code, text, klass):
    results = tmp_path / "r"
    spec = make_spec("rtdetr", "train", samples / "rtdetr", results, {"num_epochs": 3})
    rc, out = emulate("rtdetr", "train", spec, tmp_path, fault=fault)
    assert rc == code and text in out, out
    assert classify_failure(out, rc, load_skill("rtdetr")).failure_class == klass
    if "@epoch:1" in fault:  # RT-DETR names its checkpoints by epoch only
        assert [p.name for p in results.glob("model_epoch_*.pth")] == ["model_epoch_000.pth"]
    # the retry in the same results folder resumes and runs through: the fault fired once
    newest = sorted(results.glob("model_epoch_*.pth"))
    if newest:
        spec["train"]["resume_training_checkpoint_path"] = str(newest[-1])
    rc, out = emulate("rtdetr", "train", spec, tmp_path, fault=fault)
    assert rc == 0, out
    assert (results / ".emulator_faults_fired").read_text().split() == [fault]
    assert len(list(results.glob("model_epoch_*.pth"))) == 3


def test_sigterm_stops_at_once_keeping_checkpoints(samples, tmp_path):
    results = tmp_path / "r"
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(make_spec("rtdetr", "train", samples / "rtdetr", results, {"num_epochs": 100})))
    proc = subprocess.Popen([sys.executable, "-m", "taoflow.emulator", "rtdetr", "train", "-e", str(spec_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "TAOFLOW_EMULATOR_EPOCH_SECONDS": "0.2"})
    for line in proc.stdout:
        if line.startswith("Saved checkpoint"):
            break
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 143
    kept = list(results.glob("model_epoch_*.pth"))
    assert 0 < len(kept) < 100  # stopped at once, not after the remaining epochs
    assert all(p.read_bytes().startswith(b"EMULATED") for p in kept)
    # TAO's monitor_status does not catch SIGTERM: no FAILURE line, the last line is progress
    last = read_status(results / "status.json")[-1]
    assert last["status"] == "RUNNING" and "finished successfully" not in last["message"]


def test_resume_past_the_last_epoch_trains_nothing(samples, trained, tmp_path):
    ckpt = trained("rtdetr")
    spec = make_spec("rtdetr", "train", samples / "rtdetr", tmp_path / "train", {"num_epochs": 1})
    spec["train"]["resume_training_checkpoint_path"] = ckpt
    rc, out = emulate("rtdetr", "train", spec, tmp_path)
    assert rc == 0 and "nothing to train" in out


def test_real_checkpoints_are_refused(samples, tmp_path):
    fake = tmp_path / "real.pth"
    fake.write_bytes(b"PK\x03\x04 torch zip")
    spec = make_spec("rtdetr", "evaluate", samples / "rtdetr", tmp_path / "e", {"checkpoint": str(fake)})
    rc, out = emulate("rtdetr", "evaluate", spec, tmp_path)
    assert rc == 1 and "not an emulated TAO artifact" in out


def test_products_say_emulated(samples, trained, tmp_path):
    ckpt = trained("centerpose")
    rc, out = emulate("centerpose", "inference", make_spec("centerpose", "inference", samples / "centerpose",
                                                           tmp_path / "inference", {"checkpoint": ckpt}), tmp_path)
    assert rc == 0 and out.startswith("[EMULATED]")
    assert json.loads((tmp_path / "inference" / "inference_results.json").read_text())["emulated"] is True
    assert Path(ckpt).read_bytes().startswith(b"EMULATED TAO ARTIFACT")


@pytest.mark.parametrize("model", ["rtdetr", "centerpose", "action_recognition", "nvpanoptix3d"])
def test_where_the_data_sits_never_changes_the_learning_curve(model, tmp_path):
    """The planner's train spec for the same data in two folders gives the emulator the same curve
    parameters (CenterPose's `dataset.train_data` holds a path under a name that says nothing of one), so a
    sweep on the emulator is the one `benchmarks/automl.py --predict-tune` predicts on data anywhere."""
    from taoflow.datasets import write_sample_data
    from taoflow.emulator.train import hyperparameters
    from taoflow.planner import PipelineRequest, PlannedStep, RunContext, prepare_run
    from taoflow.skill import load_skill
    from taoflow.store import ArtifactStore

    seen = []
    for folder in ("a", "b"):
        data = tmp_path / folder / "data"
        write_sample_data(model, data)
        request = PipelineRequest(model=model, data={p.name: str(p) for p in sorted(data.iterdir())},
                                  overrides={}, store=str(tmp_path / folder / "store"), emulate=True)
        run = prepare_run(RunContext(load_skill(model), request, ArtifactStore(request.store), {}),
                          PlannedStep("train"))
        assert str(data) in json.dumps(run.spec)  # the spec does name the data's folder
        seen.append(hyperparameters(run.spec))
    assert seen[0] == seen[1] and seen[0]
