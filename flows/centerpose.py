"""CenterPose pipeline flow (6-DoF object pose)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from flows.parameters import PipelineParameters
from flows.pipeline import pipeline_flow


class CenterPoseParameters(PipelineParameters):
    category: str | None = Field(None, description="dataset.category, e.g. 'bike' or 'cereal_box'.")
    focal_length_x: float | None = Field(None, gt=0, description="Camera intrinsics for PnP inference.")
    focal_length_y: float | None = Field(None, gt=0)
    principle_point_x: float | None = Field(None, gt=0)
    principle_point_y: float | None = Field(None, gt=0)

    def model_overrides(self) -> dict[str, Any]:
        return {
            "dataset.category": self.category,
            "inference.focal_length_x": self.focal_length_x,
            "inference.focal_length_y": self.focal_length_y,
            "inference.principle_point_x": self.principle_point_x,
            "inference.principle_point_y": self.principle_point_y,
        }


centerpose_pipeline = pipeline_flow("centerpose", CenterPoseParameters)
