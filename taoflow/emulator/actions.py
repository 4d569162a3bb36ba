"""The emulated actions of TAO's PyTorch image after train: evaluate, inference, export, quantize — and the
table of every action (TAO Deploy's in deploy.py, Data Services' convert in convert.py).

Downstream actions read the KPIs recorded in the file they are given, so evaluate reports the metrics of
that checkpoint's epoch, and an engine built from an ONNX exported from it reports them too (minus what
TensorRT's precision costs). What each writes (docs/tao-contract.md):
- evaluate: no file; one RUNNING "Test metrics generated." line whose `kpi` holds the evaluation KPIs as the
  model writes them (strings for RT-DETR and CenterPose; never a training loss);
- inference: its annotated outputs in `<results_dir>/inference/` (here a JSON report marked EMULATED);
- export: the ONNX at `export.onnx_file`, or next to the checkpoint when null; an existing file is an
  AssertionError ("Default onnx file … already exists"), as TAO refuses to overwrite it;
- quantize: `quantized_model_<backend>.pth` in `<results_dir>/quantize/`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from taoflow.emulator import artifacts
from taoflow.emulator.context import ActionContext, is_set, log
from taoflow.emulator.convert import dataset_convert
from taoflow.emulator.deploy import gen_trt_engine, trt_evaluate, trt_inference
from taoflow.emulator.metrics import test_kpis
from taoflow.emulator.spec import Spec
from taoflow.emulator.train import train


def source(spec: Spec, key: str, kinds: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    path = spec.get(key)
    if not is_set(path):
        raise ValueError(f"{key} must be set to the model file to load")
    return path, artifacts.read_artifact(path, kinds)


def evaluate(ctx: ActionContext) -> None:
    ctx.fire_due_fault(None)
    path, payload = source(ctx.spec, "evaluate.checkpoint", ("checkpoint",))
    samples = ctx.model.eval_data()
    kpis = test_kpis(ctx.model.name, payload.get("kpis", {}))
    log(f"Evaluating {path} (epoch {payload.get('epoch')}) on {samples} samples  [EMULATED]")
    for key, value in sorted(kpis.items()):
        log(f"  {key}: {value}")
    ctx.status.kpi = kpis
    ctx.status.write("RUNNING", "Test metrics generated.")


def inference(ctx: ActionContext) -> None:
    ctx.fire_due_fault(None)
    path, payload = source(ctx.spec, "inference.checkpoint", ("checkpoint",))
    samples = ctx.model.inference_data()
    if samples == 0:
        raise ValueError("Inference dataloader length is zero: no .jpg/.png images at the top level of the "
                         "inference image folder (subfolders are not scanned)")
    report = {"emulated": True, "model": ctx.model.name, "model_file": path, "epoch": payload.get("epoch"),
              "num_samples": samples, "note": "EMULATED inference: no real predictions"}
    artifacts.write_atomic(ctx.results_dir / "inference_results.json", json.dumps(report, indent=1).encode())
    log(f"Inference on {samples} samples with {path}; results in {ctx.results_dir}  [EMULATED]")


def export(ctx: ActionContext) -> None:
    ctx.fire_due_fault(None)
    path, payload = source(ctx.spec, "export.checkpoint", ("checkpoint",))
    ctx.model.check_export(payload)
    onnx = ctx.spec.get(ctx.model.onnx_key)
    if not is_set(onnx):
        onnx = ctx.model.default_onnx(path)
    if os.path.exists(onnx):  # rtdetr/scripts/export.py:132-134 (same in centerpose, AR, sparse4d)
        raise AssertionError(ctx.model.onnx_exists_message.format(onnx))
    height = ctx.spec.get("export.input_height", 640)
    width = ctx.spec.get("export.input_width", 640)
    artifacts.write_artifact(onnx, "onnx", {
        "model": ctx.model.name, "source_checkpoint": path, "source_digest": artifacts.digest(path),
        "epoch": payload.get("epoch"), "kpis": payload.get("kpis", {}),
        "input_shape": [int(ctx.spec.get("export.input_channel", 3)), int(height), int(width)],
        "opset_version": int(ctx.spec.get("export.opset_version", 17)),
        "note": "EMULATED ONNX file: no real graph",
    })
    log(f"ONNX file stored at {onnx}  [EMULATED]")


def quantized_file_name(backend: str) -> str:
    """`quantized_model_<backend_name>.pth`: torchao, or modelopt for TAO Core's `modelopt.pytorch`
    (core/quantization/backends/{torchao/torchao.py:185,278; modelopt/modelopt.py:78,216})."""
    return f"quantized_model_{backend.split('.')[0]}.pth"


def quantize(ctx: ActionContext) -> None:
    ctx.fire_due_fault(None)
    path, payload = source(ctx.spec, "quantize.model_path", ("checkpoint",))
    backend = str(ctx.spec.get("quantize.backend", "torchao") or "")
    if not backend:
        raise ValueError("Quantization backend must be specified in the config (e.g., 'modelopt').")
    samples = ctx.model.quantize_data() if ctx.spec.get("quantize.mode", "weight_only_ptq") != "weight_only_ptq" \
        else 0
    out = ctx.results_dir / quantized_file_name(backend)
    artifacts.write_artifact(out, "checkpoint", {
        **{k: payload.get(k) for k in ("model", "epoch", "step", "num_epochs", "seed", "params_digest",
                                       "kpis", "trained_with")},
        "quantized": True, "source_checkpoint": path, "source_digest": artifacts.digest(path),
        "backend": backend, "mode": ctx.spec.get("quantize.mode", "weight_only_ptq"),
        "layers": ctx.spec.get("quantize.layers", []), "calibration_samples": samples,
        "note": "EMULATED quantized checkpoint: no real weights",
    })
    log(f"Quantized model saved to: {out}  [EMULATED]")


def _evaluate_by_image(ctx: ActionContext) -> None:
    (trt_evaluate if ctx.image == "deploy" else evaluate)(ctx)


def _inference_by_image(ctx: ActionContext) -> None:
    (trt_inference if ctx.image == "deploy" else inference)(ctx)


ACTIONS: dict[str, Callable[[ActionContext], None]] = {
    "train": train,
    "distill": train,
    "evaluate": _evaluate_by_image,
    "inference": _inference_by_image,
    "export": export,
    "quantize": quantize,
    "gen_trt_engine": gen_trt_engine,
    "dataset_convert": dataset_convert,
    "convert": dataset_convert,
}


def image_for(model_name: str, action: str, spec: Spec) -> str:
    """Which TAO image the command stands for: gen_trt_engine is TAO Deploy's; evaluate and inference are
    when given an engine and no checkpoint (the skills' trt_evaluate step); convert is Data Services'."""
    if action in ("dataset_convert", "convert"):
        return "data-services"
    if action == "gen_trt_engine":
        return "deploy"
    if action in ("evaluate", "inference"):
        engine = spec.data.get(action, {}).get("trt_engine") if isinstance(spec.data.get(action), dict) else None
        checkpoint = spec.data.get(action, {}).get("checkpoint") if isinstance(spec.data.get(action), dict) else None
        if is_set(engine) and not is_set(checkpoint):
            return "deploy"
    return "pyt"

