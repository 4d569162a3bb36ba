"""NVPanoptix3D rules (see taoflow/rules/__init__.py)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from taoflow.rules.core import RuleContext, read_json, rule
from taoflow.validate import WARNING, Problem


# NVPanoptix3D's trainer: nvidia-tao-pytorch 7.3.0 (PyPI), nvidia_tao_pytorch/cv/nvpanoptix3d/scripts/train.py:38-51.
@rule("nvpanoptix3d", actions=["train"])
def nvpanoptix3d_precision(ctx: RuleContext) -> Iterator[Problem]:
    value = ctx.get("train.precision", "fp32")
    if not isinstance(value, str) or value.lower() != "fp32":
        yield Problem(
            "train.precision", value,
            "must be fp32: the training entrypoint raises 'ValueError: Only fp32 precision is supported' "
            "(the schema's fp16 is not usable)",
        )


@rule("nvpanoptix3d", actions=["train"])
def nvpanoptix3d_strategy(ctx: RuleContext) -> Iterator[Problem]:
    value = ctx.get("train.distributed_strategy", "ddp")
    if isinstance(value, str) and value.lower() != "ddp":
        yield Problem(
            "train.distributed_strategy", value,
            "is ignored: the NVPanoptix3D trainer only sets up ddp and runs anything else with Lightning's "
            "default strategy", WARNING,
        )


@rule("nvpanoptix3d", actions=["train", "evaluate", "inference"])
def nvpanoptix3d_downsample(ctx: RuleContext) -> Iterator[Problem]:
    name = ctx.get("dataset.name", "front3d")
    factor = ctx.get("dataset.downsample_factor", 1)
    expected = 2 if name == "matterport" else 1
    if isinstance(factor, int) and factor != expected:
        yield Problem(
            "dataset.downsample_factor", factor,
            f"must be {expected} for dataset.name {name!r} (2 for matterport, 1 for front3d and synthetic data)",
        )
    iso = ctx.get("dataset.iso_value", 1.0)
    if isinstance(iso, (int, float)) and not isinstance(iso, bool) and float(iso) != float(expected):
        # TAO Core derives both from the dataset format: matterport → 2 / 2.0, everything else → 1 / 1.0.
        yield Problem(
            "dataset.iso_value", iso,
            f"must be {float(expected)} for dataset.name {name!r} (TAO Core: 2.0 for matterport, 1.0 otherwise)",
        )


@rule("nvpanoptix3d", actions=["train", "evaluate", "inference"])
def nvpanoptix3d_contiguous_id(ctx: RuleContext) -> Iterator[Problem]:
    if ctx.get("dataset.contiguous_id", False) is True:
        return
    data = read_json(ctx.get("dataset.label_map", None), ctx)
    entries = data if isinstance(data, list) else data.get("categories") if isinstance(data, Mapping) else None
    if isinstance(entries, list) and any(isinstance(e, Mapping) and "trainId" in e for e in entries):
        yield Problem(
            "dataset.contiguous_id", ctx.get("dataset.contiguous_id", False),
            f"must be true: the label map {ctx.get('dataset.label_map')} carries trainId values "
            "(false synthesises placeholder categories without trainId and fails building the metadata)",
        )
