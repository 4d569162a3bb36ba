"""Flow parameters: pydantic models that Prefect turns into the run form in its UI."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from taoflow.planner import PipelineRequest


class LauncherProfile(BaseModel):
    """Where GPU steps run. `local` runs TAO (or the emulator where TAO is not installed) as a process."""

    name: Literal["local", "docker", "kubernetes", "workpool"] = "local"
    emulate: bool | None = Field(
        None, description="Run the built-in TAO emulator (None: only when TAO is not installed)."
    )
    gpus: int = Field(1, ge=0, description="GPUs per node.")
    nodes: int = Field(1, ge=1, description="Nodes (multi-node training for skills that support it).")
    timeout_seconds: float | None = Field(None, gt=0, description="Deadline per action.")
    options: dict[str, Any] = Field(default_factory=dict, description="Launcher-specific options.")


class AutoMLSettings(BaseModel):
    """AutoML sweep in place of plain training."""

    enabled: bool = False
    max_trials: int = Field(16, ge=1)
    max_concurrent: int = Field(4, ge=1, description="GPU budget: trials running at once.")
    max_epochs: int | None = Field(None, ge=1)
    sampler: Literal["tpe", "gp", "random", "grid"] = "tpe"
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
    storage: str | None = Field(None, description="Optuna storage URL (default: SQLite in the store).")


class PipelineParameters(BaseModel):
    """What every model pipeline takes. Model flows add their model-specific fields."""

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
    launcher: LauncherProfile = Field(default_factory=LauncherProfile)
    store: str | None = Field(None, description="Artifact store root (default ./.taoflow or $TAOFLOW_STORE).")
    automl: AutoMLSettings = Field(default_factory=AutoMLSettings)

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
            gpus=self.launcher.gpus,
            nodes=self.launcher.nodes,
            timeout_seconds=self.launcher.timeout_seconds,
        )
