"""`taoflow spec render|validate`: build a TAO spec from the skill, or check one, before any GPU is used.

render: template ⊕ dataset roles (`--data ROLE=URI`) ⊕ upstream results (`--upstream ACTION[:ROLE]=URI`)
⊕ handoff values (`--handoff KEY=VALUE`) ⊕ overrides file ⊕ `--set KEY=VALUE`, validated, printed as
YAML on stdout (or written with `-o`). validate: every problem of a spec file at once, each naming its
dotted key; exit 2 when there is any. Files are read as TAO reads them (taoflow.specfile); warnings
(TAO metadata TAO does not enforce, `??` placeholders) go to stderr and never change the exit code.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from taoflow.cli import app
from taoflow.dotted import parse_assignment, parse_assignments
from taoflow.errors import UserError
from taoflow.skill import Skill, load_skill
from taoflow.spec import build_spec, dump_spec_yaml, load_yaml_mapping
from taoflow.validate import Problem, validation_report

spec_app = typer.Typer(help="Render and validate TAO spec files.", no_args_is_help=True)
app.add_typer(spec_app, name="spec")
stderr = Console(stderr=True, highlight=False)

ForceOption = Annotated[
    list[str] | None,
    typer.Option("--force", help="Accept a rule's finding on purpose (export_shape: RT-DETR export not 640x640)."),
]
CompleteOption = Annotated[
    bool, typer.Option("--complete", help="Also require every value TAO marks mandatory (???) to be given.")
]
KNOWN_FORCES = ("export_shape",)


def _pairs(items: list[str] | None, what: str, example: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise UserError(f"invalid {what} {item!r}: use {example}")
        out[key.strip()] = value.strip()
    return out


def _check_forces(force: list[str] | None) -> list[str]:
    unknown = [f for f in force or [] if f not in KNOWN_FORCES]
    if unknown:
        raise UserError(f"unknown --force {', '.join(unknown)}; allowed: {', '.join(KNOWN_FORCES)}")
    return list(force or [])


def print_warnings(warnings: list[Problem]) -> None:
    for problem in warnings:
        stderr.print(f"[yellow]warning:[/yellow] {escape(str(problem))}", markup=True)


def checked(skill: Skill, action: str, spec: dict, *, complete: bool, force: list[str]) -> list[Problem]:
    """Print the warnings (also when there are errors), raise the errors, return the warnings."""
    report = validation_report(skill, action, spec, complete=complete, force=force)
    print_warnings(report.warnings)
    report.raise_errors(skill, action)
    return report.warnings


def write_text_atomic(path: Path, text: str) -> None:
    """Write beside the target and rename, so a reader never sees half a spec."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@spec_app.command("render")
def render(
    model: Annotated[str, typer.Argument(help="Model name, e.g. rtdetr.")],
    action: Annotated[str, typer.Argument(help="Action of the model, e.g. train.")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="KEY=VALUE override (dotted key, YAML value).")] = None,
    overrides: Annotated[Path | None, typer.Option("--overrides", help="YAML file of overrides.")] = None,
    data: Annotated[list[str] | None, typer.Option("--data", help="ROLE=URI (train, eval, inference, calibration).")] = None,
    upstream: Annotated[list[str] | None, typer.Option(
        "--upstream", help="ACTION[:ROLE]=URI results of an earlier action (sparse4d dataset_convert:train=...).")] = None,
    handoff: Annotated[list[str] | None, typer.Option(
        "--handoff", help="KEY=VALUE for a handoff key (e.g. evaluate.checkpoint=.../model_epoch_009_step_00100.pth).")] = None,
    role: Annotated[str | None, typer.Option("--role", help="Dataset role of a per-role action run.")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Write the spec here instead of stdout.")] = None,
    force: ForceOption = None,
    complete: CompleteOption = False,
) -> None:
    """Render the spec of MODEL ACTION, validate it, print it as YAML."""
    skill = load_skill(model)
    skill.action(action)
    handoffs = dict(parse_assignment(item) for item in handoff or [])
    spec = build_spec(
        skill, action,
        data=_pairs(data, "--data", "ROLE=URI, e.g. --data train=s3://bucket/train"),
        handoffs=handoffs,
        overrides=parse_assignments(set_ or []),
        overrides_file=overrides,
        upstream=_pairs(upstream, "--upstream", "ACTION[:ROLE]=URI, e.g. dataset_convert:train=s3://bucket/runs/.."),
        role=role,
    )
    checked(skill, action, spec, complete=complete, force=_check_forces(force))
    text = dump_spec_yaml(spec)
    if output is not None:
        write_text_atomic(output, text)
        stderr.print(f"wrote {output}")
    else:
        typer.echo(text, nl=False)


@spec_app.command("validate")
def validate(
    model: Annotated[str, typer.Argument(help="Model name, e.g. rtdetr.")],
    action: Annotated[str, typer.Argument(help="Action of the model, e.g. train.")],
    file: Annotated[Path, typer.Argument(help="Spec YAML file.")],
    force: ForceOption = None,
    complete: CompleteOption = False,
) -> None:
    """Check a spec file against the action's schema and the model's rules; exit 2 listing every problem."""
    skill = load_skill(model)
    skill.action(action)
    spec = load_yaml_mapping(file, "spec file", "TAO sections")
    warnings = checked(skill, action, spec, complete=complete, force=_check_forces(force))
    note = f" ({len(warnings)} warning(s))" if warnings else ""
    typer.echo(f"{file}: valid {model} {action} spec{note}")
