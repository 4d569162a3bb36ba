"""NVPanoptix3D pipeline flow (panoptic 3D reconstruction)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from flows.parameters import PipelineParameters
from flows.pipeline import pipeline_flow


class NVPanoptix3DParameters(PipelineParameters):
    dataset_name: Literal["front3d", "matterport", "synthetic_hospital", "synthetic_warehouse"] | None = Field(
        None, description="dataset.name (matterport implies downsample_factor 2)."
    )
    label_map: str | None = Field(
        None, description="dataset.label_map: colormap.json URI (default: the dataset's meta/colormap.json)."
    )

    def model_overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dataset.name": self.dataset_name, "dataset.label_map": self.label_map}
        if self.dataset_name:
            out["dataset.downsample_factor"] = 2 if self.dataset_name == "matterport" else 1
        return out


nvpanoptix3d_pipeline = pipeline_flow("nvpanoptix3d", NVPanoptix3DParameters)
