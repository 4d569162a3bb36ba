"""RT-DETR pipeline flow (2D detection on COCO annotations)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from flows.parameters import PipelineParameters
from flows.pipeline import pipeline_flow


class RTDETRParameters(PipelineParameters):
    num_classes: int | None = Field(
        None, ge=1, description="dataset.num_classes: max(category_id) + 1 (ids 1-4 → 5)."
    )
    eval_class_ids: list[int] | None = Field(
        None, description="dataset.eval_class_ids: the category ids to evaluate, e.g. [1, 2, 3, 4]."
    )

    def model_overrides(self) -> dict[str, Any]:
        return {"dataset.num_classes": self.num_classes, "dataset.eval_class_ids": self.eval_class_ids}


rtdetr_pipeline = pipeline_flow("rtdetr", RTDETRParameters)
