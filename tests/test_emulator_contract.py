# ruff: noqa: F811  (the fixtures imported from test_emulator are parameters here)
"""The emulator against NVIDIA's source: what it writes on success (status.json lines, checkpoint names and
links, products, folders) is compared with tests/tao_layouts.py — folders written from NVIDIA's code, not
from the emulator — and with the facts of docs/tao-contract.md (cited per test)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from taoflow.evaluation import evaluation_kpis
from taoflow.status import read_status
from tests.tao_layouts import SCORE_KEY, evaluate_dict, status_shape, write_train
from tests.test_emulator import converted, emulate, samples, trained  # noqa: F401
from tests.test_emulator_specs import make_spec

MODELS = ["rtdetr", "centerpose", "action_recognition", "sparse4d", "nvpanoptix3d"]


def _train(model: str, samples: Path, tmp: Path, up: dict | None = None, *overrides: str) -> tuple[Path, str]:
    results = tmp / "runs" / "k" / "train"
    spec = make_spec(model, "train", samples / model, results, {"num_epochs": 3, **(up or {})})
    assert spec["results_dir"] == str(results.parent)  # TAO is handed the run folder and adds train/
    rc, out = emulate(model, "train", spec, tmp, *overrides)
    assert rc == 0, out
    return results, out


def _steps(results: Path) -> int:
    line = next(r for r in read_status(results / "status.json") if "epoch" in r)
    return line["max_step"] // (line["max_epoch"] + 1)


def _convert_up(model: str, converted: dict) -> dict:
    return dict(converted) if model == "sparse4d" else {}


@pytest.mark.parametrize("model", MODELS)
def test_train_status_lines_are_taos(model, samples, converted, tmp_path):
    """docs/tao-contract.md S1–S5, S9, K1–K5: the same lines in the same order, with the same fields, as
    NVIDIA's loggers write them; the score as a string where TAO writes a string; no SUCCESS."""
    results, _ = _train(model, samples, tmp_path, _convert_up(model, converted))
    real = write_train(tmp_path / "real" / "train", model, [0.1, 0.2, 0.3], steps=_steps(results))

    def lines(path: Path) -> list[tuple]:
        return [(status, message, data) for status, message, data, _ in status_shape(path / "status.json")]

    assert lines(results) == lines(real)
    emulated, expected = status_shape(results / "status.json"), status_shape(real / "status.json")
    for ours, theirs in zip(emulated, expected, strict=True):
        types = dict(theirs[3])
        assert all(types[k] == t for k, t in ours[3] if k in types), (ours, theirs)
    score_types = {dict(line[3]).get(SCORE_KEY[model]) for line in emulated} - {None}
    assert score_types == ({"str"} if model in ("rtdetr", "centerpose") else {"float"})
    assert "SUCCESS" not in {line[0] for line in emulated}
    assert (results / "experiment.yaml").is_file()


@pytest.mark.parametrize("model", ["rtdetr", "centerpose", "nvpanoptix3d"])
def test_checkpoint_names_and_the_latest_link_are_taos(model, samples, tmp_path):
    """C1–C3: interval 2 over 3 epochs — epoch 0 leaves only the latest *file*, epoch 1 the checkpoint and the
    latest link to it, epoch 2 nothing new: exactly what the layout from NVIDIA's source holds."""
    results, _ = _train(model, samples, tmp_path, {"interval": 2})
    real = write_train(tmp_path / "real" / "train", model, [0.1, 0.2, 0.3], steps=_steps(results),
                       checkpoint_interval=2)

    def files(folder: Path) -> dict[str, str | None]:
        return {p.name: (os.readlink(p) if p.is_symlink() else None) for p in folder.glob("*.pth")}

    assert files(results) == files(real)
    name = "model_epoch_001.pth" if model == "rtdetr" else f"model_epoch_001_step_{2 * _steps(results):05d}.pth"
    assert files(results) == {name: None, next(iter(results.glob("*_latest.pth"))).name: name}


@pytest.mark.parametrize("model", ["nvpanoptix3d", "rtdetr"])
def test_step_checkpointing_follows_the_unit_where_tao_reads_it(model, samples, tmp_path):
    """C1, C2: `checkpoint_interval_unit: step` checkpoints every N train steps (NVPanoptix3D and the other
    TAOLightningModule models); RT-DETR ignores the unit and keeps its epoch checkpoints."""
    results, _ = _train(model, samples, tmp_path, {"interval": 3}, "train.checkpoint_interval_unit=step")
    real = write_train(tmp_path / "real" / "train", model, [0.1, 0.2, 0.3], steps=_steps(results),
                       checkpoint_interval=3, unit="step")
    assert sorted(p.name for p in results.glob("model_epoch_*.pth")) == \
        sorted(p.name for p in real.glob("model_epoch_*.pth"))
    if model == "nvpanoptix3d":
        assert all(int(p.stem.rsplit("_", 1)[1]) % 3 == 0 for p in results.glob("model_epoch_*.pth"))


def test_training_resumes_from_the_latest_link_by_itself(samples, tmp_path):
    """C4, S6: no resume path given, TAO resumes from `*_latest.pth` in its results folder and says so."""
    results, _ = _train("centerpose", samples, tmp_path)
    spec = make_spec("centerpose", "train", samples / "centerpose", results, {"num_epochs": 5})
    rc, out = emulate("centerpose", "train", spec, tmp_path)
    assert rc == 0, out
    records = read_status(results / "status.json")
    resumed = [r["message"] for r in records if r["message"].startswith("Resuming training from checkpoint:")]
    assert len(resumed) == 1 and resumed[0].endswith(f"model_epoch_002_step_{3 * _steps(results):05d}.pth")
    assert [r["epoch"] for r in records if "epoch" in r] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("model", MODELS)
def test_evaluate_reports_taos_evaluation_kpis(model, samples, converted, trained, tmp_path):
    """S8, K1–K5: one "Test metrics generated." line with the evaluation KPIs in TAO's names and types —
    never a training loss — then "Evaluate finished successfully."."""
    results = tmp_path / "runs" / "k" / "evaluate"
    checkpoint = trained(model) if model != "sparse4d" else \
        str(next(_train(model, samples, tmp_path, dict(converted))[0].glob("model_epoch_000_*.pth")))
    up = {**_convert_up(model, converted), "checkpoint": checkpoint}
    rc, out = emulate(model, "evaluate", make_spec(model, "evaluate", samples / model, results, up), tmp_path)
    assert rc == 0, out
    lines = read_status(results / "status.json")
    assert [r["message"] for r in lines][-2:] == ["Test metrics generated.", "Evaluate finished successfully."]
    kpi = lines[-2]["kpi"]
    assert not any("loss" in key or key.startswith("train") for key in kpi)
    expected = evaluate_dict(model, 0.5)
    if model == "sparse4d":
        expected = {k: v for k, v in expected.items() if not k.split("/")[-1].startswith("Person")}
        assert set(expected) <= set(kpi)
    else:
        assert set(kpi) == set(expected)
    assert {k: type(v) for k, v in kpi.items() if k in expected} == {k: type(v) for k, v in expected.items()}


def test_export_writes_next_to_the_checkpoint_and_refuses_to_overwrite(samples, trained, tmp_path):
    """P1, P2, S11: `export.onnx_file` null → `<checkpoint>.onnx`; a second export into the same path is
    TAO's AssertionError, which writes no FAILURE line."""
    checkpoint = Path(trained("action_recognition"))
    copy = tmp_path / "ckpt" / checkpoint.name
    copy.parent.mkdir()
    copy.write_bytes(checkpoint.read_bytes())
    results = tmp_path / "runs" / "k" / "export"
    spec = make_spec("action_recognition", "export", samples / "action_recognition", results,
                     {"checkpoint": str(copy)})
    spec["export"]["onnx_file"] = None
    rc, out = emulate("action_recognition", "export", spec, tmp_path)
    assert rc == 0, out
    assert copy.with_suffix(".onnx").is_file()
    rc, out = emulate("action_recognition", "export", spec, tmp_path)
    assert rc == 1 and f"AssertionError: Default output file {copy.with_suffix('.onnx')} already exists" in out
    assert read_status(results / "status.json")[-1]["status"] == "STARTED"


@pytest.mark.parametrize(("backend", "name"), [("torchao", "quantized_model_torchao.pth"),
                                               ("modelopt.pytorch", "quantized_model_modelopt.pth")])
def test_quantize_names_its_model_after_the_backend(backend, name, samples, trained, tmp_path):
    """P4: `quantized_model_<backend>.pth` in `<results_dir>/quantize/`."""
    results = tmp_path / "runs" / "k" / "quantize"
    spec = make_spec("rtdetr", "quantize", samples / "rtdetr", results, {"checkpoint": trained("rtdetr")})
    spec["quantize"]["backend"] = backend
    rc, out = emulate("rtdetr", "quantize", spec, tmp_path)
    assert rc == 0, out
    assert [p.name for p in results.glob("quantized_model_*.pth")] == [name]


def _engine(samples: Path, trained, tmp: Path, model: str, data_type: str) -> Path:
    onnx = tmp / f"{model}.onnx"
    if not onnx.exists():
        export = tmp / "runs" / "x" / "export"
        spec = make_spec(model, "export", samples / model, export, {"checkpoint": trained(model)})
        spec["export"]["onnx_file"] = str(onnx)
        assert emulate(model, "export", spec, tmp)[0] == 0
    results = tmp / "runs" / data_type / "gen_trt_engine"
    cal = [str(samples / "rtdetr" / "train" / "images")] if data_type == "INT8" else None
    spec = make_spec(model, "gen_trt_engine", samples / model, results, {"onnx": str(onnx)})
    spec["gen_trt_engine"]["tensorrt"] = {"data_type": data_type}
    if cal:
        spec["gen_trt_engine"]["tensorrt"]["calibration"] = {"cal_image_dir": cal, "cal_batch_size": 1,
                                                             "cal_batches": 2}
    rc, out = emulate(model, "gen_trt_engine", spec, tmp)
    assert rc == 0, out
    assert read_status(results / "status.json")[-1]["message"] == "Gen_trt_engine finished successfully."
    return results / "model.engine"


def _trt_evaluate(samples: Path, tmp: Path, model: str, engine: Path, tag: str, fault: str | None = None) -> dict:
    results = tmp / "runs" / tag / "trt_evaluate"
    spec = make_spec(model, "trt_evaluate", samples / model, results, {"engine": str(engine)})
    rc, out = emulate(model, "evaluate", spec, tmp, fault=fault)
    assert rc == 0, out
    lines = read_status(results / "status.json")
    assert [r["message"] for r in lines] == [f"Starting {model} trt_evaluate.", "Trt_evaluate finished successfully."]
    name = "results.json" if model == "rtdetr" else "report.csv"
    assert [p.name for p in results.iterdir() if p.name in ("results.json", "report.csv")] == [name]
    return evaluation_kpis(name, (results / name).read_text())


def test_tensorrt_scores_trail_pytorch_by_precision_and_drift_on_the_fault(samples, trained, tmp_path):
    """P5, P6, E3, E4: an engine's mAP is PyTorch's minus a small deterministic gap, fp32 < fp16 < int8; the
    same engine scores the same twice; `trt_drift` puts it far outside any parity tolerance."""
    payload = json.loads(Path(trained("rtdetr")).read_bytes().split(b"\n", 1)[1])
    torch = payload["kpis"]["val_mAP"]
    gaps = {}
    for data_type in ("FP32", "FP16", "INT8"):
        engine = _engine(samples, trained, tmp_path, "rtdetr", data_type)
        first = _trt_evaluate(samples, tmp_path, "rtdetr", engine, data_type)
        assert _trt_evaluate(samples, tmp_path, "rtdetr", engine, data_type + "-again") == first
        assert set(first) == {"AP", "AP50", "AP75", "APs", "APm", "APl", "ARmax1", "ARmax10", "ARmax100", "ARs",
                              "ARm", "ARl"}
        gaps[data_type] = torch - first["AP"]
    assert 0 < gaps["FP32"] < gaps["FP16"] < gaps["INT8"] < 0.02, gaps
    drifted = _trt_evaluate(samples, tmp_path, "rtdetr", _engine(samples, trained, tmp_path, "rtdetr", "FP16"),
                            "drift", fault="trt_drift")
    assert torch - drifted["AP"] > 0.1 * torch


def test_centerpose_tensorrt_report_is_read_as_its_kpis(samples, trained, tmp_path):
    """P7: report.csv's 3D IoU AP at IoU 0.5 and its 2D MPE are CenterPose's evaluation KPIs."""
    payload = json.loads(Path(trained("centerpose")).read_bytes().split(b"\n", 1)[1])
    kpis = _trt_evaluate(samples, tmp_path, "centerpose", _engine(samples, trained, tmp_path, "centerpose", "FP16"),
                         "cp")
    assert set(kpis) == {"3DIoU", "2DMPE"}
    assert 0 < payload["kpis"]["val_3DIoU"] - kpis["3DIoU"] < 0.01


@pytest.mark.parametrize(("calibration", "line"), [
    ({"cal_batches": 0, "cal_batch_size": 1}, "Parameter validation error: Calibration number of batches 0 is "
     "non-positive."),
    ({"cal_batches": 50, "cal_batch_size": 4}, "Parameter validation error: Number of calibration images (8) "
     "should be larger than batches * batch_size (200)."),
    ({"cal_batches": 1, "cal_batch_size": 1, "cal_image_dir": ["/no/such/folder"]},
     "File system error: Calibration image directory /no/such/folder not found."),
])
def test_int8_calibration_is_checked_as_tao_deploy_does(calibration, line, samples, trained, tmp_path):
    """P5, S11: TAO Deploy's INT8 checks, each with the FAILURE line its decorator writes."""
    onnx = tmp_path / "m.onnx"
    export = tmp_path / "runs" / "x" / "export"
    spec = make_spec("rtdetr", "export", samples / "rtdetr", export, {"checkpoint": trained("rtdetr")})
    spec["export"]["onnx_file"] = str(onnx)
    assert emulate("rtdetr", "export", spec, tmp_path)[0] == 0
    results = tmp_path / "runs" / "e" / "gen_trt_engine"
    spec = make_spec("rtdetr", "gen_trt_engine", samples / "rtdetr", results, {"onnx": str(onnx)})
    spec["gen_trt_engine"]["tensorrt"] = {"data_type": "int8", "calibration": {
        "cal_image_dir": [str(samples / "rtdetr" / "train" / "images")], **calibration}}
    rc, out = emulate("rtdetr", "gen_trt_engine", spec, tmp_path)
    assert rc == 1, out
    last = read_status(results / "status.json")[-1]
    assert (last["status"], last["message"]) == ("FAILURE", line)


def test_dataset_convert_writes_per_scene_pickles_and_the_anchor_where_asked(samples, tmp_path):
    """D1–D5, L3: both splits in one run, into results_dir itself: `<split>/<scene>_infos_<split>.pkl`, the
    object-id map, the anchor at `output_file_name` from the train split, no annotations.pkl."""
    import numpy as np

    from taoflow.emulator.pickles import read_annotations

    root = tmp_path / "aicity"
    for split, role in (("train", "train"), ("val", "eval")):
        for scene in (samples / "sparse4d" / role / split).iterdir():
            target = root / split / scene.name
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(scene, target)
    out = tmp_path / "runs" / "k" / "dataset_convert-train"
    spec = make_spec("sparse4d", "dataset_convert", samples / "sparse4d", out, {"root": root, "split": "train,val"})
    spec["aicity"]["anchor_init_config"] = {"output_file_name": "anchor_init_kmeans900.npy"}
    rc, log = emulate("sparse4d", "dataset_convert", spec, tmp_path)
    assert rc == 0, log
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.pkl")) == [
        "train/Warehouse_000_infos_train.pkl", "train/Warehouse_001_infos_train.pkl",
        "val/Warehouse_002_infos_val.pkl"]
    ids = json.loads((out / "map_object_hash_to_object_id.json").read_text())
    assert ids["no_of_objects"] == 9 and ids["max_object_id"] == 9  # 3 objects per scene, 3 scenes
    anchors = np.load(out / "anchor_init_kmeans900.npy")
    assert anchors.shape == (18, 11) and (anchors[:, 7] == 1).all()  # fewer boxes (18) than 900: 18 anchors
    assert not list(tmp_path.rglob("annotations.pkl"))
    infos = read_annotations(out / "train")["infos"]
    assert {i["scene_name"] for i in infos} == {"Warehouse_000", "Warehouse_001"} and len(infos) == 6
    assert [r["message"] for r in read_status(out / "status.json")] == [
        "Starting Data-services Annotation conversion.", "Annotation conversion finished successfully."]


def test_results_dir_of_the_section_wins_and_merge_errors_write_nothing(samples, tmp_path):
    """L1, S11: `<action>.results_dir` wins over `results_dir/<action>`; a spec TAO cannot merge fails before
    any status line (no status.json at all)."""
    elsewhere = tmp_path / "elsewhere"
    spec = make_spec("rtdetr", "train", samples / "rtdetr", tmp_path / "runs" / "k" / "train", {"num_epochs": 1})
    spec["train"]["results_dir"] = str(elsewhere)
    assert emulate("rtdetr", "train", spec, tmp_path)[0] == 0
    assert (elsewhere / "status.json").is_file() and not (tmp_path / "runs" / "k" / "train").exists()
    spec["train"]["num_epoch"] = 1
    spec["train"]["results_dir"] = str(tmp_path / "bad")
    rc, out = emulate("rtdetr", "train", spec, tmp_path)
    assert rc == 1 and "ConfigKeyError" in out and not (tmp_path / "bad").exists()


def test_a_missing_spec_file_is_taos_message(tmp_path):
    """S13."""
    rc, out = emulate_missing(tmp_path)
    assert rc == 1 and f"ERROR: The indicated experiment spec file `{tmp_path / 'none.yaml'}` doesn't exist!" in out


def emulate_missing(tmp: Path) -> tuple[int, str]:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "taoflow.emulator", "rtdetr", "train", "-e", str(tmp / "none.yaml")],
                          capture_output=True, text=True, timeout=60, check=False)
    return proc.returncode, proc.stdout + proc.stderr
