"""`taoflow checkpoints RESULTS_URI`: show a results folder's checkpoint manifest and the file the resolver
would hand on. The table comes first; the chosen URI is alone on the last line, so scripts can `tail -1`.
Nothing qualifying is a user error: the reasons for every rejection go to stderr and the exit code is 2."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from taoflow.cli import app
from taoflow.errors import UserError
from taoflow.manifest import Manifest, build_manifest
from taoflow.resolver import Choice, NoCandidate, choose_parent, choose_resume, monitoring_for
from taoflow.skill import Skill, load_skill
from taoflow.store import ArtifactStore


class Purpose(str, Enum):
    evaluate = "evaluate"
    export = "export"
    resume = "resume"


def skill_of(results_uri: str, model: str | None) -> Skill | None:
    """The skill named by `--model`, else by the store layout `.../runs/<model>/<run_key>/<action>`."""
    if model:
        return load_skill(model)
    parts = results_uri.rstrip("/").split("/")
    if len(parts) >= 4 and parts[-4] == "runs":
        try:
            return load_skill(parts[-3])
        except UserError:
            return None
    return None


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def manifest_table(manifest: Manifest, choice: Choice | None, rejected: list[tuple[str, str]]) -> Table:
    metric = manifest.metric or "metric"
    table = Table(title=f"{manifest.results_uri}  ({manifest.files_seen} files, status {manifest.status or '-'})")
    for column in ("file", "kind", "epoch", "step", "size", metric, "decision"):
        table.add_column(column, overflow="fold")
    reasons = dict(rejected)
    for e in manifest.entries:
        chosen = choice is not None and e.uri == choice.uri
        decision = f"CHOSEN: {choice.note or 'selected'}" if chosen else reasons.get(e.path, e.problem or "")
        table.add_row(
            e.path, e.kind, "" if e.epoch is None else str(e.epoch), "" if e.step is None else str(e.step),
            _size(e.size), "" if e.metric_value is None else f"{e.metric_value:g}", decision,
            style="bold green" if chosen else ("dim" if not e.complete else None),
        )
    return table


@app.command("checkpoints")
def checkpoints(
    results_uri: Annotated[str, typer.Argument(help="A results folder: local path or s3://bucket/prefix/...")],
    purpose: Annotated[Purpose, typer.Option(
        "--for", help="evaluate/export: the parent_model choice; resume: resume_model.")] = Purpose.evaluate,
    epoch: Annotated[int | None, typer.Option(help="The checkpoint of this epoch (0-based, as in names).")] = None,
    step: Annotated[int | None, typer.Option(help="The checkpoint of this step.")] = None,
    latest: Annotated[bool, typer.Option("--latest", help="The latest link (else the newest checkpoint).")] = False,
    metric: Annotated[str | None, typer.Option(help="KPI that defines best (default: the skill's).")] = None,
    direction: Annotated[str | None, typer.Option(help="maximize or minimize (default: the skill's).")] = None,
    model: Annotated[str | None, typer.Option(help="Model name, when the URI is not in the store layout.")] = None,
    save: Annotated[bool, typer.Option("--save/--no-save", help="Write manifest.json beside the results.")] = True,
) -> None:
    """Print the checkpoint manifest, then the chosen file's URI alone on the last line."""
    if direction not in (None, "maximize", "minimize"):
        raise UserError(f"--direction {direction!r}: allowed values are maximize, minimize")
    if purpose is Purpose.resume and (epoch is not None or step is not None or latest):
        raise UserError("--for resume always takes the newest checkpoint; drop --epoch/--step/--latest")
    store = ArtifactStore(results_uri)
    results_uri = store.root  # normalised (absolute path, no trailing slash)
    skill = skill_of(results_uri, model)
    metric, direction = monitoring_for(skill, metric, direction)  # type: ignore[arg-type]
    manifest = build_manifest(store, results_uri, metric=metric, direction=direction, save=save)

    choice: Choice | None = None
    failure: NoCandidate | None = None
    try:
        if purpose is Purpose.resume:
            choice = choose_resume(store, results_uri, manifest=manifest)
            if choice is None:
                failure = NoCandidate("checkpoint to resume from", results_uri, [
                    (e.path, e.problem or f"{e.kind} file") for e in manifest.entries
                ], manifest.files_seen)
        else:
            choice = choose_parent(
                store, results_uri, skill=skill, metric=metric, direction=direction, epoch=epoch, step=step,
                latest=latest, manifest=manifest,
            )
    except NoCandidate as exc:
        failure = exc
    rejected = choice.rejected if choice else (failure.rejected if failure else [])
    out = Console(highlight=False)
    if not out.is_terminal:
        out.width = max(out.width, 160)  # piped: keep paths readable, the URI line is printed apart
    out.print(manifest_table(manifest, choice, rejected))
    if failure is not None:
        raise failure
    assert choice is not None
    typer.echo(choice.uri)

