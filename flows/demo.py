"""`taoflow demo MODEL`: sample data, then the full pipeline on the TAO emulator, then where to look."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from flows import model_flow
from flows.parameters import PipelineParameters
from taoflow.datasets import write_sample_data
from taoflow.datasets.sample_data import AR_CLASSES, RTDETR_CLASSES

# Short training so the demo finishes in seconds; checkpoints every epoch so the resolver has a choice.
DEMO_TRAIN = {"train.num_epochs": 6, "train.checkpoint_interval": 1, "train.validation_interval": 1}

# The model-specific fields of each flow that the sample data implies.
SAMPLE_FIELDS: dict[str, dict[str, Any]] = {
    "rtdetr": {"num_classes": len(RTDETR_CLASSES) + 1, "eval_class_ids": list(range(1, len(RTDETR_CLASSES) + 1))},
    "centerpose": {"category": "bike"},
    "action_recognition": {"label_map": {name: i for i, name in enumerate(AR_CLASSES)}},
    "sparse4d": {},
    "nvpanoptix3d": {"dataset_name": "front3d"},
}


def demo_parameters(model: str, data_dir: Path, store: str, automl_policy: str | None = None,
                    **changes: Any) -> PipelineParameters:
    """Flow parameters for the sample data in `data_dir` (every role folder present), on the emulator, with
    the train action policy `automl_policy` (None: the model's default, an AutoML sweep of the default budget;
    `changes` may give the whole `automl` settings instead)."""
    _, params_cls = model_flow(model)
    roles = {p.name: str(p.resolve()) for p in sorted(data_dir.iterdir()) if p.is_dir()}
    fields: dict[str, Any] = {
        "datasets": roles,
        "store": store,
        "overrides": {"train": dict(DEMO_TRAIN)},
        "launcher": {"name": "local", "emulate": True},
        **SAMPLE_FIELDS[model],
    }
    if automl_policy is not None:
        fields["automl"] = {"policy": automl_policy}
    fields.update(changes)
    return params_cls(**fields)


def run_demo(model: str, directory: Path, console: Console) -> dict[str, Any]:
    from flows.cli_runtime import quiet_prefect_console, run_guarded, start_prefect
    from flows.live import run_with_live_display
    from taoflow.checks import check_pipeline
    from taoflow.skill import load_skill

    skill = load_skill(model)  # an unknown model fails here with the list of known ones
    directory = directory.resolve()
    data_dir = directory / "data" / model
    if not data_dir.exists():
        try:
            write_sample_data(model, data_dir)
        except OSError as exc:
            from taoflow.errors import UserError
            from taoflow.storage_errors import storage_problem

            raise UserError(storage_problem(exc, str(directory), "demo folder", write=True, choose="--dir")
                            or f"cannot write the sample data to {data_dir}: {exc}") from None
    console.print(f"[bold]tao-flows demo[/bold]: {model} on the TAO emulator (results are EMULATED)")
    console.print(f"sample data: {data_dir}", markup=False, highlight=False, soft_wrap=True)
    params = demo_parameters(model, data_dir, str(directory / "store"))
    plan = check_pipeline(skill, params.to_request(model), params.launcher.name,  # before any server starts
                          sweep=params.automl.sweep_options())
    steps = [step.name for step in plan.steps]
    api_url = start_prefect(console)
    quiet_prefect_console()
    summary = run_guarded(lambda: run_with_live_display(model, params, console, steps=steps))
    ui = api_url.removesuffix("/api")
    console.print(f"Prefect UI: {ui} (flow runs; artifacts {model}-model-card, {model}-kpis). The local "
                  "server keeps running for the next command: `taoflow server status`, `taoflow server stop`.",
                  markup=False, highlight=False, soft_wrap=True)
    return summary
