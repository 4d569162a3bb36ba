"""Sparse4D rules (see taoflow/rules/__init__.py)."""

from __future__ import annotations

from collections.abc import Iterator

from taoflow.rules.core import RuleContext, is_unset, rule
from taoflow.validate import MISSING_VALUE, Problem

SPARSE4D_ANCHOR = "model.head.instance_bank.anchor"


@rule("sparse4d", actions=["train", "evaluate", "inference", "export", "quantize"])
def sparse4d_anchor(ctx: RuleContext) -> Iterator[Problem]:
    value = ctx.get(SPARSE4D_ANCHOR)
    if value == MISSING_VALUE and not ctx.complete:
        return  # a placeholder the pipeline fills
    if not is_unset(value) or not ctx.needs_inputs(SPARSE4D_ANCHOR):
        return
    yield Problem(
        SPARSE4D_ANCHOR, value,
        f"required for {ctx.action}: the anchor_init.npy written by dataset_convert of the train dataset",
    )
