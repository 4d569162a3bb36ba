"""What each TAO action does in the emulator: same inputs, same outputs, same status.json, no GPU.

train: one epoch per `TAOFLOW_EMULATOR_EPOCH_SECONDS`; KPIs from `taoflow.emulator.surfaces.kpis` (a pure function of
the hyperparameters, the epoch and the seed), so a run interrupted and resumed from its newest checkpoint
draws exactly the curve of an uninterrupted run. Downstream actions read the KPIs recorded in the file they
are given, so evaluate reports the metrics of that checkpoint's epoch, and an engine built from an ONNX file
exported from it reports them too.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from taoflow.dotted import flatten
from taoflow.emulator import artifacts, rungs
from taoflow.emulator.faults import Fault, FaultPlan
from taoflow.emulator.models import EmulatedFailure, ModelEmulator
from taoflow.emulator.spec import Spec
from taoflow.status import StatusWriter, format_duration

DEFAULT_EPOCH_SECONDS = 0.05
# Keys that say where things are, not how the model learns: left out of the KPI parameters and the
# checkpoint's params digest, so a resume (which changes the resume path) continues the same curve.
_NON_PARAM_WORDS = ("path", "dir", "file", "sources", "root", "checkpoint", "resume", "results", "gpu",
                    "num_nodes", "encryption", "wandb", "workers", "pin_memory", "num_epochs",
                    "checkpoint_interval", "validation_interval", "seed", "anchor", "data_root", "label_map",
                    "ann_file", "trt_engine", "onnx")


class Preempted(BaseException):
    """SIGTERM arrived: stop now (BaseException so `except Exception` in action code does not swallow it)."""


def install_sigterm() -> None:
    def handler(signum: int, frame: Any) -> None:
        raise Preempted()

    signal.signal(signal.SIGTERM, handler)


def log(message: str) -> None:
    print(message, flush=True)


def hyperparameters(spec: dict[str, Any]) -> dict[str, Any]:
    """The dotted keys that shape the learning curve (locations and bookkeeping removed)."""
    out = {}
    for key, value in flatten(spec).items():
        leaf = key.rsplit(".", 1)[-1]
        if key.split(".")[0] not in ("model", "train", "dataset", "distill"):
            continue
        if any(word in leaf for word in _NON_PARAM_WORDS) or (key.startswith("dataset.") and "sources" in key):
            continue
        out[key] = value
    return out


def params_digest(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _surface() -> Callable[..., dict[str, float]]:
    from taoflow.emulator.surfaces import kpis

    return kpis


class ActionContext:
    def __init__(self, model: ModelEmulator, spec: Spec, action: str, results_dir: Path, status: StatusWriter,
                 faults: FaultPlan):
        self.model = model
        self.spec = spec
        self.action = action
        self.results_dir = results_dir
        self.status = status
        self.faults = faults

    def fire_due_fault(self, epoch: int | None) -> None:
        fault = self.faults.due(epoch)
        if fault is not None:
            self.faults.mark_fired(fault)
            fire(fault, epoch)

    def succeed(self, trainer_message: str) -> None:
        self.status.write("RUNNING", trainer_message)
        self.status.write("SUCCESS", f"{self.action} action completed successfully for {self.model.name}")


def fire(fault: Fault, epoch: int | None) -> None:
    where = f" at epoch {epoch}" if epoch is not None else ""
    log(f"[EMULATED] injecting fault '{fault.text}'{where} (TAOFLOW_EMULATOR_FAULT)")
    if fault.kind == "sigkill":
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    if fault.kind == "preempt":
        raise Preempted()
    if fault.kind == "oom":
        raise EmulatedFailure(
            [], frames=[('  File "/usr/local/lib/python3.12/dist-packages/torch/nn/modules/module.py", line 1762, in '
             '_call_impl')],
            exc=_named_error("torch.OutOfMemoryError",
                         "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.15 "
                         "GiB of which 1.06 GiB is free. Including non-PyTorch memory, this process has 78.08 "
                         "GiB memory in use."))
    if fault.kind == "nccl":
        raise EmulatedFailure(
            ["[rank0]:[E ProcessGroupNCCL.cpp:616] [Rank 0] Watchdog caught collective operation timeout"],
            exc=_named_error("torch.distributed.DistBackendError",
                         "NCCL error in: ../torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:1970, unhandled "
                         "system error (run with NCCL_DEBUG=INFO for details), NCCL version 2.21.5\n"
                         "ncclSystemError: System call (e.g. socket, malloc) or external library call failed "
                         "or device error."))
    raise RuntimeError(f"EMULATED crash{where} (fault injected by TAOFLOW_EMULATOR_FAULT={fault.text})")


def _named_error(qualified: str, message: str) -> Exception:
    """An exception whose traceback line reads `<qualified>: message` like torch's own classes."""
    module, _, name = qualified.rpartition(".")
    cls = type(name, (RuntimeError,), {"__module__": module})
    return cls(message)


# ------------------------------------------------------------------------------------------------ train

def train(ctx: ActionContext) -> None:
    spec, model = ctx.spec, ctx.model
    num_epochs = int(spec.get("train.num_epochs", 10))
    interval = max(int(spec.get("train.checkpoint_interval", 1)), 1)
    val_interval = max(int(spec.get("train.validation_interval", 1)), 1)
    seed = int(spec.get("train.seed", 1234))
    epoch_seconds = float(os.environ.get("TAOFLOW_EMULATOR_EPOCH_SECONDS", DEFAULT_EPOCH_SECONDS))
    max_epoch = num_epochs - 1

    model.check_train()
    if ctx.action == "distill":
        teacher, _ = _source(spec, ("distill.pretrained_teacher_model_path",), ("checkpoint",))
        log(f"Distilling from teacher {teacher}")
    samples = model.train_data()
    steps = model.steps_per_epoch(samples)
    params = hyperparameters(spec.data)
    digest = params_digest(params)
    kpis = _surface()

    start = 0
    resume = spec.get("train.resume_training_checkpoint_path")
    if resume:
        payload = artifacts.read_artifact(resume, ("checkpoint",))
        if payload.get("model") != model.name:
            raise RuntimeError(f"Error(s) in loading state_dict: {resume} holds a {payload.get('model')} model, "
                               f"not {model.name}")
        start = int(payload["epoch"]) + 1
        log(f"Resuming training from {resume} (epoch {payload['epoch']}, step {payload['step']})")
    ctx.status.write("STARTED", "Starting Training Loop.")
    log(f"Training {model.name}: {samples} samples, batch size {model.batch_size()}, {steps} steps per epoch, "
        f"epochs {start}..{max_epoch}")
    if start > max_epoch:
        log(f"Checkpoint epoch {start - 1} is the last epoch of train.num_epochs={num_epochs}; nothing to train")

    failure = model.first_step_failure()
    began = time.monotonic()
    for epoch in range(start, num_epochs):
        ctx.fire_due_fault(epoch)
        if failure is not None:
            raise failure
        t0 = time.monotonic()
        if epoch_seconds > 0:
            time.sleep(epoch_seconds)
        values = {k: float(v) for k, v in kpis(model.name, params, epoch, num_epochs, seed).items()}
        validated = (epoch + 1) % val_interval == 0 or epoch == max_epoch
        shown = {k: v for k, v in values.items() if validated or ("loss" in k and not k.startswith("val"))}
        step = (epoch + 1) * steps
        elapsed = time.monotonic() - t0
        per_epoch = (time.monotonic() - began) / (epoch - start + 1)
        log(f"Epoch {epoch}/{max_epoch} step {step}/{num_epochs * steps}: "
            + ", ".join(f"{k}={v:.4f}" for k, v in sorted(shown.items())) + "  [EMULATED]")
        if (epoch + 1) % interval == 0 or epoch == max_epoch:
            name = artifacts.checkpoint_name(epoch, step)
            artifacts.write_artifact(ctx.results_dir / name, "checkpoint", {
                "model": model.name, "epoch": epoch, "step": step, "num_epochs": num_epochs, "seed": seed,
                "params_digest": digest, "kpis": values, "trained_with": model.trained_with(),
                "note": "EMULATED checkpoint: no real weights",
            })
            artifacts.update_latest_link(ctx.results_dir, model.latest_link, name)
            log(f"Saved checkpoint {ctx.results_dir / name}")
        ctx.status.write(
            "RUNNING", "Train metrics generated.", epoch=epoch, max_epoch=max_epoch, step=step,
            max_step=num_epochs * steps, time_per_epoch=format_duration(elapsed),
            eta=format_duration(per_epoch * (max_epoch - epoch)),
            kpi=shown or None, graphical={k: v for k, v in shown.items()} or None,
        )
        rungs.wait_at_rung(epoch + 1, log)  # AutoML: an emulated trial waits for the pruning decision
    ctx.succeed("Training loop completed successfully.")


# ------------------------------------------------------------------------------------------- downstream

def _source(spec: Spec, keys: tuple[str, ...], kinds: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    for key in keys:
        path = spec.get(key)
        if path:
            return path, artifacts.read_artifact(path, kinds)
    raise ValueError(f"{' or '.join(keys)} must be set to the model file to load")


def evaluate(ctx: ActionContext) -> None:
    ctx.fire_due_fault(None)
    if ctx.spec.get("evaluate.trt_engine"):
        path, payload = _source(ctx.spec, ("evaluate.trt_engine",), ("engine",))
    else:
        path, payload = _source(ctx.spec, ("evaluate.checkpoint",), ("checkpoint",))
    ctx.status.write("STARTED", "Starting evaluation.")
    samples = ctx.model.eval_data()
    metrics = dict(payload.get("kpis", {}))
    log(f"Evaluating {path} (epoch {payload.get('epoch')}) on {samples} samples  [EMULATED]")
    for key, value in sorted(metrics.items()):
        log(f"  {key}: {value:.4f}")
    report = {"emulated": True, "model": ctx.model.name, "model_file": path,
              "model_file_digest": artifacts.digest(path), "epoch": payload.get("epoch"),
              "engine": payload.get("kind") == "engine", "num_samples": samples, "metrics": metrics}
    artifacts.write_atomic(ctx.results_dir / "evaluation_results.json", json.dumps(report, indent=1).encode())
    ctx.status.write("RUNNING", "Evaluation metrics generated.", kpi=metrics or None)
    ctx.succeed("Evaluation completed successfully.")


def inference(ctx: ActionContext) -> None:
    ctx.fire_due_fault(None)
    if ctx.spec.get("inference.trt_engine"):
        path, payload = _source(ctx.spec, ("inference.trt_engine",), ("engine",))
    else:
        path, payload = _source(ctx.spec, ("inference.checkpoint",), ("checkpoint",))
    ctx.status.write("STARTED", "Starting inference.")
    samples = ctx.model.inference_data()
    if samples == 0:
        raise ValueError("Inference dataloader length is zero: no .jpg/.png images at the top level of the "
                         "inference image folder (subfolders are not scanned)")
    report = {"emulated": True, "model": ctx.model.name, "model_file": path, "epoch": payload.get("epoch"),
              "num_samples": samples, "note": "EMULATED inference: no real predictions"}
    out = ctx.results_dir / "inference"
    artifacts.write_atomic(out / "inference_results.json", json.dumps(report, indent=1).encode())
    log(f"Inference on {samples} samples with {path}; results in {out}  [EMULATED]")
    ctx.succeed("Inference completed successfully.")


def export(ctx: ActionContext) -> None:
    ctx.fire_due_fault(None)
    path, payload = _source(ctx.spec, ("export.checkpoint",), ("checkpoint",))
    ctx.status.write("STARTED", "Starting export.")
    ctx.model.check_export(payload)
    onnx = ctx.spec.get(ctx.model.onnx_key) or ctx.model.default_onnx()
    height = ctx.spec.get("export.input_height", 640)
    width = ctx.spec.get("export.input_width", 640)
    artifacts.write_artifact(onnx, "onnx", {
        "model": ctx.model.name, "source_checkpoint": path, "source_digest": artifacts.digest(path),
        "epoch": payload.get("epoch"), "kpis": payload.get("kpis", {}),
        "input_shape": [int(ctx.spec.get("export.input_channel", 3)), int(height), int(width)],
        "opset_version": int(ctx.spec.get("export.opset_version", 17)),
        "note": "EMULATED ONNX file: no real graph",
    })
    log(f"Exported {path} to {onnx}  [EMULATED]")
    ctx.succeed("Export completed successfully.")


def quantize(ctx: ActionContext) -> None:
    ctx.fire_due_fault(None)
    path, payload = _source(ctx.spec, ("quantize.model_path",), ("checkpoint",))
    ctx.status.write("STARTED", "Starting quantization.")
    samples = ctx.model.quantize_data()
    out = ctx.results_dir / "quantized_model.pth"
    layers = ctx.spec.get("quantize.layers", [])
    artifacts.write_artifact(out, "checkpoint", {
        **{k: payload.get(k) for k in ("model", "epoch", "step", "num_epochs", "seed", "params_digest",
                                       "kpis", "trained_with")},
        "quantized": True, "source_checkpoint": path, "source_digest": artifacts.digest(path),
        "backend": ctx.spec.get("quantize.backend", "modelopt.pytorch"), "layers": layers,
        "calibration_samples": samples, "note": "EMULATED quantized checkpoint: no real weights",
    })
    log(f"Quantized {path} with {samples} calibration samples to {out}  [EMULATED]")
    ctx.succeed("Quantization completed successfully.")


def gen_trt_engine(ctx: ActionContext) -> None:
    ctx.fire_due_fault(None)
    path, payload = _source(ctx.spec, ("gen_trt_engine.onnx_file",), ("onnx",))
    ctx.status.write("STARTED", "Starting TensorRT engine generation.")
    data_type = str(ctx.spec.get("gen_trt_engine.tensorrt.data_type", "FP32")).upper()
    if ctx.model.name == "nvpanoptix3d" and data_type == "INT8":
        raise ValueError("NVPanoptix3D supports only FP32 and FP16 engines (gen_trt_engine.tensorrt.data_type)")
    engine = ctx.spec.get("gen_trt_engine.trt_engine") or str(ctx.results_dir / "model.engine")
    cal_cache = None
    if data_type == "INT8":
        images = ctx.model.calibration_data()
        if images == 0:
            raise ValueError("INT8 calibration needs images: gen_trt_engine.tensorrt.calibration.cal_image_dir "
                             "holds none")
        cal_cache = (ctx.spec.get("gen_trt_engine.tensorrt.calibration.cal_cache_file")
                     or str(ctx.results_dir / "cal.bin"))
        artifacts.write_artifact(cal_cache, "cal_cache", {
            "model": ctx.model.name, "onnx_digest": artifacts.digest(path), "calibration_images": images,
            "note": "EMULATED calibration cache"})
        log(f"Calibrated on {images} images; cache {cal_cache}")
    artifacts.write_artifact(engine, "engine", {
        "model": ctx.model.name, "onnx_file": path, "onnx_digest": artifacts.digest(path),
        "epoch": payload.get("epoch"), "kpis": payload.get("kpis", {}), "data_type": data_type,
        "cal_cache_file": cal_cache, "note": "EMULATED TensorRT engine: not loadable by TensorRT"})
    log(f"Built {data_type} engine {engine} from {path}  [EMULATED]")
    ctx.succeed("TensorRT engine generation completed successfully.")


def dataset_convert(ctx: ActionContext) -> None:
    """Sparse4D's AICity conversion: annotations.pkl (a real pickle) and anchor_init.npy (900 × 11)."""
    import numpy as np

    from taoflow.datasets import formats
    from taoflow.emulator.pickles import write_annotations

    ctx.fire_due_fault(None)
    root, split = ctx.spec.get("aicity.root"), str(ctx.spec.get("aicity.split", "train"))
    if not root:
        raise ValueError("aicity.root must be set to the AICity dataset folder")
    ctx.status.write("STARTED", "Starting dataset conversion.")
    info = formats.read_aicity(root, split)
    infos, centers = [], []
    for scene in info.scenes:
        gt = formats.load_json(Path(root) / split / scene / "ground_truth.json")
        for frame, objects in sorted(gt.items(), key=lambda kv: int(kv[0]) if kv[0].isdigit() else kv[0]):
            boxes = [o.get("3d location", [0, 0, 0]) + o.get("3d bounding box scale", [1, 1, 1]) for o in objects]
            centers += [b[:3] for b in boxes]
            infos.append({"scene": scene, "frame_id": frame, "gt_boxes": boxes,
                          "gt_names": [o.get("object type", "") for o in objects]})
    write_annotations(ctx.results_dir / "annotations.pkl",
                      {"infos": infos, "metadata": {"version": "emulated-aicity", "split": split,
                                                    "emulated": True}})
    count = int(ctx.spec.get("aicity.anchor_init_config.num_anchor", 900))
    rng = np.random.default_rng(sum(split.encode()))  # deterministic per split
    base = np.array(centers or [[0.0, 0.0, 0.0]], dtype=np.float32)
    picks = base[np.arange(count) % len(base)] + rng.normal(0.0, 0.5, (count, 3)).astype(np.float32)
    anchors = np.zeros((count, 11), dtype=np.float32)
    anchors[:, :3] = picks
    anchors[:, 3:6] = np.log(np.array([0.6, 0.6, 1.8], dtype=np.float32))
    anchors[:, 7] = 1.0  # cos(yaw)
    tmp = ctx.results_dir / ".anchor_init.npy.tmp"
    with open(tmp, "wb") as fh:
        np.save(fh, anchors)
    os.replace(tmp, ctx.results_dir / "anchor_init.npy")
    log(f"Converted {len(info.scenes)} scenes ({len(infos)} frames) of split {split}; wrote annotations.pkl and "
        f"anchor_init.npy {anchors.shape}  [EMULATED]")
    ctx.succeed("Dataset conversion completed successfully.")


ACTIONS: dict[str, Callable[[ActionContext], None]] = {
    "train": train,
    "distill": train,
    "evaluate": evaluate,
    "inference": inference,
    "export": export,
    "quantize": quantize,
    "gen_trt_engine": gen_trt_engine,
    "dataset_convert": dataset_convert,
    "convert": dataset_convert,
}
