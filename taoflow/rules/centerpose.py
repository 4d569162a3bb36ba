"""CenterPose rules (see taoflow/rules/__init__.py)."""

from __future__ import annotations

from collections.abc import Iterator

from taoflow.rules.core import RuleContext, rule
from taoflow.validate import Problem

CENTERPOSE_JOINTS = 8
CENTERPOSE_INTRINSICS = (
    "inference.focal_length_x",
    "inference.focal_length_y",
    "inference.principle_point_x",
    "inference.principle_point_y",
)


@rule("centerpose")
def centerpose_num_joints(ctx: RuleContext) -> Iterator[Problem]:
    value = ctx.get("dataset.num_joints", CENTERPOSE_JOINTS)
    if value != CENTERPOSE_JOINTS:
        yield Problem("dataset.num_joints", value, "must be 8: CenterPose regresses the 8 projected cuboid corners")


@rule("centerpose", actions=["inference"])
def centerpose_pnp_intrinsics(ctx: RuleContext) -> Iterator[Problem]:
    if ctx.get("inference.use_pnp", True) is not True:
        return
    if not ctx.needs_inputs("inference.focal_length_x"):
        return
    for key in CENTERPOSE_INTRINSICS:
        value = ctx.get(key, 0.0)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            yield Problem(
                key, value,
                "must be > 0 when inference.use_pnp is true: PnP needs the camera intrinsics focal_length_x/y "
                "and principle_point_x/y (or set inference.use_pnp: false)",
            )
