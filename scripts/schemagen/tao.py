"""TAO Core access (its ExperimentConfig dataclasses and schema converter) and the skills' steps."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import logging
from pathlib import Path
from typing import Any

import yaml

from schemagen.common import FALLBACK_SECTIONS, NETWORK_CONFIGS, SKILLS_DIR, Step

# ---------------------------------------------------------------------------------------------- TAO


def tao_version() -> str:
    return importlib.metadata.version("nvidia-tao-core")


def _tao_converter():
    # TAO's converter module configures root logging on import; keep our output quiet.
    logging.getLogger("nvidia_tao_core").setLevel(logging.WARNING)
    from nvidia_tao_core.api_utils import dataclass2json_converter

    return dataclass2json_converter


def experiment_config(network: str) -> type:
    return importlib.import_module(f"nvidia_tao_core.config.{network}.default_config").ExperimentConfig


def tao_schema(dataclass_obj: Any) -> dict:
    """TAO Core's own (non-standard) schema of a dataclass instance (a class is instantiated)."""
    conv = _tao_converter()
    if isinstance(dataclass_obj, type):
        dataclass_obj = dataclass_obj()
    return conv.create_json_schema(conv.dataclass_to_json(dataclass_obj))


def tao_network_actions(network: str) -> list[str]:
    import nvidia_tao_core

    path = Path(nvidia_tao_core.__file__).parent / NETWORK_CONFIGS / f"{network}.config.json"
    return list(json.loads(path.read_text())["api_params"]["actions"])


# --------------------------------------------------------------------------------------------- skills


def skill_steps(model: str) -> list[Step]:
    """Steps from `skills/<model>/skill.yaml`, else TAO Core's declared actions with default sections."""
    path = SKILLS_DIR / model / "skill.yaml"
    if path.is_file():
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        network = data.get("network") or model
        steps = []
        for name, action in data["actions"].items():
            sections = action.get("sections") or FALLBACK_SECTIONS.get(action["tao_action"], [])
            defaults = {**(data.get("template_defaults") or {}), **(action.get("template_defaults") or {})}
            steps.append(
                Step(name, action["tao_action"], action.get("network") or network, tuple(sections),
                     tuple(defaults.items()))
            )
        return steps
    steps = []
    for name in tao_network_actions(model):
        if name == "dataset_convert":  # Sparse4D: TAO runs the annotations converter
            steps.append(Step(name, "convert", "annotations", ("data", "aicity")))
        else:
            steps.append(Step(name, name, model, tuple(FALLBACK_SECTIONS[name])))
    return steps
