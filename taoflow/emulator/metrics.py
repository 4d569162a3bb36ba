"""The KPI dicts each model's TAO code writes, filled from the emulator's response surface.

`taoflow.emulator.surfaces.kpis` gives one value per quantity (val_mAP, train_loss, …); TAO names and types them per
model and per event, and this module does the same (docs/tao-contract.md, "KPI names and types"):

| model | "Train metrics generated." | "Eval metrics generated." | evaluate "Test metrics generated." |
|---|---|---|---|
| rtdetr | train_loss | val_mAP, val_mAP50 (strings), val_loss | test_mAP, test_mAP50 (strings) |
| centerpose | train_loss | val_3DIoU, val_2DMPE (strings) | test_3DIoU, test_2DMPE (strings) |
| action_recognition | train_loss, train_acc | val_loss, val_acc | accuracy, m_accuracy (rounded to 3) |
| sparse4d | trainer.logged_metrics (lr, loss) | img_bbox_NuScenes/mAP, /NDS, /mATE … | the same names |
| nvpanoptix3d | train_loss | PRQ, RSQ, RRQ | PRQ, RSQ, RRQ |

TensorRT (TAO Deploy) evaluate writes no KPI line: RT-DETR writes COCO's twelve numbers to `results.json`,
CenterPose a `report.csv`. Their values differ from PyTorch's by a small, deterministic amount that grows
as precision drops (fp32 < fp16 < int8), as engines do on real hardware; the `trt_drift` fault makes the
gap far larger than any parity tolerance.
"""

from __future__ import annotations

import csv
import hashlib
import io
from typing import Any

SPARSE4D_PREFIX = "img_bbox_NuScenes"
# Typical |TensorRT - PyTorch| of a detector's mAP per precision (absolute, on a 0..1 scale).
PRECISION_GAP = {"fp32": 0.0004, "fp16": 0.0025, "int8": 0.012}
DRIFT_FACTOR = 0.55  # trt_drift: the engine keeps a bit over half the model's accuracy
_COCO_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "ARmax1", "ARmax10", "ARmax100", "ARs", "ARm", "ARl")


def _mpe(iou: float) -> float:
    """CenterPose's 2D mean pixel error (normalised): falls as 3D IoU rises."""
    return round(0.02 + 0.18 * (1.0 - min(max(iou, 0.0), 1.0)), 6)


def _sparse4d_scores(m_ap: float) -> dict[str, float]:
    nds = 0.5 * m_ap + 0.5 * min(0.2 + m_ap, 0.99)
    return {f"{SPARSE4D_PREFIX}/mAP": m_ap, f"{SPARSE4D_PREFIX}/NDS": nds,
            f"{SPARSE4D_PREFIX}/mATE": float(f"{0.9 - 0.6 * m_ap:.4f}"),
            f"{SPARSE4D_PREFIX}/mASE": float(f"{0.5 - 0.3 * m_ap:.4f}"),
            f"{SPARSE4D_PREFIX}/mAOE": float(f"{1.2 - 0.8 * m_ap:.4f}")}


def train_kpis(model: str, values: dict[str, float], lr: float = 1e-4) -> dict[str, Any]:
    """The dict of the model's "Train metrics generated." line."""
    loss = values["train_loss"]
    if model == "action_recognition":
        return {"train_loss": loss, "train_acc": min(values["val_acc"] * 1.08, 0.999)}
    if model == "sparse4d":
        return {"lr": lr, "loss": loss}
    return {"train_loss": loss}


def eval_kpis(model: str, values: dict[str, float]) -> dict[str, Any]:
    """The dict of the model's "Eval metrics generated." line (validation inside train)."""
    if model == "rtdetr":
        return {"val_mAP": str(values["val_mAP"]), "val_mAP50": str(values["val_mAP50"]),
                "val_loss": values["train_loss"] * 1.07}
    if model == "centerpose":
        return {"val_3DIoU": str(values["val_3DIoU"]), "val_2DMPE": str(_mpe(values["val_3DIoU"]))}
    if model == "action_recognition":
        return {"val_loss": values["val_loss"], "val_acc": values["val_acc"]}
    if model == "sparse4d":
        return _sparse4d_scores(values["val_mAP"])
    return {"PRQ": values["PRQ"], "RSQ": values["RSQ"], "RRQ": values["RRQ"]}


def test_kpis(model: str, values: dict[str, float]) -> dict[str, Any]:
    """The dict of PyTorch evaluate's "Test metrics generated." line: evaluation KPIs, never a training loss."""
    if model == "rtdetr":
        return {"test_mAP": str(values["val_mAP"]), "test_mAP50": str(values["val_mAP50"])}
    if model == "centerpose":
        return {"test_3DIoU": str(values["val_3DIoU"]), "test_2DMPE": str(_mpe(values["val_3DIoU"]))}
    if model == "action_recognition":
        accuracy = values["val_acc"]
        return {"accuracy": round(accuracy, 3), "m_accuracy": round(accuracy * 0.97, 3)}
    if model == "sparse4d":
        return _sparse4d_scores(values["val_mAP"])
    return {"PRQ": values["PRQ"], "RSQ": values["RSQ"], "RRQ": values["RRQ"]}


def precision_gap(data_type: str, engine_digest: str) -> float:
    """How much accuracy an engine of `data_type` loses against PyTorch: the precision's typical gap times a
    factor in [0.8, 1.2) fixed by the engine file, so one engine always scores the same."""
    unit = int(hashlib.sha256(engine_digest.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return PRECISION_GAP.get(data_type.lower(), PRECISION_GAP["fp32"]) * (0.8 + 0.4 * unit)


def trt_score(pytorch: float, gap: float, drift: bool) -> float:
    score = max(pytorch - gap, 0.0)
    return score * DRIFT_FACTOR if drift else score


def rtdetr_results_json(values: dict[str, float], gap: float, drift: bool) -> dict[str, float]:
    """TAO Deploy RT-DETR evaluate's results.json: COCO's twelve metrics as floats."""
    ap = trt_score(values["val_mAP"], gap, drift)
    ap50 = trt_score(values["val_mAP50"], gap, drift)
    derived = {"AP": ap, "AP50": ap50, "AP75": ap * 1.08, "APs": ap * 0.55, "APm": ap * 1.02, "APl": ap * 1.21,
               "ARmax1": ap * 0.9, "ARmax10": ap * 1.3, "ARmax100": ap * 1.38, "ARs": ap * 0.8, "ARm": ap * 1.4,
               "ARl": ap * 1.55}
    return {name: round(min(derived[name], 0.999), 7) for name in _COCO_NAMES}  # float32 precision


def centerpose_report_csv(values: dict[str, float], gap: float, drift: bool) -> str:
    """TAO Deploy CenterPose evaluate's report.csv, with 3D IoU AP at IoU 0.5 where TAO reads it."""
    iou = trt_score(values["val_3DIoU"], gap, drift)
    mpe = _mpe(iou)
    thresholds = [i / 20 for i in range(21)]  # np.linspace(0, 1, 21) as TAO's evaluator
    # AP falls with the IoU threshold; index 10 (IoU 0.5) is the KPI.
    aps = [min(iou * (1.6 - 1.2 * t), 0.999) for t in thresholds]
    aps[10] = iou
    table: list[list[Any]] = [
        ["Mean Error Scale:", round(0.05 + 0.2 * (1 - iou), 6)], ["Mean Error 2D:", mpe],
        ["Mean 3D IoU:", round(iou * 0.93, 6)], ["Mean Azimuth Error:", round(4 + 10 * (1 - iou), 6)],
        ["Mean Polar Error:", round(3 + 8 * (1 - iou), 6)], [],
        ["IoU Thresholds:", *(f"{t:.4f}" for t in thresholds)],
        ["AP @3D IoU:", *(f"{a:.4f}" for a in aps)], [],
    ]
    out = io.StringIO()
    csv.writer(out).writerows(table)
    return out.getvalue()
