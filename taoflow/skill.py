"""Skill: a TAO model's descriptor, loaded from `skills/<model>/skill.yaml`.

A skill is data, not code: which actions the model has, which container image and argv runs each one,
where each action's dataset files go in the spec, which spec keys receive handoffs from the resolver,
AutoML metric and direction, launch method, hardware minimums and error patterns. Everything else
(spec building, validation, launching, the Prefect flows) reads it from here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from taoflow.errors import UserError

# Order of the steps of a full pipeline; a skill runs the subset it declares in `pipeline`.
PIPELINE_ORDER = (
    "dataset_convert",
    "train",
    "evaluate",
    "export",
    "quantize",
    "gen_trt_engine",
    "trt_evaluate",
)

# Dataset roles a user provides (`--data ROLE=URI`); TAO's names for them are in the comments.
DATASET_ROLES = (
    "train",  # train_datasets
    "eval",  # eval_dataset
    "inference",  # inference_dataset
    "calibration",  # calibration_dataset
)

HandoffName = Literal[
    "parent_model",
    "parent_model_folder",
    "resume_model",
    "ptm",
    "ptm_if_no_resume_model",
    "parent_model_or_ptm",
    "create_onnx_file",
    "create_onnx_file_2d",
    "create_engine_file",
    "create_cal_cache",
    "output_dir",
    "key",
]

# Default images by role: TAO 6.26.3, the release NVIDIA's own launcher maps every action of the five models
# to (nvidia-tao 6.26.3 on PyPI, nvidia_tao_cli/config/config.json: rtdetr, centerpose, action_recognition,
# sparse4d and nvpanoptix3d → 6.26.3-pyt; annotations → 6.26.3-data-services; config_deploy.json: rtdetr,
# centerpose → 6.26.3-deploy) and NVIDIA's skill bank pins. TAO Core's own fallbacks (6.0.0) cannot run
# Sparse4D, its AICity converter, RT-DETR quantize or NVPanoptix3D (docs/spec-acceptance.md). An action that
# needs a newer release names its own `image_ref` in skill.yaml (Sparse4D quantize).
DEFAULT_IMAGES = {
    "pyt": "nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt",
    "deploy": "nvcr.io/nvidia/tao/tao-toolkit:6.26.3-deploy",
    "data-services": "nvcr.io/nvidia/tao/tao-toolkit:6.26.3-data-services",
}
# `<repo>/tao-toolkit:<X.Y.Z>-<flavour>`: NVIDIA's tag scheme, whose release tells what the image contains.
_RELEASE_TAG = re.compile(r"(?:^|/)tao-toolkit:(\d+)\.(\d+)\.(\d+)")


class ImageRole(str, Enum):
    pyt = "pyt"
    deploy = "deploy"
    data_services = "data-services"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSource(_Strict):
    """One spec key filled from a dataset role.

    The value is `<role URI>/<path>` (the role root when `path` is empty). With `fields`, the value is a
    mapping `{field: <role URI>/<relative path>}` (RT-DETR's `{image_dir, json_file}`); with `list` (read as
    `is_list`), it is
    wrapped in a list. `kind` says what TAO expects at that path. `extract_from` names an archive (relative
    to the role root) that the launcher extracts when the directory is absent (action recognition).
    `from_action` means the path is inside the results of that earlier action of the same pipeline
    (Sparse4D's pickles and anchor_init.npy come from dataset_convert); callers pass those results as
    `upstream["<action>:<role>"]` (per-role runs) or `upstream["<action>"]`. When the role was not
    supplied, the first supplied role of `fallback` is used instead (Sparse4D's test split falls back
    to eval); a data source that is not `required` is left out when no role fits.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    key: str
    role: Literal["train", "eval", "inference", "calibration"]
    path: str = ""
    fields: dict[str, str] | None = None
    is_list: bool = Field(False, alias="list")
    kind: Literal["directory", "file", "tarball"] = "directory"
    extract_from: str | None = None
    from_action: str | None = None
    fallback: list[Literal["train", "eval", "inference", "calibration"]] = Field(default_factory=list)
    # Path to use instead of `path` when a fallback role supplies the value (NVPanoptix3D's test split:
    # the inference role's meta/test.json, else the eval role's meta/val.json).
    fallback_path: str | None = None
    required: bool = True


class ReleaseNeed(_Strict):
    """The first TAO release whose image can run an action, and why (the NVIDIA source that shows it)."""

    release: str
    why: str

    @field_validator("release")
    @classmethod
    def _is_version(cls, release: str) -> str:
        if not re.fullmatch(r"\d+\.\d+\.\d+", release):
            raise ValueError(f"release {release!r} must look like 6.25.7")
        return release

    @property
    def version(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.release.split("."))


class Action(_Strict):
    """One step the model can run. `tao_action` is TAO's action name (the step `trt_evaluate` is TAO's
    `evaluate` in the deploy image); `argv` is the container command with `{spec}` for the spec path."""

    tao_action: str
    image: ImageRole
    argv: list[str]
    parent: str | None = None
    gpu: bool = True
    multi_node: bool = False
    data_sources: list[DataSource] = Field(default_factory=list)
    handoffs: dict[str, HandoffName] = Field(default_factory=dict)
    # Spec sections this action reads (the template keeps only these plus the top-level scalars).
    sections: list[str] = Field(default_factory=list)
    # Run once per supplied role, with these extra overrides per role (Sparse4D dataset_convert:
    # {train: {aicity.split: train}, eval: {aicity.split: val}}); in those runs every data source of
    # the action reads the run's role instead of the one it names.
    per_role: dict[str, dict[str, object]] | None = None
    # TAO Core config module when it is not the skill's network (Sparse4D convert: annotations).
    network: str | None = None
    # Fixed spec values the action always sets, applied after the template and before data sources,
    # handoffs and user overrides (TAO Core's data_sources `value` entries, e.g. NVPanoptix3D
    # `dataset.contiguous_id: true`).
    values: dict[str, object] = Field(default_factory=dict)
    # Keys TAO marks mandatory (`???`) that this action never reads (the deploy image's evaluate reads
    # `evaluate.trt_engine`, not `evaluate.checkpoint`): complete validation does not ask for them.
    ignore_missing: list[str] = Field(default_factory=list)
    # The image of this action when it is not the skill's image for its role (an action newer than that
    # release), and the first TAO release that can run it (else the skill's `since`).
    image_ref: str | None = None
    since: ReleaseNeed | None = None
    # Template values for this action only (see Skill.template_defaults).
    template_defaults: dict[str, object] = Field(default_factory=dict)

    @field_validator("argv")
    @classmethod
    def _argv_has_spec(cls, argv: list[str]) -> list[str]:
        if "{spec}" not in argv:
            raise ValueError("argv must contain the '{spec}' placeholder")
        return argv


class AutoML(_Strict):
    """The model's AutoML metadata (NVIDIA's `automl_enabled`, metric, direction) and its train action
    policy: `policy` is the default of a run's `automl_policy` (on or auto: train through a sweep; off: one
    train run), which a run may change for itself only (taoflow/automl/policy.py)."""

    enabled: bool = True
    policy: Literal["on", "auto", "off"] = "on"
    metric: str
    direction: Literal["maximize", "minimize"]
    # Extra spec overrides every trial gets (e.g. nvpanoptix3d train.optim.monitor_name: train_loss).
    overrides: dict[str, object] = Field(default_factory=dict)
    # Search parameters to use instead of the schema's automl_default_parameters (None: schema's).
    parameters: list[str] | None = None


class Monitoring(_Strict):
    """The metric that picks the best checkpoint for evaluate/export (TAO Core's monitoring metric)."""

    metric: str
    direction: Literal["maximize", "minimize"]


class Hardware(_Strict):
    min_gpus: int = 1
    recommended_gpus: int = 1
    min_vram_gb: int = 16


class ErrorPattern(_Strict):
    """A known failure: a regex over the log, its class, and the remedy shown to the user.

    `infra` failures are retried (resuming from the newest checkpoint); `program` and `spec` are not."""

    name: str
    regex: str
    failure_class: Literal["infra", "program", "spec"] = Field(alias="class")
    remedy: str

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, regex: str) -> str:
        re.compile(regex)
        return regex


class Skill(_Strict):
    name: str
    display_name: str
    description: str
    network: str  # TAO Core config package name (nvidia_tao_core.config.<network>)
    dataset_type: str
    dataset_formats: list[str]
    launch: Literal["lightning", "torchrun"]
    multi_node: bool = False
    hardware: Hardware = Hardware()
    images: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_IMAGES))
    # The first TAO release whose images can run the model's actions (an action's own `since` wins).
    since: ReleaseNeed | None = None
    # Values the generated templates use instead of TAO Core's dataclass defaults, where NVIDIA's pretrained
    # models need them (dotted key → value; scripts/generate_schemas.py applies them to every step whose
    # sections hold the key). Data for the generator: build_spec reads the templates.
    template_defaults: dict[str, object] = Field(default_factory=dict)
    monitoring: Monitoring
    automl: AutoML
    pipeline: list[str]
    actions: dict[str, Action]
    error_patterns: list[ErrorPattern] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Skill:
        for step in self.pipeline:
            if step not in self.actions:
                raise ValueError(f"pipeline step {step!r} is not an action of the skill")
            if step not in PIPELINE_ORDER:
                raise ValueError(f"pipeline step {step!r} is not one of {PIPELINE_ORDER}")
        order = [s for s in PIPELINE_ORDER if s in self.pipeline]
        if order != self.pipeline:
            raise ValueError(f"pipeline must follow the order {order}")
        for name, action in self.actions.items():
            if action.parent and action.parent not in self.actions:
                raise ValueError(f"action {name!r}: parent {action.parent!r} is not an action")
            for ds in action.data_sources:
                if ds.from_action and ds.from_action not in self.actions:
                    raise ValueError(f"action {name!r}: {ds.key} from unknown action {ds.from_action!r}")
        return self

    def action(self, name: str) -> Action:
        try:
            return self.actions[name]
        except KeyError:
            raise UserError(
                f"{self.name} has no action {name!r}; its actions are: {', '.join(self.actions)}"
            ) from None

    def image_for(self, action: str, overrides: Mapping[str, str] | None = None) -> str:
        """The image that runs `action`. First match wins: `overrides[action]`, `overrides[role]` (a run's
        own choice), $TAOFLOW_IMAGE_<MODEL>_<ACTION>, $TAOFLOW_IMAGE_<ROLE>, the action's `image_ref`, the
        skill's image for the role, DEFAULT_IMAGES."""
        act = self.action(action)
        role = act.image.value
        overrides = overrides or {}
        env_action = os.environ.get(f"TAOFLOW_IMAGE_{self.name}_{action}".upper())
        env_role = os.environ.get("TAOFLOW_IMAGE_" + role.upper().replace("-", "_"))
        return (overrides.get(action) or overrides.get(role) or env_action or env_role or act.image_ref
                or self.images.get(role) or DEFAULT_IMAGES[role])

    def release_needed(self, action: str) -> ReleaseNeed | None:
        return self.action(action).since or self.since

    def image_problem(self, action: str, image: str | None = None) -> str | None:
        """Why `image` (default: image_for(action)) cannot run `action`, or None. Only NVIDIA's
        `tao-toolkit:<X.Y.Z>-...` tags are judged; any other image is taken on trust."""
        image = image or self.image_for(action)
        need = self.release_needed(action)
        release = image_release(image)
        if need is None or release is None or release >= need.version:
            return None
        return (f"{self.name} {action} needs a TAO {need.release} or newer image ({need.why}); {image} is TAO "
                f"{'.'.join(map(str, release))}: use a newer tag (the default is {self.default_image(action)}), "
                f"e.g. TAOFLOW_IMAGE_{self.name.upper()}_{action.upper()}=<image>")

    def default_image(self, action: str) -> str:
        """The image of `action` without any override (skill data only)."""
        act = self.action(action)
        return act.image_ref or self.images.get(act.image.value) or DEFAULT_IMAGES[act.image.value]

    def roles(self) -> list[str]:
        """Dataset roles any action of the skill reads, in DATASET_ROLES order."""
        used = {ds.role for a in self.actions.values() for ds in a.data_sources}
        return [r for r in DATASET_ROLES if r in used]

    def classify(self, log_text: str) -> ErrorPattern | None:
        """The first error pattern (in skill order) whose regex matches the log, else None."""
        for pattern in self.error_patterns:
            if re.search(pattern.regex, log_text, re.MULTILINE):
                return pattern
        return None

    @property
    def directory(self) -> Path:
        return skills_dir() / self.name


def image_release(image: str) -> tuple[int, int, int] | None:
    """The TAO release of an NVIDIA `tao-toolkit:<X.Y.Z>-<flavour>` image (any registry), else None."""
    match = _RELEASE_TAG.search(image.split("@", 1)[0])
    return (int(match.group(1)), int(match.group(2)), int(match.group(3))) if match else None


def skills_dir() -> Path:
    """`$TAOFLOW_SKILLS_DIR`, else the `skills/` folder beside the `taoflow` package."""
    env = os.environ.get("TAOFLOW_SKILLS_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "skills"


def skill_names() -> list[str]:
    root = skills_dir()
    return sorted(p.parent.name for p in root.glob("*/skill.yaml"))


COMMON_FILE = "common.yaml"


@cache
def _load(path: str, mtime: float, common_path: str | None = None, common_mtime: float = 0.0) -> Skill:
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if common_path:
        data = _merge_common(data, common_path)
    return Skill.model_validate(data)


def _merge_common(data: dict, common_path: str) -> dict:
    """Append `skills/common.yaml`'s error patterns (OOM, NCCL, preemption, ...) after the model's own.

    The model's patterns come first, so its model-specific remedy wins; a model pattern with the same
    name replaces the common one."""
    with open(common_path, encoding="utf-8") as fh:
        common = yaml.safe_load(fh) or {}
    own = list(data.get("error_patterns") or [])
    names = {p.get("name") for p in own}
    shared = [p for p in common.get("error_patterns") or [] if p.get("name") not in names]
    return {**data, "error_patterns": own + shared}


def load_skill(name: str) -> Skill:
    """Load and validate `skills/<name>/skill.yaml`; an unknown model is a UserError listing the known ones."""
    path = skills_dir() / name / "skill.yaml"
    if not path.is_file():
        known = ", ".join(skill_names()) or "(none)"
        raise UserError(f"unknown model {name!r}; known models: {known}")
    common = skills_dir() / COMMON_FILE
    if common.is_file():
        return _load(str(path), path.stat().st_mtime, str(common), common.stat().st_mtime)
    return _load(str(path), path.stat().st_mtime)
