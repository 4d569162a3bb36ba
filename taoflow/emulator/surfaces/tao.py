"""Deterministic KPI response surfaces: what an emulated TAO training run reports at each epoch.

The emulator has no GPU, yet AutoML needs something real to optimise, so each model gets a smooth,
plausible function of its AutoML parameters (dotted spec keys, TAO Core 7.3.0 defaults when absent):

- final quality peaks at plausible values that are *not* TAO's defaults (so tuning pays), falls off on a
  log scale for learning rates and weight decay (asymmetrically: too high a rate hurts more than too low),
  has interactions (RT-DETR's best `lr` grows with `dataset.batch_size`, its best `lr_backbone` tracks
  `lr`), and collapses when a learning rate is far too high (divergence);
- the learning curve rises (losses fall) with the epoch and saturates; higher learning rates learn faster
  early but may end lower, so early epochs rank trials imperfectly, as in real multi-fidelity tuning;
- small noise seeded by (seed, epoch, params), so every value is reproducible and a resumed run draws the
  same curve as an uninterrupted one.

The curve depends on the epoch, not on `num_epochs`: a trial stopped at a rung reports what a longer run
reports at that epoch, the assumption ASHA/Hyperband make. Pure math, microseconds per call, no I/O.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Term:
    """One parameter's effect: squared distance from the optimum in its scale, divided by a width.

    scale: "log" (log10 of the value), "linear", "one_minus_log" (log10 of 1 - x, for EMA decays near 1).
    `below`/`above` are the widths on either side of the optimum (asymmetric fall-off). `importance` is the
    share of quality the parameter can cost at worst: the learning rate can ruin a run, an augmentation
    probability only trims it, so random configurations are mediocre rather than uniformly hopeless.
    """

    key: str
    default: float
    optimum: float
    scale: str
    below: float
    above: float
    importance: float = 0.3


@dataclass(frozen=True)
class Surface:
    terms: tuple[Term, ...]
    peak: float  # best reachable value of the main "higher is better" quality in [0, 1]
    floor: float  # value at quality 0 (a model that learned little)
    loss_min: float  # train_loss asymptote at the optimum
    loss_max: float  # train_loss at quality 0 / epoch 0
    tau: float  # epochs to reach 63% of the final value at the optimal learning rate
    lr_key: str = "train.optim.lr"


def _rate(key: str, default: float, optimum: float, below: float = 1.0, above: float = 0.6,
          importance: float = 0.97) -> Term:
    return Term(key, default, optimum, "log", below, above, importance)


_SURFACES: dict[str, Surface] = {
    "rtdetr": Surface(
        terms=(
            _rate("train.optim.lr", 1e-4, 2.5e-4),
            _rate("train.optim.lr_backbone", 1e-5, 2.5e-5, 0.9, 0.6, importance=0.6),
            _rate("train.optim.weight_decay", 1e-4, 3e-4, 1.5, 1.0, importance=0.3),
            Term("train.optim.momentum", 0.9, 0.9, "linear", 0.6, 0.2, 0.1),
            Term("train.optim.lr_decay", 0.1, 0.2, "log", 1.0, 0.8, 0.2),
            Term("train.optim.lr_step_size", 1000, 3000, "log", 1.0, 1.0, 0.25),
            Term("train.ema.decay", 0.999, 0.9995, "one_minus_log", 1.0, 1.0, 0.2),
            Term("dataset.batch_size", 4, 16, "log", 0.6, 0.6, 0.25),
            Term("dataset.augmentation.distortion_prob", 0.8, 0.5, "linear", 0.4, 0.4, 0.12),
            Term("dataset.augmentation.iou_crop_prob", 0.8, 0.6, "linear", 0.4, 0.4, 0.12),
            Term("model.dec_layers", 6, 6, "linear", 2.5, 4.0, 0.3),
            Term("model.enc_layers", 1, 1, "linear", 2.0, 3.0, 0.12),
            Term("model.num_queries", 300, 300, "log", 0.5, 0.6, 0.15),
            Term("model.num_select", 300, 200, "log", 0.4, 0.5, 0.15),
            Term("train.optim.warmup_steps", 0, 0, "linear", 1e4, 3000, 0.1),
        ),
        peak=0.52, floor=0.02, loss_min=5.2, loss_max=30.0, tau=4.0,
    ),
    "centerpose": Surface(
        terms=(
            _rate("train.optim.lr", 6e-5, 1.5e-4),
            Term("train.optim.lr_decay", 0.1, 0.3, "log", 0.7, 0.5, 0.35),
            Term("dataset.batch_size", 4, 8, "log", 1.0, 0.8),
        ),
        peak=0.64, floor=0.05, loss_min=1.1, loss_max=9.0, tau=5.0,
    ),
    "action_recognition": Surface(
        terms=(
            _rate("train.optim.lr", 5e-4, 1.2e-3),
            Term("model.dropout_ratio", 0.5, 0.3, "linear", 0.3, 0.25, 0.45),
            _rate("train.optim.weight_decay", 5e-4, 2e-4, 1.5, 1.0, importance=0.3),
            Term("train.optim.momentum", 0.9, 0.9, "linear", 0.4, 0.1),
            Term("train.optim.lr_decay", 0.1, 0.1, "log", 1.2, 1.0),
            Term("dataset.batch_size", 2, 4, "log", 1.2, 1.0),
        ),
        peak=0.89, floor=0.2, loss_min=0.05, loss_max=2.3, tau=3.0,
    ),
    "sparse4d": Surface(
        terms=(
            _rate("train.optim.lr", 5e-5, 1.2e-4),
            _rate("train.optim.weight_decay", 1e-3, 1e-3, 1.5, 1.0, importance=0.3),
            Term("train.optim.momentum", 0.9, 0.9, "linear", 0.4, 0.1),
            Term("dataset.batch_size", 2, 2, "log", 1.2, 1.0),
        ),
        peak=0.46, floor=0.01, loss_min=8.0, loss_max=60.0, tau=6.0,
    ),
    "nvpanoptix3d": Surface(
        terms=(
            _rate("train.optim.lr", 2e-4, 4.5e-4),
            _rate("train.optim.weight_decay", 5e-2, 3e-2, 1.5, 1.0, importance=0.3),
            Term("train.optim.backbone_multiplier", 0.1, 0.1, "log", 1.0, 0.8),
            Term("train.optim.momentum", 0.9, 0.9, "linear", 0.4, 0.1),
        ),
        peak=0.55, floor=0.02, loss_min=3.0, loss_max=40.0, tau=5.0,
    ),
}

# Relative noise: one persistent offset per (seed, params) run and one per epoch (fraction of the value).
_RUN_NOISE = 0.0015
_EPOCH_NOISE = 0.001


def models() -> list[str]:
    return sorted(_SURFACES)


def metric_names(model: str) -> tuple[str, ...]:
    """The TAO metric names `kpis` reports for a model."""
    _surface(model)
    return {
        "rtdetr": ("val_mAP", "val_mAP50", "train_loss"),
        "centerpose": ("val_3DIoU", "train_loss"),
        "action_recognition": ("val_acc", "val_loss", "train_loss"),
        "sparse4d": ("val_mAP", "train_loss"),
        "nvpanoptix3d": ("train_loss", "PRQ", "RSQ", "RRQ"),
    }[model]


def _surface(model: str) -> Surface:
    try:
        return _SURFACES[model]
    except KeyError:
        raise ValueError(f"no response surface for model {model!r}; known: {', '.join(models())}") from None


def _number(value: Any, default: float) -> float:
    if isinstance(value, bool):
        return float(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return default
    return number if math.isfinite(number) else default


def _transform(scale: str, x: float) -> float:
    if scale == "log":
        return math.log10(max(x, 1e-6))  # 0 (e.g. no weight decay) counts as a tiny positive value
    if scale == "one_minus_log":
        return math.log10(max(1.0 - x, 1e-9))
    return x


def _optimum(model: str, term: Term, values: Mapping[str, float]) -> float:
    """The optimum of one term, given the other parameters (RT-DETR interactions)."""
    if model == "rtdetr":
        bs = max(values.get("dataset.batch_size", 4.0), 1.0)
        lr_opt = 2.5e-4 * math.sqrt(bs / 16.0)
        if term.key == "train.optim.lr":
            return lr_opt
        if term.key == "train.optim.lr_backbone":
            return 0.1 * min(max(values.get("train.optim.lr", lr_opt), 1e-7), 1e-2)
        if term.key == "model.num_select":
            return min(200.0, values.get("model.num_queries", 300.0))
    return term.optimum


def _quality(model: str, surface: Surface, values: Mapping[str, float]) -> tuple[float, float]:
    """(quality in [0, 1], lr ratio to its optimum) of a parameter setting."""
    quality = 1.0
    lr_ratio = 1.0
    for term in surface.terms:
        x = values[term.key]
        opt = _optimum(model, term, values)
        delta = _transform(term.scale, x) - _transform(term.scale, opt)
        if term.scale == "one_minus_log":
            delta = -delta  # larger decay -> smaller (1 - x)
        width = term.above if delta > 0 else term.below
        quality *= 1.0 - term.importance * (1.0 - math.exp(-0.5 * (delta / width) ** 2))
        if term.key == surface.lr_key:
            lr_ratio = max(x, 1e-12) / opt
    if lr_ratio > 20.0:  # diverged: a rate this high blows the loss up
        quality *= math.exp(-(math.log10(lr_ratio / 20.0) * 4.0))
    return quality, lr_ratio


def _unit_noise(*parts: Any) -> float:
    """A reproducible standard-normal draw from a hash of its inputs (Box-Muller over two hash words)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=16).digest()
    a, b = struct.unpack("<QQ", digest)
    u1 = (a + 1) / (2**64 + 1)
    u2 = b / 2**64
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def kpis(model: str, params: Mapping[str, Any], epoch: int, num_epochs: int, seed: int) -> dict[str, float]:
    """The KPIs (TAO metric names) a `model` run with `params` reports at 0-based `epoch`.

    `params` maps dotted spec keys to values; absent keys take TAO's defaults, unknown keys only change
    the noise. `num_epochs` is accepted for the emulator's contract; the curve depends on the epoch only.
    """
    del num_epochs  # see module docstring: rung results must not depend on the planned length
    surface = _surface(model)
    values = {t.key: _number(params.get(t.key, t.default), t.default) for t in surface.terms}
    quality, lr_ratio = _quality(model, surface, values)

    relevant = tuple(sorted((k, str(v)) for k, v in params.items()))
    run_noise = _RUN_NOISE * _unit_noise("run", model, seed, relevant)
    epoch_noise = _EPOCH_NOISE * _unit_noise("epoch", model, seed, int(epoch), relevant)
    noise = 1.0 + run_noise + epoch_noise

    # Faster early learning with a higher rate (bounded), slower with a low one.
    tau = surface.tau / min(max(lr_ratio, 0.05), 2.0) ** 0.3
    progress = 1.0 - math.exp(-(max(int(epoch), 0) + 1) / tau)
    final = surface.floor + (surface.peak - surface.floor) * quality
    score = (surface.floor + (final - surface.floor) * progress) * noise  # "higher is better" in [0, 1)
    loss_final = surface.loss_min * (1.0 + 1.5 * (1.0 - quality))
    train_loss = (loss_final + (surface.loss_max - loss_final) * (1.0 - progress) ** 1.3) * (2.0 - noise)

    if model == "rtdetr":
        return {"val_mAP": score, "val_mAP50": min(score * 1.42, 0.99), "train_loss": train_loss}
    if model == "centerpose":
        return {"val_3DIoU": score, "train_loss": train_loss}
    if model == "action_recognition":
        val_loss = 0.3 + 2.0 * (1.0 - score / surface.peak) ** 1.5
        return {"val_acc": score, "val_loss": val_loss * (2.0 - noise), "train_loss": train_loss}
    if model == "sparse4d":
        return {"val_mAP": score, "train_loss": train_loss}
    # nvpanoptix3d: PRQ = RSQ * RRQ-ish; train_loss is its AutoML metric.
    rsq = min(0.35 + 0.8 * score, 0.99)
    rrq = min(score / rsq, 0.99)
    return {"train_loss": train_loss, "PRQ": score, "RSQ": rsq, "RRQ": rrq}


def defaults(model: str) -> dict[str, float]:
    """The TAO Core defaults the surface assumes for absent parameters (tests compare them to schemas)."""
    return {t.key: t.default for t in _surface(model).terms}
