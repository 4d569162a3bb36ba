"""Results folders exactly as real TAO 6.x writes them, written from NVIDIA's source — not from taoflow's
emulator, whose output the tests compare against these.

Every line is built the way TAO's StatusLogger builds it (NVIDIA/tao_pytorch_backend
nvidia_tao_pytorch/core/loggers/api_logging.py:178-216): the data fields first, then `date`, `time`,
`status`, `verbosity`, `message`, and `kpi` — the dict the trainer last *assigned* (a later assignment
replaces it; every line repeats it). The order of lines is Lightning's hook order as TAO wires it:
- monitor_status: STARTED "Starting <name> <mode>." ... RUNNING "<Mode> finished successfully."; never SUCCESS
  (core/decorators/workflow.py:43-122; tao_deploy nvidia_tao_deploy/cv/common/decorators.py:49-130);
- train: STARTED "Starting Training Loop." (core/callbacks/loggers.py:97-102), then per epoch the model's
  "Eval metrics generated." (validation runs inside the epoch), the callback's "Training loop in progress"
  with epoch/step/max_epoch/max_step/time_per_epoch/time_per_step/eta as str(timedelta) (:132-149), the
  model's "Train metrics generated."; "Training loop complete." (:151-156);
- KPI dicts per model: rtdetr pl_rtdetr_model.py:264-381 (val_mAP/val_mAP50/test_* as str), centerpose
  pl_centerpose_model.py:96-222 (val_3DIoU/val_2DMPE/test_* as str), action_recognition pl_ar_model.py:109-211,
  sparse4d sparse4d_pl_model.py:99-249 and dataloader/dataset.py:679-697 (img_bbox_NuScenes/… names);
  nvpanoptix3d (no public source): PRQ/RSQ/RRQ validation KPIs and train_loss, per NVIDIA's skill notes;
- checkpoints: RT-DETR `model_epoch_XXX.pth` (pl_rtdetr_model.py:99-113), the others
  `model_epoch_XXX_step_YYYYY.pth` (core/lightning/tao_lightning_module.py:100-115), `<name>_latest.pth`
  a relative link to the newest (Lightning's save_last='link');
- TAO Deploy evaluate: results.json with COCO's names (tao_deploy cv/rtdetr/scripts/evaluate.py:133-140,
  metrics/coco_metric.py:274-275), CenterPose report.csv (cv/centerpose/centerpose_evaluator.py:701-783);
- Sparse4D's converter: `<split>/<scene>_infos_<split>.pkl`, map_object_hash_to_object_id.json, the anchor
  (tao_dataset_suite nvidia_tao_ds/annotations/conversion/aicity_to_ovpkl.py:112-120, 237-244, 607-608).
"""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
from datetime import timedelta
from pathlib import Path
from typing import Any

NAMES = {"rtdetr": "RT-DETR", "centerpose": "Centerpose", "action_recognition": "Action Recognition",
         "sparse4d": "Sparse4D", "nvpanoptix3d": "NVPanoptix3D"}
LATEST = {"rtdetr": "rtdetr_model_latest.pth", "centerpose": "centerpose_model_latest.pth",
          "action_recognition": "ar_model_latest.pth", "sparse4d": "sparse4d_model_latest.pth",
          "nvpanoptix3d": "nvpanoptix3d_model_latest.pth"}
# The quantity each model validates, in TAO's own name, and whether TAO writes it as a string.
SCORE_KEY = {"rtdetr": "val_mAP50", "centerpose": "val_3DIoU", "action_recognition": "val_acc",
             "sparse4d": "img_bbox_NuScenes/mAP", "nvpanoptix3d": "PRQ"}


class TaoStatus:
    """TAO's StatusLogger, line by line (api_logging.py:178-216): `kpi` is whatever was assigned last."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.kpi: dict[str, Any] = {}
        self.clock = 0

    def write(self, status: str, message: str, data: dict[str, Any] | None = None) -> None:
        line = dict(data or {})
        self.clock += 7
        line["date"] = "11/3/2026"
        line["time"] = f"9:{self.clock // 60}:{self.clock % 60}"
        line["status"] = status
        line["verbosity"] = "INFO"
        line["message"] = message
        if self.kpi:
            line["kpi"] = self.kpi
        with open(self.path, "a") as fh:
            fh.write(json.dumps(line) + "\n")


def eval_dict(model: str, score: float) -> dict[str, Any]:
    """The model's "Eval metrics generated." dict for a validation `score` (0..1)."""
    if model == "rtdetr":
        return {"val_mAP": str(score * 0.7), "val_mAP50": str(score), "val_loss": 9.0 - score}
    if model == "centerpose":
        return {"val_3DIoU": str(score), "val_2DMPE": str(0.2 - score / 10)}
    if model == "action_recognition":
        return {"val_loss": 2.0 - score, "val_acc": score}
    if model == "sparse4d":
        return {"img_bbox_NuScenes/Person_AP_dist_0.5": float(f"{score * 0.9:.4f}"),
                "img_bbox_NuScenes/mATE": float(f"{1 - score:.4f}"),
                "img_bbox_NuScenes/NDS": score * 1.1, "img_bbox_NuScenes/mAP": score}
    return {"PRQ": score, "RSQ": score + 0.1, "RRQ": score + 0.2}


def train_dict(model: str, loss: float) -> dict[str, Any]:
    """The model's "Train metrics generated." dict."""
    if model == "action_recognition":
        return {"train_loss": loss, "train_acc": 1.0 / (1.0 + loss)}
    if model == "sparse4d":  # trainer.logged_metrics, every value .item()
        return {"lr": 0.0002, "loss_cls": loss / 3, "loss_box": loss / 2, "loss": loss}
    return {"train_loss": loss}


def evaluate_dict(model: str, score: float) -> dict[str, Any]:
    """PyTorch evaluate's "Test metrics generated." dict."""
    if model == "rtdetr":
        return {"test_mAP": str(score * 0.7), "test_mAP50": str(score)}
    if model == "centerpose":
        return {"test_3DIoU": str(score), "test_2DMPE": str(0.2 - score / 10)}
    if model == "action_recognition":
        return {"accuracy": round(score, 3), "m_accuracy": round(score * 0.95, 3)}
    return eval_dict(model, score)


def checkpoint_name(model: str, epoch: int, step: int) -> str:
    return f"model_epoch_{epoch:03d}.pth" if model == "rtdetr" else f"model_epoch_{epoch:03d}_step_{step:05d}.pth"


def write_train(action_dir: Path, model: str, scores: list[float], *, steps: int = 10, validation_interval: int = 1,
                checkpoint_interval: int = 1, unit: str = "epoch", losses: list[float] | None = None,
                finished: bool = True, resumed_from: str | None = None, first_epoch: int = 0) -> Path:
    """A train results folder (`<results_dir>/train/`) of `len(scores)` epochs: `scores[e]` is epoch e's
    validation score (used only on validation epochs). Checkpoints every `checkpoint_interval` epochs, or
    train steps with `unit="step"` (RT-DETR ignores the unit). Returns `action_dir`."""
    status = TaoStatus(action_dir / "status.json")
    (action_dir / "experiment.yaml").write_text("results_dir: " + str(action_dir) + "\n")
    status.write("STARTED", f"Starting {NAMES[model]} train.")
    if resumed_from:
        status.write("RUNNING", f"Resuming training from checkpoint: {resumed_from}")
    status.write("STARTED", "Starting Training Loop.")
    losses = losses or [10.0 / (e + 1) for e in range(len(scores))]
    num_epochs = len(scores)
    unit = "epoch" if model == "rtdetr" else unit
    saved: list[str] = []
    for epoch in range(first_epoch, num_epochs):
        end = (epoch + 1) * steps
        if unit == "step":  # on_train_batch_end, before validation
            for step in range(epoch * steps + 1, end + 1):
                if step % checkpoint_interval == 0:
                    saved.append(_checkpoint(action_dir, checkpoint_name(model, epoch, step)))
        if (epoch + 1) % validation_interval == 0:
            status.kpi = eval_dict(model, scores[epoch])
            status.write("RUNNING", "Eval metrics generated.")
        status.write("RUNNING", "Training loop in progress", {
            "epoch": epoch, "step": end, "max_epoch": num_epochs - 1, "max_step": num_epochs * steps,
            "time_per_epoch": str(timedelta(seconds=61.25)), "time_per_step": str(timedelta(seconds=6.125)),
            "eta": str(timedelta(seconds=61.25 * (num_epochs - 1 - epoch)))})
        status.kpi = train_dict(model, losses[epoch])
        status.write("RUNNING", "Train metrics generated.")
        if unit == "epoch" and (epoch + 1) % checkpoint_interval == 0:
            saved.append(_checkpoint(action_dir, checkpoint_name(model, epoch, end)))
        latest = action_dir / LATEST[model]
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        if saved:
            os.symlink(saved[-1], latest)
        else:  # Lightning saves the last state under the latest name while no checkpoint exists
            _checkpoint(action_dir, LATEST[model])
    status.write("RUNNING", "Training loop complete.")
    if finished:
        status.write("RUNNING", "Train finished successfully.")
    (action_dir / "lightning_logs" / "version_1").mkdir(parents=True, exist_ok=True)
    (action_dir / "lightning_logs" / "version_1" / "hparams.yaml").write_text("{}\n")
    return action_dir


def _checkpoint(folder: Path, name: str) -> str:
    (folder / name).write_bytes(b"PK\x03\x04 torch zip checkpoint " + name.encode() * 4)
    return name


def write_evaluate(action_dir: Path, model: str, score: float) -> Path:
    """PyTorch evaluate: no file of KPIs, one "Test metrics generated." line, then success."""
    status = TaoStatus(action_dir / "status.json")
    status.write("STARTED", f"Starting {NAMES[model]} evaluate.")
    status.kpi = evaluate_dict(model, score)
    status.write("RUNNING", "Test metrics generated.")
    status.write("RUNNING", "Evaluate finished successfully.")
    return action_dir


def write_export(action_dir: Path, model: str, onnx: Path) -> Path:
    status = TaoStatus(action_dir / "status.json")
    status.write("STARTED", f"Starting {NAMES[model]} export.")
    onnx.parent.mkdir(parents=True, exist_ok=True)
    onnx.write_bytes(b"\x08\x07onnx graph")
    status.write("RUNNING", "Export finished successfully.")
    return action_dir


def write_gen_trt_engine(action_dir: Path, model: str, engine: Path) -> Path:
    status = TaoStatus(action_dir / "status.json")
    status.write("STARTED", f"Starting {model} gen_trt_engine.")
    engine.write_bytes(b"ftrt engine")
    status.write("RUNNING", "Gen_trt_engine finished successfully.")
    return action_dir


def write_trt_evaluate(action_dir: Path, model: str, score: float) -> Path:
    """TAO Deploy evaluate in `trt_evaluate/`: KPIs only in results.json (RT-DETR) or report.csv (CenterPose)."""
    status = TaoStatus(action_dir / "status.json")
    status.write("STARTED", f"Starting {model} trt_evaluate.")
    if model == "rtdetr":
        names = ["AP", "AP50", "AP75", "APs", "APm", "APl", "ARmax1", "ARmax10", "ARmax100", "ARs", "ARm", "ARl"]
        values = {name: score * 0.7 if name == "AP" else score if name == "AP50" else score / 2 for name in names}
        (action_dir / "results.json").write_text(json.dumps(values))
    else:
        thresholds = [i / 20 for i in range(21)]
        aps = [score if i == 10 else score * (1.5 - t) for i, t in enumerate(thresholds)]
        rows = [["Mean Error Scale:", 0.1], ["Mean Error 2D:", 0.2 - score / 10], ["Mean 3D IoU:", score * 0.9],
                ["Mean Azimuth Error:", 5.0], ["Mean Polar Error:", 4.0], [],
                ["IoU Thresholds:", *(f"{t:.4f}" for t in thresholds)],
                ["AP @3D IoU:", *(f"{a:.4f}" for a in aps)], []]
        out = io.StringIO()
        csv.writer(out).writerows(rows)
        (action_dir / "report.csv").write_text(out.getvalue())
    status.write("RUNNING", "Trt_evaluate finished successfully.")
    return action_dir


def write_sparse4d_convert(results_dir: Path, split: str, scenes: dict[str, int], anchor: str | None = None) -> Path:
    """Data Services' AICity → OVPKL convert into `results_dir` itself: one pickle per scene (`scenes` maps a
    scene to its frame count), the object-id map, and the anchor when `anchor` names it (train split)."""
    status = TaoStatus(results_dir / "status.json")
    status.write("STARTED", "Starting Data-services Annotation conversion.")
    for scene, frames in scenes.items():
        infos = [{"frame_idx": f, "cams": {}, "scene_name": scene, "timestamp": f / 30.0,
                  "token": f"{scene}__{f:09}", "gt_boxes": [[1.0, 2.0, 0.0, 0.6, 0.6, 1.8, 0.0]],
                  "gt_names": ["Person"], "instance_inds": [0], "asset_inds": [1]} for f in range(frames)]
        path = results_dir / split / f"{scene}_infos_{split}.pkl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(pickle.dumps({"infos": infos, "metadata": {"version": "2025", "split_type": split}}))
    (results_dir / "map_object_hash_to_object_id.json").write_text(
        json.dumps({"no_of_objects": 1, "max_object_id": 1, "objects": {"1": 1}}))
    if anchor:
        (results_dir / anchor).write_bytes(b"\x93NUMPY anchors")
    status.write("RUNNING", "Annotation conversion finished successfully.")
    return results_dir


def status_shape(path: Path) -> list[tuple]:
    """What a status.json says, without values that vary (dates, times, numbers): per line its status, its
    message, its data fields and the KPI names with their value types."""
    shape = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        data = tuple(k for k in record if k not in ("date", "time", "status", "verbosity", "message", "kpi"))
        kpi = tuple(sorted((k, type(v).__name__) for k, v in (record.get("kpi") or {}).items()))
        shape.append((record["status"], record.get("message"), data, kpi))
    return shape
