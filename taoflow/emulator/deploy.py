"""The emulated TAO Deploy image: gen_trt_engine, and evaluate / inference on a TensorRT engine.

What TAO Deploy does (docs/tao-contract.md):
- gen_trt_engine: the engine at `gen_trt_engine.trt_engine` (null: a temporary file that is thrown away);
  `tensorrt.data_type` compared after `.lower()`; INT8 needs positive `cal_batches` and `cal_batch_size`,
  existing non-empty calibration folders (walked recursively) and at least batches × batch size images
  (nvidia_tao_deploy/cv/common/initialize_experiments.py:37-95);
- evaluate writes no KPI line: RT-DETR writes `results.json` (COCO's twelve metrics), CenterPose `report.csv`
  into `<results_dir>/trt_evaluate/` (rtdetr/scripts/evaluate.py:133-140, centerpose/centerpose_evaluator.py:
  701-779). Here their values are PyTorch's minus a small, deterministic, precision-dependent gap
  (emulator/metrics.py), or far off with the `trt_drift` fault.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

from taoflow.emulator import artifacts
from taoflow.emulator.context import ActionContext, is_set, log
from taoflow.emulator.metrics import centerpose_report_csv, precision_gap, rtdetr_results_json

VALID_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".JPEG", ".JPG", ".PNG")


def _require_deploy(ctx: ActionContext) -> None:
    if ctx.model.deploy_name is None:
        print(f"{ctx.model.name}: error: invalid choice: '{ctx.action}' (TAO Deploy has no TensorRT "
              f"{ctx.action} for {ctx.model.name})", file=sys.stderr, flush=True)
        raise SystemExit(2)


def _calibration_images(ctx: ActionContext) -> tuple[int, int]:
    calibration = "gen_trt_engine.tensorrt.calibration"
    batches = int(ctx.spec.get(f"{calibration}.cal_batches", 0) or 0)
    batch_size = int(ctx.spec.get(f"{calibration}.cal_batch_size", 0) or 0)
    if batches <= 0:
        raise ValueError(f"Calibration number of batches {batches} is non-positive.")
    if batch_size <= 0:
        raise ValueError(f"Calibration batch size {batch_size} is non-positive.")
    dirs = ctx.spec.get(f"{calibration}.cal_image_dir") or []
    total = 0
    for folder in dirs if isinstance(dirs, list) else [dirs]:
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"Calibration image directory {folder} not found.")
        count = sum(len([f for f in files if f.endswith(VALID_IMAGE_EXTENSIONS)]) for _, _, files in os.walk(folder))
        if count == 0:
            raise FileNotFoundError(f"Calibration image directory {folder} is empty.")
        total += count
    if total < batches * batch_size:
        raise ValueError(f"Number of calibration images ({total}) should be larger than batches * batch_size "
                         f"({batches * batch_size}).")
    return total, batches * batch_size


def gen_trt_engine(ctx: ActionContext) -> None:
    _require_deploy(ctx)
    ctx.fire_due_fault(None)
    path = ctx.spec.get("gen_trt_engine.onnx_file")
    if not is_set(path):
        raise ValueError("gen_trt_engine.onnx_file must be set to the ONNX file to build from")
    payload = artifacts.read_artifact(path, ("onnx",))
    data_type = str(ctx.spec.get("gen_trt_engine.tensorrt.data_type", "fp32")).lower()
    if ctx.model.name == "nvpanoptix3d" and data_type == "int8":
        raise ValueError("NVPanoptix3D supports only FP32 and FP16 engines (gen_trt_engine.tensorrt.data_type)")
    engine = ctx.spec.get("gen_trt_engine.trt_engine")
    if not is_set(engine):  # TAO builds into a temporary file and keeps nothing
        handle, engine = tempfile.mkstemp(suffix=".engine")
        os.close(handle)
        log(f"gen_trt_engine.trt_engine is not set: the engine goes to the temporary file {engine}")
    cal_cache = None
    if data_type == "int8":
        images, used = _calibration_images(ctx)
        cal_cache = ctx.spec.get("gen_trt_engine.tensorrt.calibration.cal_cache_file")
        if is_set(cal_cache):
            artifacts.write_artifact(cal_cache, "cal_cache", {
                "model": ctx.model.name, "onnx_digest": artifacts.digest(path), "calibration_images": used,
                "note": "EMULATED calibration cache"})
            log(f"Calibrated on {used} of {images} images; cache {cal_cache}")
    artifacts.write_artifact(engine, "engine", {
        "model": ctx.model.name, "onnx_file": path, "onnx_digest": artifacts.digest(path),
        "epoch": payload.get("epoch"), "kpis": payload.get("kpis", {}), "data_type": data_type,
        "cal_cache_file": cal_cache, "note": "EMULATED TensorRT engine: not loadable by TensorRT"})
    log(f"Engine build finished successfully. ({data_type} engine {engine} from {path})  [EMULATED]")


def _engine(ctx: ActionContext, key: str) -> tuple[str, dict]:
    path = ctx.spec.get(key)
    if not is_set(path) or not os.path.exists(path):
        raise FileNotFoundError(f"Provided {key} at {path} does not exist!")
    return path, artifacts.read_artifact(path, ("engine",))


def trt_evaluate(ctx: ActionContext) -> None:
    _require_deploy(ctx)
    ctx.fire_due_fault(None)
    path, payload = _engine(ctx, "evaluate.trt_engine")
    samples = ctx.model.eval_data()
    drift = ctx.faults.active("trt_drift")
    gap = precision_gap(str(payload.get("data_type", "fp32")), artifacts.digest(path))
    values = payload.get("kpis", {})
    if drift:
        log("[EMULATED] trt_drift: this engine's accuracy drifts far from the PyTorch model's "
            "(TAOFLOW_EMULATOR_FAULT)")
    if ctx.model.name == "rtdetr":
        results = rtdetr_results_json(values, gap, drift)
        artifacts.write_atomic(ctx.results_dir / "results.json", json.dumps(results).encode())
        for key, value in sorted(results.items()):
            log(f"{key}: {value:.9f}")
    else:
        artifacts.write_atomic(ctx.results_dir / "report.csv", centerpose_report_csv(values, gap, drift).encode())
    log(f"Finished evaluation of {path} ({payload.get('data_type')}) on {samples} samples.  [EMULATED]")


def trt_inference(ctx: ActionContext) -> None:
    _require_deploy(ctx)
    ctx.fire_due_fault(None)
    path, payload = _engine(ctx, "inference.trt_engine")
    samples = ctx.model.inference_data()
    report = {"emulated": True, "model": ctx.model.name, "engine": path, "epoch": payload.get("epoch"),
              "num_samples": samples, "note": "EMULATED TensorRT inference: no real predictions"}
    artifacts.write_atomic(Path(ctx.results_dir) / "inference_results.json", json.dumps(report, indent=1).encode())
    log(f"TensorRT inference on {samples} samples with {path}; results in {ctx.results_dir}  [EMULATED]")
