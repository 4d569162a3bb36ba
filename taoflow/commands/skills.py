"""`taoflow skills list|show`: what each model's skill says (actions, datasets, AutoML, images, errors)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from taoflow.cli import app
from taoflow.skill import Skill, load_skill, skill_names

skills_app = typer.Typer(help="The skill bank: one descriptor per TAO model.", no_args_is_help=True)
app.add_typer(skills_app, name="skills")


def _console() -> Console:
    out = Console(highlight=False)
    if not out.is_terminal:
        out.width = max(out.width, 200)  # piped or captured: keep rows on one line where possible
    return out


def images_used(skill: Skill) -> dict[str, str]:
    """Image reference per image role the skill's actions use (environment overrides applied); an action
    whose image differs from its role's (Sparse4D quantize) is listed as `role (action)`."""
    out: dict[str, str] = {}
    for name, action in skill.actions.items():
        role = action.image.value
        image = skill.image_for(name)
        out.setdefault(role, image)
        if out[role] != image:
            out[f"{role} ({name})"] = image
    return out


@skills_app.command("list")
def list_skills() -> None:
    """A row per model: actions, dataset formats, AutoML metric and direction, images."""
    table = Table(title="TAO skills")
    for column in ("model", "actions", "pipeline", "dataset formats", "AutoML", "images"):
        table.add_column(column, overflow="fold", no_wrap=column in ("model", "AutoML", "images"))
    for name in skill_names():
        skill = load_skill(name)
        automl = f"{skill.automl.metric} ({skill.automl.direction})" if skill.automl.enabled else "off"
        images = "\n".join(f"{role}: {ref}" for role, ref in images_used(skill).items())
        table.add_row(
            name, ", ".join(skill.actions), " → ".join(skill.pipeline), ", ".join(skill.dataset_formats),
            automl, images,
        )
    _console().print(table)


def _source_text(ds) -> str:
    target = ds.path or "(role folder)"
    if ds.fields:
        target = "{" + ", ".join(f"{k}: {v}" for k, v in ds.fields.items()) + "}"
    text = f"{ds.role}/{target}"
    if ds.from_action:
        text = f"{ds.from_action} results of {ds.role}: {ds.path}"
    extras = [ds.kind]
    if ds.is_list:
        extras.append("list")
    if ds.extract_from:
        extras.append(f"extracted from {ds.extract_from}")
    if ds.fallback:
        extras.append("else " + "/".join(ds.fallback))
    if not ds.required:
        extras.append("optional")
    return f"{ds.key} ← {text} [{', '.join(extras)}]"


@skills_app.command("show")
def show_skill(model: Annotated[str, typer.Argument(help="Model name, e.g. rtdetr.")]) -> None:
    """Everything the skill declares for one model."""
    skill = load_skill(model)
    out = _console()
    out.print(f"[bold]{escape(skill.display_name)}[/bold] ({skill.name}) — {escape(skill.description)}")
    out.print(
        f"TAO network: {skill.network}   dataset type: {skill.dataset_type}   formats: "
        f"{', '.join(skill.dataset_formats)}"
    )
    out.print(
        f"launch: {skill.launch}   multi-node: {'yes' if skill.multi_node else 'no'}   hardware: "
        f">= {skill.hardware.min_gpus} GPU(s) (recommended {skill.hardware.recommended_gpus}), "
        f"{skill.hardware.min_vram_gb} GB+ VRAM each"
    )
    out.print(f"best checkpoint by: {skill.monitoring.metric} ({skill.monitoring.direction})")
    automl = f"{skill.automl.metric} ({skill.automl.direction})" if skill.automl.enabled else "disabled"
    if skill.automl.overrides:
        automl += "; trial overrides: " + ", ".join(f"{k}={v}" for k, v in skill.automl.overrides.items())
    out.print(f"AutoML: {automl}")
    out.print(f"pipeline: {' → '.join(skill.pipeline)}")
    for role, ref in images_used(skill).items():
        out.print(f"image {role}: {escape(ref)}")
    out.print("images: override per role with TAOFLOW_IMAGE_<ROLE> (PYT, DEPLOY, DATA_SERVICES) or per action "
              f"with TAOFLOW_IMAGE_{skill.name.upper()}_<ACTION>")

    actions = Table(title="actions")
    for column in ("action", "TAO action", "image", "command", "parent", "data sources", "handoffs"):
        actions.add_column(column, overflow="fold")
    for name, action in skill.actions.items():
        tao = action.tao_action if not action.network else f"{action.network} {action.tao_action}"
        if action.per_role:
            tao += " (per role: " + ", ".join(action.per_role) + ")"
        need = skill.release_needed(name)
        image = f"{skill.image_for(name)}\n({action.image.value}" + (f", TAO >= {need.release})" if need else ")")
        problem = skill.image_problem(name)
        if problem:
            image += "\nREFUSED: " + problem
        actions.add_row(*(escape(cell) for cell in (
            name, tao, image, " ".join(action.argv), action.parent or "",
            "\n".join(_source_text(ds) for ds in action.data_sources),
            "\n".join(f"{k} ← {fn}" for k, fn in action.handoffs.items()),
        )))
    out.print(actions)

    errors = Table(title="error patterns (first match wins; infra failures are retried)")
    for column in ("name", "class", "remedy"):
        errors.add_column(column, overflow="fold")
    for pattern in skill.error_patterns:
        errors.add_row(escape(pattern.name), pattern.failure_class, escape(pattern.remedy))
    out.print(errors)
