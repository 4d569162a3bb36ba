"""Emulated `train` (and RT-DETR `distill`): TAO's training loop, its status.json lines and checkpoints.

One epoch per `TAOFLOW_EMULATOR_EPOCH_SECONDS`; KPIs from `taoflow.emulator.surfaces.kpis` (a pure function of the
hyperparameters, the epoch and the seed), so a run interrupted and resumed from its newest checkpoint draws
exactly the curve of an uninterrupted run. What TAO does, in order (docs/tao-contract.md):

- checks: an epoch checkpoint interval or a validation interval above num_epochs is an AssertionError
  (core/initialize_experiments.py:42-50);
- resume from `train.resume_training_checkpoint_path`, else from `*_latest.pth` in the results folder, with a
  RUNNING "Resuming training from checkpoint: …" line (:59-68); STARTED "Starting Training Loop." (callbacks
  /loggers.py:97-102);
- per epoch, as Lightning calls its hooks: validation every `validation_interval` epochs ("Eval metrics
  generated.", no epoch), the status callback's "Training loop in progress" line (epoch, step, max_epoch,
  max_step, time_per_epoch, time_per_step, eta), the model's "Train metrics generated." (no epoch), then the
  checkpoint: every `checkpoint_interval` epochs, or every N train steps with `checkpoint_interval_unit:
  step` (TAOLightningModule; RT-DETR ignores the unit), named as the model names them; `<model>_latest.pth`
  links to the newest checkpoint this process saved, or is written as a file of its own while there is none;
- "Training loop complete." at the end.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from typing import Any

from taoflow.dotted import flatten
from taoflow.emulator import artifacts, rungs
from taoflow.emulator.context import ActionContext, is_set, log
from taoflow.emulator.metrics import eval_kpis, train_kpis
from taoflow.status import format_duration

DEFAULT_EPOCH_SECONDS = 0.05
# Keys that say where things are, not how the model learns: left out of the KPI parameters and the
# checkpoint's params digest, so a resume (which changes the resume path) continues the same curve.
_NON_PARAM_WORDS = ("path", "dir", "file", "sources", "root", "checkpoint", "resume", "results", "gpu",
                    "num_nodes", "encryption", "wandb", "workers", "pin_memory", "num_epochs",
                    "checkpoint_interval", "validation_interval", "seed", "anchor", "data_root", "label_map",
                    "ann_file", "trt_engine", "onnx")


def hyperparameters(spec: dict[str, Any]) -> dict[str, Any]:
    """The dotted keys that shape the learning curve (locations and bookkeeping removed: a key named for a
    location, or whose value is one — CenterPose's `dataset.train_data` — so where the data sits never
    changes the curve, and `benchmarks/automl.py --predict-tune` predicts a sweep on data anywhere)."""
    out = {}
    for key, value in flatten(spec).items():
        leaf = key.rsplit(".", 1)[-1]
        if key.split(".")[0] not in ("model", "train", "dataset", "distill"):
            continue
        if any(word in leaf for word in _NON_PARAM_WORDS) or (key.startswith("dataset.") and "sources" in key):
            continue
        if _is_location(value):
            continue
        out[key] = value
    return out


def _is_location(value: Any) -> bool:
    """An absolute path or a URI (or a list of them): where something is, not how the model learns."""
    if isinstance(value, (list, tuple)):
        return bool(value) and all(_is_location(item) for item in value)
    return isinstance(value, str) and (value.startswith("/") or "://" in value)


def params_digest(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _surface() -> Callable[..., dict[str, float]]:
    from taoflow.emulator.surfaces import kpis

    return kpis


def _resume_point(ctx: ActionContext, steps: int) -> tuple[int, int, str | None]:
    """(first epoch to run, global step already done, checkpoint) — TAO's explicit resume path, else the
    latest link in its results folder (core/utilities.py:93-103, realpath of `*_latest.pth`)."""
    resume = ctx.spec.get("train.resume_training_checkpoint_path")
    if not is_set(resume):
        links = sorted(ctx.results_dir.glob("*_latest.pth"))
        resume = os.path.realpath(links[0]) if links else None
    if not resume:
        return 0, 0, None
    if not str(resume).endswith((".pth", ".tlt")):
        raise ValueError("Resume checkpoint has an invalid file format; it must be either a .tlt or a .pth")
    ctx.status.write("RUNNING", f"Resuming training from checkpoint: {resume}")
    payload = artifacts.read_artifact(resume, ("checkpoint",))
    if payload.get("model") != ctx.model.name:
        raise RuntimeError(f"Error(s) in loading state_dict: {resume} holds a {payload.get('model')} model, "
                           f"not {ctx.model.name}")
    epoch, step = int(payload["epoch"]), int(payload["step"])
    log(f"Resuming training from {resume} (epoch {epoch}, step {step})")
    finished_epoch = step >= (epoch + 1) * steps  # saved at the epoch's end: continue with the next one
    return (epoch + 1 if finished_epoch else epoch), step, resume


class _Checkpoints:
    """Writes checkpoints and keeps `<model>_latest.pth` as Lightning's ModelCheckpoint(save_last='link')."""

    def __init__(self, ctx: ActionContext, common: dict[str, Any]):
        self.ctx = ctx
        self.common = common
        self.last_saved: str | None = None

    def save(self, name: str, epoch: int, step: int, values: dict[str, float], end_of_epoch: bool) -> None:
        path = self.ctx.results_dir / name
        artifacts.write_artifact(path, "checkpoint", {
            **self.common, "epoch": epoch, "step": step, "end_of_epoch": end_of_epoch, "kpis": values,
            "note": "EMULATED checkpoint: no real weights"})
        if name != self.ctx.model.latest_link:
            self.last_saved = name
        log(f"Saved checkpoint {path}")

    def epoch_end(self, epoch: int, step: int, values: dict[str, float]) -> None:
        if self.last_saved:
            artifacts.update_latest_link(self.ctx.results_dir, self.ctx.model.latest_link, self.last_saved)
        else:  # nothing saved yet: Lightning saves the last checkpoint itself under the latest name
            self.save(self.ctx.model.latest_link, epoch, step, values, end_of_epoch=True)


def train(ctx: ActionContext) -> None:
    spec, model = ctx.spec, ctx.model
    num_epochs = int(spec.get("train.num_epochs", 10))
    interval = max(int(spec.get("train.checkpoint_interval", 1)), 1)
    unit = str(spec.get("train.checkpoint_interval_unit", "epoch")).lower() if model.step_checkpoints else "epoch"
    val_interval = max(int(spec.get("train.validation_interval", 1)), 1)
    seed = int(spec.get("train.seed", 1234))
    epoch_seconds = float(os.environ.get("TAOFLOW_EMULATOR_EPOCH_SECONDS", DEFAULT_EPOCH_SECONDS))
    max_epoch = num_epochs - 1
    if unit == "epoch" and interval > num_epochs:
        raise AssertionError(f"Checkpoint interval {interval} > Number of epochs {num_epochs}."
                             f"Please set experiment_config.train.checkpoint_interval <= {num_epochs}")
    if val_interval > num_epochs:
        raise AssertionError(f"Validation interval {val_interval} > Number of epochs {num_epochs}."
                             f"Please set experiment_config.train.validation_interval <= {num_epochs}")

    model.check_train()
    if ctx.action == "distill":
        teacher = spec.get("distill.pretrained_teacher_model_path")
        if not is_set(teacher):
            raise ValueError("distill.pretrained_teacher_model_path must be set to the model file to load")
        artifacts.read_artifact(teacher, ("checkpoint",))
        log(f"Distilling from teacher {teacher}")
    samples = model.train_data()
    steps = model.steps_per_epoch(samples)
    params = hyperparameters(spec.data)
    kpis = _surface()
    validates = model.has_validation()
    start, done_steps, _ = _resume_point(ctx, steps)
    ctx.status.write("STARTED", "Starting Training Loop.")
    log(f"Training {model.name}: {samples} samples, batch size {model.batch_size()}, {steps} steps per epoch, "
        f"epochs {start}..{max_epoch}, checkpoint every {interval} {unit}(s)")
    checkpoints = _Checkpoints(ctx, {"model": model.name, "num_epochs": num_epochs, "seed": seed,
                                     "params_digest": params_digest(params), "trained_with": model.trained_with()})
    failure = model.first_step_failure()
    began = time.monotonic()
    last_eval: dict[str, Any] = {}
    for epoch in range(start, num_epochs):
        ctx.fire_due_fault(epoch)
        if failure is not None:
            raise failure
        t0 = time.monotonic()
        if epoch_seconds > 0:
            time.sleep(epoch_seconds)
        values = {k: float(v) for k, v in kpis(model.name, params, epoch, num_epochs, seed).items()}
        earlier = {k: float(v) for k, v in kpis(model.name, params, max(epoch - 1, 0), num_epochs, seed).items()}
        end_step = (epoch + 1) * steps
        if unit == "step":
            for step in range(max(epoch * steps, done_steps) + 1, end_step + 1):
                if step % interval == 0:
                    at_end = step == end_step
                    checkpoints.save(model.checkpoint_name(epoch, step), epoch, step,
                                     values if at_end else earlier, end_of_epoch=at_end)
        if validates and (epoch + 1) % val_interval == 0:
            last_eval = eval_kpis(model.name, values)
            ctx.status.kpi = last_eval
            ctx.status.write("RUNNING", "Eval metrics generated.")
        elapsed = time.monotonic() - t0
        per_epoch = (time.monotonic() - began) / (epoch - start + 1)
        ctx.status.write("RUNNING", "Training loop in progress", epoch=epoch, step=end_step, max_epoch=max_epoch,
                         max_step=num_epochs * steps, time_per_epoch=format_duration(elapsed),
                         time_per_step=format_duration(elapsed / steps), eta=format_duration(per_epoch * (max_epoch - epoch)))
        train_values = train_kpis(model.name, values)
        if ctx.action == "distill":  # distiller.py:423-433 adds train_loss to the last validation dict
            ctx.status.kpi = {**last_eval, **train_values}
            ctx.status.write("RUNNING", "Train and Val metrics generated.")
        else:
            ctx.status.kpi = train_values
            ctx.status.write("RUNNING", "Train metrics generated.")
        log(f"Epoch {epoch}/{max_epoch} step {end_step}/{num_epochs * steps}: "
            + ", ".join(f"{k}={v:.4f}" for k, v in sorted(values.items())) + "  [EMULATED]")
        if unit == "epoch" and (epoch + 1) % interval == 0:
            checkpoints.save(model.checkpoint_name(epoch, end_step), epoch, end_step, values, end_of_epoch=True)
        checkpoints.epoch_end(epoch, end_step, values)
        rungs.wait_at_rung(epoch + 1, log)  # AutoML: an emulated trial waits for the pruning decision
    if start > max_epoch:
        log(f"Checkpoint epoch {start - 1} is the last epoch of train.num_epochs={num_epochs}; nothing to train")
    ctx.status.write("RUNNING", "Training loop complete.")
