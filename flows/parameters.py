"""Flow parameters: what the Prefect UI form, the API and the CLI give a pipeline.

Prefect merges a deployment's parameters with a caller's only one level deep: a caller who passes a nested
object replaces the deployment's whole object. So every pipeline flow takes *top-level* parameters — the
datasets by named role, the model's own fields first, the actions as an enum of the model's actions, then
the run settings and the AutoML settings, each its own parameter — and where GPU steps run is not a
parameter default at all: it comes from the environment the deployment's work pool gives the flow run
(`TAOFLOW_LAUNCHER`, `TAOFLOW_ACTION_DEPLOYMENT`), so no caller can drop it by passing other parameters.

Inside the flow the top-level values become one `PipelineParameters` object (nested launcher and AutoML
settings), which is what the pipeline, the AutoML sweep, the dry run and the live display read.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model, field_validator, model_validator

from taoflow.automl.policy import DEFAULT_CONCURRENCY, DEFAULT_TRIALS
from taoflow.errors import UserError
from taoflow.planner import PipelineRequest
from taoflow.retraining import MEGABYTE, PromotionRequest
from taoflow.skill import DATASET_ROLES, load_skill

LauncherName = Literal["local", "docker", "kubernetes", "workpool"]
# The deployment's (work pool's) choice of launcher, read when a run does not name one.
LAUNCHER_ENV = "TAOFLOW_LAUNCHER"
LAUNCHER_OPTIONS_ENV = "TAOFLOW_LAUNCHER_OPTIONS"  # JSON object
# Whether the pool's pods run the TAO emulator ("true": a one-machine pool without TAO, e.g. tao-local), read
# when a run leaves `emulate` unset; emulation is part of every run key, so it is decided here, not in the pod.
EMULATE_ENV = "TAOFLOW_EMULATE"


class LauncherProfile(BaseModel):
    """Where GPU steps run. `local` runs TAO (or the emulator where TAO is not installed) as a process."""

    name: LauncherName = "local"
    emulate: bool | None = Field(
        None, description="Run the built-in TAO emulator (None: only when TAO is not installed)."
    )
    gpus: int = Field(1, ge=0, description="GPUs per node.")
    nodes: int = Field(1, ge=1, description="Nodes (multi-node training for skills that support it).")
    timeout_seconds: float | None = Field(None, gt=0, description="Deadline per action.")
    options: dict[str, Any] = Field(default_factory=dict, description="Launcher-specific options.")


def _policy_word(value: Any) -> Any:
    """YAML 1.1 reads a bare `on` / `off` as true / false: take those as the words they were."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return value


# `automl_policy`: on | auto (the same) | off; None: the model's default (skills/<model>/skill.yaml).
AutoMLPolicy = Annotated[Literal["on", "auto", "off"] | None, BeforeValidator(_policy_word)]


class AutoMLSettings(BaseModel):
    """The train action policy and the sweep's settings (taoflow/automl/policy.py). Unknown fields are refused
    (an old `enabled` must not be dropped silently: `policy` says it now)."""

    model_config = ConfigDict(extra="forbid")

    policy: AutoMLPolicy = Field(
        None, description="on / auto: train through an AutoML sweep; off: one train run (default: the model's).")
    max_trials: int = Field(DEFAULT_TRIALS, ge=1)
    max_concurrent: int = Field(DEFAULT_CONCURRENCY, ge=1, description="GPU budget: trials running at once.")
    max_epochs: int | None = Field(None, ge=1)
    sampler: Literal["auto", "gp", "tpe", "random", "grid"] = "auto"
    pruner: Literal["asha", "hyperband", "none"] | None = Field(
        None, description="Multi-fidelity pruning (default: ASHA, pruning only at rungs that rank trials as their ends do)."
    )
    seed: int = 0
    parameters: list[str] = Field(
        default_factory=list, description="KEY=LOW:HIGH[:log] or KEY=a,b,c search ranges."
    )
    space: Literal["default", "none"] = Field(
        "default", description="default: the model's AutoML parameters, extended by `parameters`; none: only them."
    )
    storage: str | None = Field(
        None, description="Optuna storage URL (default: $TAOFLOW_AUTOML_STORAGE, else SQLite in a local store).")

    def sweep_options(self) -> dict[str, Any]:
        """What preflight checks of a sweep (taoflow.automl.policy.sweep_problems)."""
        return {"parameters": list(self.parameters), "space": self.space, "storage": self.storage}


Tolerance = Annotated[float, Field(ge=0)]


class PromotionSettings(BaseModel):
    """Promotion to a model-registry name as the pipeline's last step (docs/registry.md)."""

    name: str | None = Field(None, description="Registry name to promote to, e.g. 'prod' (None: no promotion).")
    margin: float = Field(0.0, ge=0, description="How much the metric must beat the champion's by (KPI units).")
    parity_tolerances: dict[str, Tolerance] = Field(
        default_factory=dict, description="|TensorRT - PyTorch| allowed per engine precision (defaults: fp32 "
        "0.005, fp16 0.01, int8 0.03); the precisions given replace their defaults.")
    max_engine_mb: float | None = Field(None, gt=0, description="Largest TensorRT engine to promote, in MB.")

    def to_request(self) -> PromotionRequest | None:
        if not self.name:
            return None
        return PromotionRequest(
            name=self.name, margin=self.margin, parity_tolerances=dict(self.parity_tolerances),
            max_engine_bytes=int(self.max_engine_mb * MEGABYTE) if self.max_engine_mb is not None else None)


class PipelineParameters(BaseModel):
    """What every model pipeline runs with (nested form). Model flows add their model-specific fields."""

    datasets: dict[str, str] = Field(
        ..., description="Dataset URI per role: train, eval, inference, calibration (local path or s3://)."
    )
    actions: list[str] | None = Field(
        None, description="Actions to run, in pipeline order (default: every action the model has)."
    )
    overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Spec overrides per action as dotted keys, e.g. {'train': {'train.num_epochs': 20}}; "
        "'*' applies to every action.",
    )
    pretrained_model: str | None = Field(None, description="Pretrained model (PTM) URI.")
    warm_start: str | None = Field(
        None, description="Registry name whose champion's checkpoint training starts from instead of the PTM.")
    launcher: LauncherProfile = Field(default_factory=LauncherProfile)
    store: str | None = Field(None, description="Artifact store root (default ./.taoflow or $TAOFLOW_STORE).")
    automl: AutoMLSettings = Field(default_factory=AutoMLSettings)
    promotion: PromotionSettings = Field(default_factory=PromotionSettings)

    def model_overrides(self) -> dict[str, Any]:
        """Spec overrides for every action from the model-specific fields (none here)."""
        return {}

    def to_request(self, model: str) -> PipelineRequest:
        overrides = {action: dict(values) for action, values in self.overrides.items()}
        model_wide = {k: v for k, v in self.model_overrides().items() if v is not None}
        if model_wide:
            overrides["*"] = {**model_wide, **overrides.get("*", {})}
        return PipelineRequest(
            model=model,
            data=dict(self.datasets),
            actions=list(self.actions) if self.actions else None,
            overrides=overrides,
            ptm=self.pretrained_model,
            store=self.store,
            emulate=self.launcher.emulate,
            launcher=self.launcher.name,
            gpus=self.launcher.gpus,
            nodes=self.launcher.nodes,
            timeout_seconds=self.launcher.timeout_seconds,
            automl_policy=self.automl.policy,
        )

    @classmethod
    def model_fields_own(cls) -> list[str]:
        """The model-specific fields (declared by the model's subclass), in declaration order."""
        return [name for name in cls.model_fields if name not in PipelineParameters.model_fields]

    def flow_parameters(self) -> dict[str, Any]:
        """The top-level flow parameters that stand for these parameters (the inverse of `from_flow`)."""
        out: dict[str, Any] = {"datasets": dict(self.datasets)}
        out.update({name: getattr(self, name) for name in self.model_fields_own()})
        launcher, automl, promotion = self.launcher, self.automl, self.promotion
        out.update(
            actions=self.actions, overrides=self.overrides, pretrained_model=self.pretrained_model,
            warm_start=self.warm_start, store=self.store, launcher=launcher.name, launcher_options=launcher.options or None,
            emulate=launcher.emulate, gpus=launcher.gpus, nodes=launcher.nodes,
            timeout_seconds=launcher.timeout_seconds, automl_policy=automl.policy, automl_trials=automl.max_trials,
            automl_concurrency=automl.max_concurrent, automl_max_epochs=automl.max_epochs,
            automl_sampler=automl.sampler, automl_pruner=automl.pruner, automl_seed=automl.seed,
            automl_parameters=automl.parameters or None, automl_storage=automl.storage,
            promote=promotion.name, promote_margin=promotion.margin,
            promote_parity_tolerances=promotion.parity_tolerances or None,
            promote_max_engine_mb=promotion.max_engine_mb,
        )
        return out

    @classmethod
    def from_flow(cls, values: dict[str, Any]) -> PipelineParameters:
        """Top-level flow parameters → PipelineParameters. A launcher the run does not name comes from the
        environment the deployment's work pool set (`TAOFLOW_LAUNCHER`), else `local`."""
        v = dict(values)
        datasets = v.pop("datasets")
        datasets = datasets.model_dump() if isinstance(datasets, BaseModel) else dict(datasets or {})
        name = v.pop("launcher") or os.environ.get(LAUNCHER_ENV) or "local"
        options = v.pop("launcher_options")
        if options is None and not values.get("launcher"):
            options = _env_options()
        emulate = v.pop("emulate")
        if emulate is None and not values.get("launcher"):
            emulate = _env_emulate()
        launcher = LauncherProfile(
            name=name, options=options or {}, emulate=emulate, gpus=v.pop("gpus"),
            nodes=v.pop("nodes"), timeout_seconds=v.pop("timeout_seconds"),
        )
        automl = AutoMLSettings(
            policy=v.pop("automl_policy"), max_trials=v.pop("automl_trials"), max_concurrent=v.pop("automl_concurrency"),
            max_epochs=v.pop("automl_max_epochs"), sampler=v.pop("automl_sampler"), pruner=v.pop("automl_pruner"),
            seed=v.pop("automl_seed"), parameters=v.pop("automl_parameters") or [], storage=v.pop("automl_storage"),
        )
        promotion = PromotionSettings(
            name=v.pop("promote") or None, margin=v.pop("promote_margin"),
            parity_tolerances=v.pop("promote_parity_tolerances") or {}, max_engine_mb=v.pop("promote_max_engine_mb"),
        )
        actions = v.pop("actions")
        return cls(
            datasets={role: uri for role, uri in datasets.items() if uri}, launcher=launcher, automl=automl,
            promotion=promotion,
            actions=[str(a) for a in actions] if actions else None, overrides=v.pop("overrides") or {}, **v,
        )


def _env_options() -> dict[str, Any]:
    raw = os.environ.get(LAUNCHER_OPTIONS_ENV, "").strip()
    if not raw:
        return {}
    try:
        options = json.loads(raw)
    except ValueError:
        options = None
    if not isinstance(options, dict):
        raise UserError(f"{LAUNCHER_OPTIONS_ENV} must be a JSON object, got {raw!r}")
    return options


def _env_emulate() -> bool | None:
    raw = os.environ.get(EMULATE_ENV, "").strip().lower()
    if not raw:
        return None
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no"):
        return False
    raise UserError(f"{EMULATE_ENV} must be true or false, got {raw!r}")


class RunSettings(BaseModel):
    """The top-level parameters every pipeline flow has after its datasets and model fields, in form order
    (`automl_policy`'s default is the model's own: pipeline_signature)."""

    actions: list[str] | None = Field(
        None, description="Actions to run, in pipeline order (default: every action the model has)."
    )
    overrides: dict[str, dict[str, Any]] | None = Field(
        None, description="Spec overrides per action as dotted keys, e.g. {'train': {'train.num_epochs': 20}}; "
        "'*' applies to every action.")
    pretrained_model: str | None = Field(None, description="Pretrained model (PTM) URI.")
    warm_start: str | None = Field(
        None, description="Start training from the champion of this registry name (e.g. 'prod') instead of "
        "pretrained_model (which is used while the name has no champion).")
    store: str | None = Field(None, description="Artifact store root (default: $TAOFLOW_STORE, else ./.taoflow).")
    launcher: LauncherName | None = Field(
        None, description="Where GPU steps run (default: what the deployment's work pool sets, else local).")
    launcher_options: dict[str, Any] | None = Field(
        None, description="Launcher-specific options (default: the deployment's).")
    emulate: bool | None = Field(None, description="Run the TAO emulator (default: only when TAO is not installed).")
    gpus: int = Field(1, ge=0, description="GPUs per node for GPU actions.")
    nodes: int = Field(1, ge=1, description="Nodes for multi-node training (skills that support it).")
    timeout_seconds: float | None = Field(None, gt=0, description="Deadline per action attempt.")
    automl_policy: AutoMLPolicy = Field(
        None, description="Train action policy: on (or auto, the same) trains through an AutoML sweep, off trains "
        "directly, for this run only (default: the model's, on).")
    automl_trials: int = Field(DEFAULT_TRIALS, ge=1, description="AutoML: trials in all.")
    automl_concurrency: int = Field(DEFAULT_CONCURRENCY, ge=1, description="AutoML: trials running at once (the GPU budget).")
    automl_max_epochs: int | None = Field(None, ge=1, description="AutoML: epochs of a full trial.")
    automl_sampler: Literal["auto", "gp", "tpe", "random", "grid"] = Field(
        "auto", description="AutoML: sampler (auto: the multi-fidelity GP up to 8 parameters, else TPE).")
    automl_pruner: Literal["asha", "hyperband", "none"] | None = Field(
        None, description="AutoML: pruning (default: ASHA; Hyperband for training-loss metrics).")
    automl_seed: int = Field(0, description="AutoML: sampler seed.")
    automl_parameters: list[str] | None = Field(
        None, description="AutoML: KEY=LOW:HIGH[:log] or KEY=a,b,c search ranges (default: the skill's).")
    automl_storage: str | None = Field(None, description="AutoML: Optuna storage URL (default: SQLite in the store).")
    promote: str | None = Field(
        None, description="Promote the model to this registry name (e.g. 'prod') if it beats the champion on the "
        "same eval data and its TensorRT engine keeps parity; a rejection completes the run as 'not promoted'.")
    promote_margin: float = Field(
        0.0, ge=0, description="Promotion: how much the metric must beat the champion's by (KPI units, "
        "0.01 = one mAP point; 0: strictly better).")
    promote_parity_tolerances: dict[str, Tolerance] | None = Field(
        None, description="Promotion: allowed |TensorRT - PyTorch| per engine precision (default fp32 0.005, "
        "fp16 0.01, int8 0.03), e.g. {'int8': 0.02}.")
    promote_max_engine_mb: float | None = Field(
        None, gt=0, description="Promotion: largest TensorRT engine to promote, in MB (default: no limit).")


def datasets_model(model: str) -> type[BaseModel]:
    """`<Model>Datasets`: one optional URI field per dataset role the skill reads. An empty string (a Prefect
    variable that was not set at deploy time) counts as not given, so preflight names the missing role."""
    roles = load_skill(model).roles()

    def _unset_is_empty(cls, value):
        return {} if value in ("", None) else value

    def _empty_is_none(cls, value):
        return value or None

    fields: dict[str, Any] = {
        role: (str | None, Field(None, description=f"{role} dataset URI (local path or s3://)"))
        for role in DATASET_ROLES if role in roles
    }
    name = "".join(part.capitalize() for part in model.split("_")) + "Datasets"
    validators = {"_unset_is_empty": model_validator(mode="before")(_unset_is_empty),
                  "_empty_is_none": field_validator("*", mode="before")(_empty_is_none)}
    return create_model(name, __config__=ConfigDict(extra="forbid"), __validators__=validators, **fields)


def actions_type(model: str) -> Any:
    """`Literal[...]` of the model's actions: the UI shows a choice, the API and CLI refuse other names."""
    return Literal.__getitem__(tuple(load_skill(model).actions))


def run_name(model: str) -> Callable[[], str]:
    """Flow run names that say the model and the date, e.g. `rtdetr-2026-11-28-0200`."""
    return lambda: f"{model.replace('_', '-')}-{datetime.now(UTC):%Y-%m-%d-%H%M}"


def pipeline_signature(model: str, params_cls: type[PipelineParameters]) -> tuple[inspect.Signature, str]:
    """The flow's signature and its docstring's Args (Prefect shows them as the form's descriptions):
    datasets, the model's own fields, then RunSettings."""
    kw = inspect.Parameter.KEYWORD_ONLY
    datasets = datasets_model(model)
    params = [inspect.Parameter("datasets", kw, annotation=datasets)]
    docs = ["datasets: Dataset URI per role (" + ", ".join(datasets.model_fields) + ")."]
    for name in params_cls.model_fields_own():
        field = params_cls.model_fields[name]
        annotation = Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
        params.append(inspect.Parameter(name, kw, default=field.get_default(call_default_factory=True),
                                        annotation=annotation))
        docs.append(f"{name}: {field.description or name}")
    for name, field in RunSettings.model_fields.items():
        annotation = list[actions_type(model)] | None if name == "actions" else field.annotation
        if field.metadata:
            annotation = Annotated[annotation, *field.metadata]
        default = field.default
        if name == "automl_policy":  # the form shows the model's own default (on, or auto for some models)
            default = load_skill(model).automl.policy
        params.append(inspect.Parameter(name, kw, default=default, annotation=annotation))
        docs.append(f"{name}: {field.description}")
    return inspect.Signature(params, return_annotation=dict[str, Any]), "\n".join(docs)
