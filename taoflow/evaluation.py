"""KPIs that TAO writes to files instead of status.json: TAO Deploy's evaluate.

- RT-DETR (and the other COCO detectors) write `results.json` in `trt_evaluate/`: `{"AP": …, "AP50": …, …}`
  with COCO's twelve names (NVIDIA/tao_deploy nvidia_tao_deploy/cv/rtdetr/scripts/evaluate.py:133-140,
  nvidia_tao_deploy/metrics/coco_metric.py:274-275).
- CenterPose writes `report.csv` (nvidia_tao_deploy/cv/centerpose/centerpose_evaluator.py:701-779); its KPIs
  are what `get_accuracy` returns (:781-783): 3D IoU = the "AP @3D IoU:" row at threshold index 10 (IoU 0.5),
  2D MPE = the "Mean Error 2D:" row. They are read here under TAO's status names `3DIoU` and `2DMPE`.
- `evaluation_results.json` with a `metrics` dict: what taoflow's emulator wrote before it wrote TAO's files.
"""

from __future__ import annotations

import csv
import io
import json

from taoflow.kpis import kpi_numbers, kpi_value

EVALUATION_FILES = ("results.json", "report.csv", "evaluation_results.json")
_CENTERPOSE_IOU_INDEX = 10  # np.linspace(0, 1, 21)[10] == 0.5


def evaluation_kpis(name: str, text: str) -> dict[str, float]:
    """The numeric KPIs of one evaluation file (by its base name); {} when it holds none."""
    if name == "report.csv":
        return _centerpose_report(text)
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    if name == "evaluation_results.json":
        return kpi_numbers(data.get("metrics"))
    return kpi_numbers(data)


def _centerpose_report(text: str) -> dict[str, float]:
    rows = {row[0].strip(): row[1:] for row in csv.reader(io.StringIO(text)) if row}
    out: dict[str, float] = {}
    iou = rows.get("AP @3D IoU:") or []
    if len(iou) > _CENTERPOSE_IOU_INDEX and (value := kpi_value(iou[_CENTERPOSE_IOU_INDEX])) is not None:
        out["3DIoU"] = value
    mpe = rows.get("Mean Error 2D:") or []
    if mpe and (value := kpi_value(mpe[0])) is not None:
        out["2DMPE"] = value
    return out
