"""KPI values and names as TAO writes them, read into numbers and matched across actions.

TAO writes some KPIs as strings (RT-DETR `"val_mAP": str(mAP)`, CenterPose `"val_3DIoU": str(iou)`), others
as floats, and names the same quantity differently per action and per image: `val_mAP50` while training,
`test_mAP50` in evaluate, `AP50` in TAO Deploy's `results.json`; Sparse4D logs `img_bbox_NuScenes/mAP` where
TAO Core names its monitoring metric `val_mAP`; Action Recognition's evaluate logs `accuracy`. Every reader
goes through `kpi_numbers` and `metric_in`, so a metric asked for by its TAO Core name is found in all of them.
Sources: docs/tao-contract.md ("KPI value types", "KPI names").
"""

from __future__ import annotations

import math
from typing import Any

# Prefixes that say where a value was measured, not what it is.
_PLACES = ("validation_", "val_", "test_", "eval_", "trt_")
# Same quantity, other words: COCO's AP is the mean over classes (mAP); AR's evaluate says `accuracy`.
_SYNONYMS = {"map": "ap", "accuracy": "acc"}


def kpi_value(value: Any) -> float | None:
    """A KPI as a float: numbers, and numeric strings as TAO writes them (`"0.4123"`); None for anything else
    (booleans, text, NaN and infinities)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def kpi_numbers(values: Any) -> dict[str, float]:
    """The numeric KPIs of a `kpi` / `graphical` dict (string numbers parsed, the rest dropped)."""
    out: dict[str, float] = {}
    if isinstance(values, dict):
        for key, value in values.items():
            number = kpi_value(value)
            if number is not None:
                out[str(key)] = number
    return out


def is_loss(name: str) -> bool:
    return "loss" in name.lower()


def canonical_metric(name: str) -> str:
    """`val_mAP50`, `test_mAP50`, `AP50` → `ap50`; `img_bbox_NuScenes/mAP` → `ap`; `val_3DIoU` → `3diou`."""
    base = name.rsplit("/", 1)[-1].lower()
    for prefix in _PLACES:
        if base.startswith(prefix):
            base = base[len(prefix):]
            break
    for word, same in _SYNONYMS.items():
        if base == word or (base.startswith(word) and base[len(word):].isdigit()):
            base = same + base[len(word):]
            break
    return base


def metric_in(kpis: dict[str, float], metric: str) -> float | None:
    """The value of `metric` among `kpis`: the exact key, else the key naming the same quantity
    (see `canonical_metric`). Ambiguous matches resolve to the first in sorted key order."""
    if metric in kpis:
        return kpis[metric]
    wanted = canonical_metric(metric)
    for key in sorted(kpis):
        if canonical_metric(key) == wanted:
            return kpis[key]
    return None
