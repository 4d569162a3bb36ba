"""A family of learning-curve shapes the AutoML defaults were not tuned on, after published training curves.

Each function is `fn(params, epochs, seed) -> metric`: `params` are a trial's spec values as dotted keys
(the model's defaults overlaid with the trial's), `epochs` the epochs done (1-based), `seed` varies the
noise and moves the optima a little (up to ±0.3 decades), so five seeds are five similar, not identical,
problems. Every curve carries noise of 1 % per epoch (2 % for `noisy`) and 0.5 % per run. The shapes:

- `slow_starter` (RT-DETR keys): DETR-style detectors warm up slowly — DETR needs 500 epochs (Carion et al.
  2020, arXiv:2005.12872), Deformable DETR's convergence curves (Zhu et al. 2021, arXiv:2010.04159, fig. 1)
  and DN-DETR (Li et al. 2022, arXiv:2203.01305: 43.4 AP after 12 epochs, 48.6 after 50) show a long
  sigmoid start; validation on EMA weights lags by about 1/(1 − decay) steps. Here the lower learning
  rates that finish best start late, and higher ones lead for the first third of training.
- `plateau` (RT-DETR keys): step learning-rate schedules plateau, then jump when the rate is divided (ResNet
  on ImageNet, He et al. 2016, arXiv:1512.03385, fig. 1 and 4: error drops at epochs 30 and 60). The drop
  comes at `lr_step_size` iterations; a later drop (after more high-rate training) ends higher, so the best
  trials sit on their plateau at the early rungs while early-dropping ones lead.
- `edge_optimum` (CenterPose keys): fine-tuning a pretrained network whose best rate sits at (or below) the
  low end of the searched range; lower rates also learn more slowly.
- `ridge` (RT-DETR keys): with an L2 penalty inside Adam the good region is a narrow diagonal band in
  (learning rate, weight decay) (Loshchilov & Hutter 2019, arXiv:1711.05101, fig. 2); here 0.15 decades
  across, a few decades along.
- `two_optima` (ActionRecognition keys): two basins trading learning-rate noise for dropout (a higher rate
  regularises, Smith & Le 2018, arXiv:1710.06451): a broad one at a low rate with high dropout, a narrow,
  slightly better one at a high rate with little dropout.
- `noisy` (Sparse4D keys): the Sparse4D surface with 2 % noise per epoch — validation on a small set moves
  that much from epoch to epoch (seed-to-seed spread: Picard 2021, arXiv:2109.08203).
- `minimise` (CenterPose keys): a validation loss to minimise whose curves cross: higher rates descend
  faster for the first third of training and end higher (the shape of `train_loss` in the model notes).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from taoflow.emulator.surfaces.tao import _unit_noise
from taoflow.emulator.surfaces.tao import kpis as tao_kpis

EPOCH_NOISE = 0.01
RUN_NOISE = 0.005


# ------------------------------------------------------------------------------------------------ helpers

def _num(params: Mapping[str, Any], key: str, default: float) -> float:
    try:
        value = float(params.get(key, default))
    except (TypeError, ValueError):
        return default
    return value if math.isfinite(value) else default


def _lg(x: float) -> float:
    return math.log10(max(x, 1e-12))


def _bump(x: float, centre: float, below: float, above: float | None = None) -> float:
    """1 at `centre`, Gaussian fall-off with the width of the side `x` is on."""
    width = below if x < centre or above is None else above
    return math.exp(-0.5 * ((x - centre) / width) ** 2)


def _cost(x: float, centre: float, width: float, importance: float, above: float | None = None) -> float:
    """A factor in [1 - importance, 1]: how much being away from `centre` costs."""
    return 1.0 - importance * (1.0 - _bump(x, centre, width, above))


def _shift(name: str, seed: int, decades: float = 0.3) -> float:
    """A seed's move of an optimum (a reproducible draw in ±`decades`)."""
    return max(-1.0, min(1.0, _unit_noise("shift", name, seed) / 2.0)) * decades


def _noisy(value: float, name: str, params: Mapping[str, Any], epochs: int, seed: int,
           per_epoch: float = EPOCH_NOISE) -> float:
    run = tuple(sorted((k, str(v)) for k, v in params.items()))
    factor = 1.0 + RUN_NOISE * _unit_noise("run", name, seed, run) + per_epoch * _unit_noise(
        "epoch", name, seed, int(epochs), run)
    return value * factor


def _sigmoid_progress(epochs: float, delay: float, width: float) -> float:
    """0 at epoch 0, 1/2 at `delay`, → 1: a slow start."""
    start = 1.0 / (1.0 + math.exp(delay / width))
    now = 1.0 / (1.0 + math.exp(-(epochs - delay) / width))
    return max(0.0, (now - start) / (1.0 - start))


def _rtdetr_rest(params: Mapping[str, Any]) -> float:
    """The RT-DETR keys no shape is about: each can trim a little (a 14-key space stays 14 keys)."""
    return (_cost(_num(params, "model.dec_layers", 6), 6, 3, 0.15)
            * _cost(_lg(_num(params, "dataset.batch_size", 4)), _lg(8), 0.5, 0.1)
            * _cost(_lg(_num(params, "model.num_queries", 300)), _lg(300), 0.5, 0.08)
            * _cost(_num(params, "model.enc_layers", 1), 1, 3, 0.05)
            * _cost(_num(params, "train.optim.momentum", 0.9), 0.9, 0.3, 0.05)
            * _cost(_num(params, "dataset.augmentation.distortion_prob", 0.8), 0.5, 0.4, 0.05)
            * _cost(_num(params, "dataset.augmentation.iou_crop_prob", 0.8), 0.6, 0.4, 0.05))


# ------------------------------------------------------------------------------------------------ shapes

def slow_starter(params: Mapping[str, Any], epochs: int, seed: int) -> float:
    lr = _num(params, "train.optim.lr", 1e-4)
    lr_opt = 10 ** (_lg(1.5e-4) + _shift("slow_starter", seed))
    quality = (_cost(_lg(lr), _lg(lr_opt), 0.5, 0.9, above=0.8)
               * _cost(_lg(_num(params, "train.optim.lr_backbone", 1e-5)), _lg(lr / 10), 0.6, 0.4)
               * _cost(_lg(_num(params, "train.optim.weight_decay", 1e-4)), _lg(1e-4), 1.0, 0.2)
               * _rtdetr_rest(params))
    decay = min(max(_num(params, "train.ema.decay", 0.999), 0.0), 0.99999)
    lag = (1.0 / (1.0 - decay)) / 250.0  # EMA window in epochs (250 iterations per epoch)
    quality *= _cost(_lg(1.0 - decay), _lg(5e-4), 0.7, 0.1)
    delay = min(max(2.0 + 8.0 * (lr_opt / max(lr, 1e-9)) ** 0.5, 1.0), 40.0)
    progress = _sigmoid_progress(max(epochs - min(lag, 10.0), 0.0), delay, 0.35 * delay + 0.5)
    floor, peak = 0.01, 0.53
    return _noisy(floor + (peak - floor) * quality * progress, "slow_starter", params, epochs, seed)


def plateau(params: Mapping[str, Any], epochs: int, seed: int) -> float:
    lr = _num(params, "train.optim.lr", 1e-4)
    lr_opt = 10 ** (_lg(1e-4) + _shift("plateau", seed))
    quality = (_cost(_lg(lr), _lg(lr_opt), 0.6, 0.85)
               * _cost(_lg(_num(params, "train.optim.weight_decay", 1e-4)), _lg(1e-4), 1.0, 0.2)
               * _rtdetr_rest(params))
    drop = _num(params, "train.optim.lr_step_size", 1000) / 150.0  # the epoch of the step (150 it/epoch)
    gamma = _num(params, "train.optim.lr_decay", 0.1)
    floor, peak = 0.01, 0.52
    high = peak * quality
    value = floor + (0.75 * high - floor) * (1.0 - math.exp(-epochs / 2.0))  # the plateau at the high rate
    if epochs > drop:
        gain = 0.25 * high * _bump(_lg(max(gamma, 1e-6)), -1.0, 0.7) * (1.0 - math.exp(-drop / 5.0))
        value += gain * (1.0 - math.exp(-(epochs - drop) / 1.5))
    return _noisy(value, "plateau", params, epochs, seed)


def edge_optimum(params: Mapping[str, Any], epochs: int, seed: int) -> float:
    lr = _num(params, "train.optim.lr", 6e-5)
    lr_opt = 10 ** (_lg(6e-7) + 0.1 + _shift("edge_optimum", seed))  # at, or just past, the range's low end
    quality = (_cost(_lg(lr), _lg(lr_opt), 0.5, 0.95, above=1.0)
               * _cost(_lg(max(_num(params, "train.optim.lr_decay", 0.1), 1e-4)), _lg(0.3), 0.5, 0.3))
    tau = 3.0 * (1e-4 / max(lr, 1e-9)) ** 0.12
    floor, peak = 0.05, 0.64
    value = floor + (peak - floor) * quality * (1.0 - math.exp(-epochs / tau))
    return _noisy(value, "edge_optimum", params, epochs, seed)


def ridge(params: Mapping[str, Any], epochs: int, seed: int) -> float:
    lr = _num(params, "train.optim.lr", 1e-4)
    wd = _num(params, "train.optim.weight_decay", 1e-4)
    across = _lg(lr) + _lg(wd) - (-8.0 + _shift("ridge-across", seed))
    along = _lg(lr) - _lg(wd) - (1.0 + _shift("ridge-along", seed, 0.5))
    quality = _cost(across, 0.0, 0.15, 0.97) * _cost(along, 0.0, 1.2, 0.6) * _rtdetr_rest(params)
    tau = 4.0 / min(max(lr / 1e-4, 0.05), 2.0) ** 0.3
    floor, peak = 0.01, 0.5
    value = floor + (peak - floor) * quality * (1.0 - math.exp(-epochs / tau))
    return _noisy(value, "ridge", params, epochs, seed)


def two_optima(params: Mapping[str, Any], epochs: int, seed: int) -> float:
    x = _lg(_num(params, "train.optim.lr", 5e-4))
    dropout = _num(params, "model.dropout_ratio", 0.5)
    broad = 0.96 * _bump(x, _lg(3e-4) + _shift("two_optima-a", seed), 0.5) * _bump(dropout, 0.6, 0.25)
    narrow = _bump(x, _lg(6e-3) + _shift("two_optima-b", seed), 0.2) * _bump(dropout, 0.1, 0.08)
    quality = 0.15 + 0.85 * max(broad, narrow)
    tau = 3.0 / min(max(10**x / 1e-3, 0.05), 2.0) ** 0.3
    floor, peak = 0.2, 0.9
    value = floor + (peak - floor) * quality * (1.0 - math.exp(-epochs / tau))
    return _noisy(value, "two_optima", params, epochs, seed)


def noisy(params: Mapping[str, Any], epochs: int, seed: int) -> float:
    keys = ("train.optim.lr", "train.optim.weight_decay", "train.optim.momentum", "dataset.batch_size")
    base = tao_kpis("sparse4d", {k: params[k] for k in keys if k in params}, epochs - 1, 0, seed)["val_mAP"]
    return _noisy(base, "noisy", params, epochs, seed, per_epoch=0.02)


def minimise(params: Mapping[str, Any], epochs: int, seed: int) -> float:
    lr = _num(params, "train.optim.lr", 6e-5)
    lr_opt = 10 ** (_lg(1.5e-4) + _shift("minimise", seed))
    quality = (_cost(_lg(lr), _lg(lr_opt), 0.8, 0.95, above=0.5)
               * _cost(_lg(max(_num(params, "train.optim.lr_decay", 0.1), 1e-4)), _lg(0.3), 0.6, 0.3))
    final = 0.8 + 1.6 * (1.0 - quality)
    tau = 5.0 / min(max(lr / lr_opt, 0.05), 4.0) ** 0.6  # higher rates descend faster
    value = final + (4.0 - final) * math.exp(-epochs / tau)
    return _noisy(value, "minimise", params, epochs, seed)


FAMILY = {
    # name: (model whose search space is searched, metric, direction, fn)
    "slow_starter": ("rtdetr", "val_mAP", "maximize", slow_starter),
    "plateau": ("rtdetr", "val_mAP", "maximize", plateau),
    "edge_optimum": ("centerpose", "val_3DIoU", "maximize", edge_optimum),
    "ridge": ("rtdetr", "val_mAP", "maximize", ridge),
    "two_optima": ("action_recognition", "val_acc", "maximize", two_optima),
    "noisy": ("sparse4d", "val_mAP", "maximize", noisy),
    "minimise": ("centerpose", "val_loss", "minimize", minimise),
}
