"""Every response surface in the plug-in form of benchmarks/automl.py (`--surfaces-from FILE.py` reads a
file like this one): `SURFACES = {name: (model, metric, direction, fn)}`, `fn(params, epochs, seed)` the
metric after `epochs` epochs (1-based) of a trial whose spec values are `params` (dotted keys, the model's
defaults overlaid with the trial's values). `model` names the search space (the model's AutoML defaults).

The five model surfaces are what the emulator's train action reports (the same function, the same
hyperparameters taken from the spec); the family is taoflow.emulator.surfaces.curves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from taoflow.emulator.surfaces.curves import FAMILY
from taoflow.emulator.surfaces.tao import kpis

MODEL_METRICS = {  # the skills' AutoML metric and direction (skills/<model>/skill.yaml)
    "rtdetr": ("val_mAP", "maximize"),
    "centerpose": ("val_3DIoU", "maximize"),
    "action_recognition": ("val_loss", "minimize"),
    "sparse4d": ("val_mAP", "maximize"),
    "nvpanoptix3d": ("train_loss", "minimize"),
}


def model_surface(model: str, metric: str) -> Callable[[Mapping[str, Any], int, int], float]:
    """The emulator's surface for `model` as a plug-in function."""

    def fn(params: Mapping[str, Any], epochs: int, seed: int) -> float:
        from taoflow.dotted import expand
        from taoflow.emulator.train import hyperparameters

        return kpis(model, hyperparameters(expand(dict(params))), epochs - 1, 0, seed)[metric]

    return fn


SURFACES: dict[str, tuple[str, str, str, Callable[[Mapping[str, Any], int, int], float]]] = {
    **{model: (model, metric, direction, model_surface(model, metric))
       for model, (metric, direction) in MODEL_METRICS.items()},
    **FAMILY,
}
