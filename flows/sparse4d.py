"""Sparse4D pipeline flow (multi-camera 3D detection and tracking on AICity data)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from flows.parameters import PipelineParameters
from flows.pipeline import pipeline_flow


class Sparse4DParameters(PipelineParameters):
    aicity_split: dict[str, str] = Field(
        default_factory=lambda: {"train": "train", "eval": "val", "inference": "test"},
        description="AICity split that dataset_convert reads for each dataset role.",
    )
    sequences_split_num: int | None = Field(None, ge=1, description="dataset.sequences.split_num.")

    def model_overrides(self) -> dict[str, Any]:
        return {"dataset.sequences.split_num": self.sequences_split_num}

    def to_request(self, model: str):
        request = super().to_request(model)
        for role, split in self.aicity_split.items():
            request.overrides.setdefault(f"dataset_convert[{role}]", {})["aicity.split"] = split
        return request


sparse4d_pipeline = pipeline_flow("sparse4d", Sparse4DParameters)
