"""`taoflow models list|show|rollback`: the model registry (champions per model and name) in the artifact store.

`show` prints a name's history, then the champion's engine URI alone on the last line, so a deployment script
can `tail -1`. Unknown models and names, and a champion whose files were deleted, are user errors (exit 2).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from taoflow.cli import app
from taoflow.errors import UserError
from taoflow.promotion import MetricRule, find_kpi
from taoflow.registry import ModelRegistry, ModelVersion, RegistryEvent
from taoflow.skill import load_skill

models_app = typer.Typer(help="The model registry: champions per model and name, their history, rollback.",
                         no_args_is_help=True)
app.add_typer(models_app, name="models")

StoreOption = Annotated[str | None, typer.Option(
    "--store", help="Artifact store root (path or s3://); default $TAOFLOW_STORE, else ./.taoflow.")]


def _console() -> Console:
    out = Console(highlight=False)
    if not out.is_terminal:
        out.width = max(out.width, 200)  # piped: keep rows readable; the URI line is printed apart
    return out


def _rule(model: str) -> MetricRule | None:
    """The model's promotion metric; None for a model whose skill is not installed here (listed anyway)."""
    try:
        return MetricRule.for_skill(load_skill(model))
    except UserError:
        return None


def _kpi(version: ModelVersion | None, rule: MetricRule | None, *, tensorrt: bool = False) -> str:
    if version is None or rule is None:
        return ""
    kpis = version.kpis_tensorrt if tensorrt else version.kpis_pytorch
    found = find_kpi(kpis or {}, rule, model=version.model, tensorrt=tensorrt)
    return f"{found[0]} {found[1]:.4f}" if found else ""


@models_app.command("list")
def list_models(store: StoreOption = None) -> None:
    """A row per model and name: its champion, the champion's metric and engine, the last event."""
    registry = ModelRegistry(store)
    states = registry.names()
    if not states:
        typer.echo(f"no models registered in {registry.store.root}")
        return
    table = Table(title=f"model registry in {registry.store.root}")
    for column in ("model", "name", "champion", "metric", "precision", "events", "last event", "engine"):
        table.add_column(column, overflow="fold")
    for state in states:
        champion, latest = state.champion, state.latest
        assert latest is not None
        rule = _rule(state.model)
        table.add_row(
            state.model, state.name, champion.version_id if champion else "(none)", _kpi(champion, rule),
            (champion.precision or "") if champion else "", str(state.seq), f"{latest.kind} {latest.at}",
            champion.deployable if champion else "",
        )
    _console().print(table)


def _history_table(model: str, name: str, events: list[RegistryEvent], rule: MetricRule) -> Table:
    table = Table(title=f"{model}/{name}: {len(events)} events")
    for column in ("#", "when (UTC)", "event", "version", "PyTorch", "TensorRT", "precision", "by", "reason"):
        table.add_column(column, overflow="fold", no_wrap=column in ("#", "event"))
    for event in events:
        subject = event.subject
        champion_now = event.kind != "rejected"
        table.add_row(
            str(event.seq), event.at, event.kind, subject.version_id if subject else "",
            _kpi(subject, rule), _kpi(subject, rule, tensorrt=True), (subject.precision or "") if subject else "",
            event.by, event.reason, style="bold" if champion_now else "dim",
        )
    return table


@models_app.command("show")
def show(
    model: Annotated[str, typer.Argument(help="Model (skill) name, e.g. rtdetr.")],
    name: Annotated[str, typer.Argument(help="Registry name, e.g. prod.")],
    store: StoreOption = None,
) -> None:
    """The name's history (promotions, rejections, rollbacks), then the champion's engine URI on the last line."""
    rule = MetricRule.for_skill(load_skill(model))
    registry = ModelRegistry(store)
    events = registry.history(model, name)
    out = _console()
    out.print(_history_table(model, name, events, rule))
    champion = events[-1].champion
    if champion is None:
        raise UserError(f"{model}/{name} has no champion: every challenger so far was rejected")
    registry.require_files(champion, model, name, "champion")
    out.print(f"champion: {champion.version_id} ({_kpi(champion, rule) or 'no metric'}; "
              f"{champion.precision or 'no'} engine; checkpoint {champion.checkpoint})")
    typer.echo(champion.deployable)


@models_app.command("rollback")
def rollback(
    model: Annotated[str, typer.Argument(help="Model (skill) name, e.g. rtdetr.")],
    name: Annotated[str, typer.Argument(help="Registry name, e.g. prod.")],
    to: Annotated[str | None, typer.Option(
        "--to", help="A run key (6+ characters) of the former champion to restore; default: the previous one.")] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (recorded in the history).")] = None,
    store: StoreOption = None,
) -> None:
    """Make an earlier champion the champion again; prints its engine URI on the last line."""
    load_skill(model)
    event = ModelRegistry(store).rollback(model, name, to=to, reason=reason)
    assert event.champion is not None
    _console().print(f"{model}/{name}: event #{event.seq}: {event.reason}")
    typer.echo(event.champion.deployable)
