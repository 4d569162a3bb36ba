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


def demo_parameters(model: str, data_dir: Path, store: str, **changes: Any) -> PipelineParameters:
    """Flow parameters for the sample data in `data_dir` (every role folder present), on the emulator."""
    _, params_cls = model_flow(model)
    roles = {p.name: str(p.resolve()) for p in sorted(data_dir.iterdir()) if p.is_dir()}
    fields: dict[str, Any] = {
        "datasets": roles,
        "store": store,
        "overrides": {"train": dict(DEMO_TRAIN)},
        "launcher": {"name": "local", "emulate": True},
        **SAMPLE_FIELDS[model],
    }
    fields.update(changes)
    return params_cls(**fields)


def run_demo(model: str, directory: Path, console: Console) -> dict[str, Any]:
    from flows.live import run_with_live_display
    from taoflow.skill import load_skill

    load_skill(model)  # an unknown model fails here with the list of known ones
    directory = directory.resolve()
    data_dir = directory / "data" / model
    if not data_dir.exists():
        write_sample_data(model, data_dir)
    console.print(f"[bold]tao-flows demo[/bold]: {model} on the TAO emulator (results are EMULATED)")
    console.print(f"sample data: {data_dir}")
    params = demo_parameters(model, data_dir, str(directory / "store"))
    summary = run_with_live_display(model, params, console)
    console.print(f"\nResults under [bold]{directory / 'store'}[/bold]; model card: "
                  f"[bold]{directory / 'store' / 'runs' / model / 'MODEL_CARD.md'}[/bold]")
    console.print(
        "Prefect UI: the runs are in Prefect's local database; start the UI with "
        "[bold]prefect server start[/bold] and open http://127.0.0.1:4200 (flow runs, artifacts: "
        f"{model}-model-card, {model}-kpis)."
    )
    return summary
