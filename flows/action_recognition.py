"""ActionRecognition pipeline flow (video clips)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from flows.parameters import PipelineParameters
from flows.pipeline import pipeline_flow


class ActionRecognitionParameters(PipelineParameters):
    label_map: dict[str, int] | None = Field(
        None, description="dataset.label_map: class name → index, e.g. {'catch': 0, 'smile': 1}."
    )
    model_type: Literal["rgb", "of", "joint"] | None = Field(None, description="model.model_type.")

    def model_overrides(self) -> dict[str, Any]:
        return {"dataset.label_map": self.label_map, "model.model_type": self.model_type}


action_recognition_pipeline = pipeline_flow("action_recognition", ActionRecognitionParameters)
