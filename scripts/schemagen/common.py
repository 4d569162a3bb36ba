"""Constants and the Step/Collected records shared by the schema generator's modules."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]  # scripts/schemagen/common.py → the repository
SKILLS_DIR = REPO / "skills"
MODELS = ("rtdetr", "centerpose", "action_recognition", "sparse4d", "nvpanoptix3d")
GENERATOR = "scripts/generate_schemas.py"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
MISSING = "???"
# Top-level keys a template never fills: handoffs set them, and encryption_key is a secret.
TEMPLATE_OMITTED = ("results_dir", "model_name", "encryption_key")
# Sections per TAO action, used only when a model has no skill.yaml yet.
FALLBACK_SECTIONS = {
    "train": ["model", "dataset", "train"],
    "distill": ["model", "dataset", "train", "distill"],
    "evaluate": ["model", "dataset", "evaluate"],
    "inference": ["model", "dataset", "inference"],
    "export": ["model", "dataset", "export"],
    "quantize": ["model", "dataset", "quantize"],
    "gen_trt_engine": ["dataset", "gen_trt_engine"],
}
NETWORK_CONFIGS = "microservices/handlers/network_configs"
ANNOTATION_KEYS = ("title", "description", "examples", "default")
MATH_COND = re.compile(r"^\s*(>=|<=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Step:
    """One action key of a skill: which TAO network/action it runs and which sections it reads."""

    name: str
    tao_action: str
    network: str
    sections: tuple[str, ...]
    # `template_defaults` of the skill (and of the action), dotted key → value: where NVIDIA's pretrained
    # models need other values than TAO Core's dataclass defaults.
    template_defaults: tuple[tuple[str, Any], ...] = ()


@dataclass
class Collected:
    """Dotted keys gathered while walking one ExperimentConfig."""

    missing: list[str] = field(default_factory=list)
    popular: set[str] = field(default_factory=set)
    required: set[str] = field(default_factory=set)
