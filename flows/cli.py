"""The `taoflow` console script: the engine's commands plus the Prefect-backed `run`, `demo` and `tune`."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console

from taoflow.automl.policy import DEFAULT_CONCURRENCY, DEFAULT_TRIALS, check_policy
from taoflow.cli import app, run_cli
from taoflow.dotted import parse_assignment, parse_assignments
from taoflow.errors import UserError

console = Console(soft_wrap=True)
NOT_PROMOTED = 3  # exit code: the run succeeded, the promotion gate said no (scripts branch on it)


def parse_data(items: list[str]) -> dict[str, str]:
    data: dict[str, str] = {}
    for item in items:
        role, sep, uri = item.partition("=")
        if not sep or not role or not uri:
            raise UserError(f"--data takes ROLE=URI (e.g. train=s3://bucket/train), got {item!r}")
        data[role.strip()] = _absolute(uri.strip())
    return data


def _absolute(uri: str) -> str:
    return uri if "://" in uri else str(Path(uri).expanduser().resolve())


def parse_sets(items: list[str], actions: list[str]) -> dict[str, dict[str, Any]]:
    """`--set ACTION.KEY=VALUE`: the first segment names the action (`*` for all); a key whose first
    segment is not an action of the model applies to every action (e.g. `dataset.num_classes=5`)."""
    overrides: dict[str, dict[str, Any]] = {}
    for item in items:
        key, value = parse_assignment(item)
        head, _, rest = key.partition(".")
        if (head in actions or head == "*") and rest:
            overrides.setdefault(head, {})[rest] = value
        else:
            overrides.setdefault("*", {})[key] = value
    return overrides


@app.command("run")
def run_command(
    model: str = typer.Argument(..., help="rtdetr, centerpose, action_recognition, sparse4d, nvpanoptix3d"),
    data: list[str] = typer.Option([], "--data", help="ROLE=URI (train, eval, inference, calibration)."),
    actions: str | None = typer.Option(None, "--actions", help="Comma-separated actions to run."),
    sets: list[str] = typer.Option([], "--set", help="ACTION.KEY=VALUE spec override (repeatable)."),
    launcher: str = typer.Option("local", "--launcher", help="local | docker | kubernetes | workpool"),
    launcher_options: list[str] = typer.Option(
        [], "--launcher-option", help="KEY=VALUE launcher setting, e.g. namespace=tao (repeatable)."
    ),
    store: str | None = typer.Option(None, "--store", help="Artifact store root (path or s3://)."),
    ptm: str | None = typer.Option(None, "--ptm", help="Pretrained model URI."),
    emulate: bool | None = typer.Option(None, "--emulate/--no-emulate", help="Force the TAO emulator."),
    gpus: int = typer.Option(1, "--gpus"),
    nodes: int = typer.Option(1, "--nodes"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and every spec; run nothing."),
    automl: str | None = typer.Option(
        None, "--automl", metavar="on|off",
        help="Train action policy for this run: on (or auto) trains through an AutoML sweep, off trains directly "
        "(default: the model's, on)."),
    trials: int = typer.Option(DEFAULT_TRIALS, "--trials", help="AutoML: trials in all."),
    concurrency: int = typer.Option(DEFAULT_CONCURRENCY, "--concurrency", help="AutoML: trials at once (GPU budget)."),
    sampler: str = typer.Option("auto", "--sampler", help="auto | gp | tpe | random | grid (auto: gp up to 8 params, else tpe)"),
    pruner: str | None = typer.Option(None, "--pruner", help="asha | hyperband | none (default: asha)"),
    max_epochs: int | None = typer.Option(None, "--max-epochs"),
    seed: int = typer.Option(0, "--seed"),
    params: list[str] = typer.Option([], "--param", help="KEY=LOW:HIGH[:log] or KEY=a,b,c"),
    space: str = typer.Option("default", "--space", help="default: AutoML parameters + --param; none: --param only"),
    storage: str | None = typer.Option(None, "--storage", help="Optuna storage URL."),
    warm_start: str | None = typer.Option(
        None, "--warm-start", metavar="NAME",
        help="Train from the champion of registry name NAME (its checkpoint as the PTM); --ptm while it has none."),
    promote: str | None = typer.Option(
        None, "--promote", metavar="NAME",
        help="Last step: promote the model to registry name NAME (e.g. prod) if it beats the champion on the same "
        "eval data by the margin and its TensorRT engine keeps parity. Not promoted: exit 3."),
    promote_margin: float = typer.Option(
        0.0, "--promote-margin", help="How much the metric must beat the champion's by (KPI units; 0.01 = one mAP "
        "point; 0: strictly better)."),
    parity_tolerances: list[str] = typer.Option(
        [], "--parity-tolerance", metavar="PRECISION=VALUE",
        help="Allowed |TensorRT - PyTorch| for an engine precision (defaults fp32=0.005 fp16=0.01 int8=0.03)."),
    max_engine_mb: float | None = typer.Option(
        None, "--max-engine-mb", help="Largest TensorRT engine to promote, in MB (10^6 bytes)."),
) -> None:
    """Run a model's pipeline (dataset_convert → train → evaluate → export → quantize → engine), and with
    --promote NAME promote its model in the registry if the gate passes. Train is an AutoML sweep (8 trials,
    4 at a time, unless --trials / --concurrency say otherwise); --automl off trains directly.

    Exit codes: 0 the run succeeded (and, with --promote, the model was promoted or already was the champion);
    1 an action failed; 2 bad input, a preflight problem, or a promotion that cannot be decided (nothing was
    started or recorded); 3 the run succeeded but the model was not promoted (the reasons are printed).
    """
    options = {
        "data": data, "actions": actions, "sets": sets, "ptm": ptm, "store": store, "warm_start": warm_start,
        "promotion": {"name": promote, "margin": promote_margin,
                      "parity_tolerances": parse_tolerances(parity_tolerances), "max_engine_mb": max_engine_mb},
        "launcher": {"name": launcher, "emulate": emulate, "gpus": gpus, "nodes": nodes,
                     "options": parse_assignments(launcher_options)},
        "automl": {"policy": check_policy(automl), "max_trials": trials, "max_concurrent": concurrency,
                   "sampler": sampler, "pruner": pruner, "max_epochs": max_epochs, "seed": seed,
                   "parameters": params, "space": space, "storage": storage},
    }
    if dry_run:
        from flows.dry_run import print_dry_run

        print_dry_run(model, build_parameters(model, **options), console)
        return
    steps = preflight_command(model, **options)
    from flows.cli_runtime import quiet_prefect_console, run_guarded, start_prefect

    start_prefect(console, _flow_module(model))
    parameters = build_parameters(model, **options)
    from flows.live import print_promotion, run_with_live_display

    quiet_prefect_console()
    summary = run_guarded(lambda: run_with_live_display(model, parameters, console, steps=steps))
    if print_promotion(summary, console) is False:
        raise typer.Exit(NOT_PROMOTED)


def parse_tolerances(items: list[str]) -> dict[str, float]:
    tolerances: dict[str, float] = {}
    for item in items:
        precision, sep, value = item.partition("=")
        try:
            tolerances[precision.strip().lower()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not precision.strip():
            raise UserError(f"--parity-tolerance takes PRECISION=VALUE (e.g. int8=0.02), got {item!r}")
    return tolerances


def preflight_command(model: str, *, data: list[str], actions: str | None, sets: list[str], ptm: str | None,
                      store: str | None, launcher: dict[str, Any], automl: dict[str, Any],
                      warm_start: str | None = None, promotion: dict[str, Any] | None = None) -> list[str]:
    """Everything a run needs, checked on the CPU before Prefect is imported or a server started: datasets,
    every planned spec, the store (reachable, writable), the launcher (TAO or the emulator, docker daemon,
    Kubernetes configuration, credentials, images). Every problem at once, each once; returns the plan's
    step names (the live board's rows)."""
    from flows.parameters import PipelineParameters  # pydantic only: no Prefect import
    from taoflow.checks import check_pipeline
    from taoflow.skill import load_skill

    skill = load_skill(model)
    try:
        generic = PipelineParameters(
            datasets=parse_data(data),
            actions=[a.strip() for a in actions.split(",") if a.strip()] if actions else None,
            overrides=parse_sets(sets, list(skill.actions)), pretrained_model=ptm, store=store,
            launcher=launcher, automl=automl, warm_start=warm_start, promotion=promotion or {},
        )
    except ValidationError as exc:
        raise UserError("invalid options", [
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        ]) from None
    try:
        plan = check_pipeline(skill, generic.to_request(model), generic.launcher.name, generic.launcher.options,
                              promotion=generic.promotion.to_request(), warm_start=generic.warm_start,
                              sweep=generic.automl.sweep_options())
    except UserError as exc:
        exc.hint = (f"`taoflow sample-data {model} DIR` writes a valid dataset of every role; "
                    f"`taoflow run {model} ... --dry-run` prints the plan and every spec")
        raise
    return [step.name for step in plan.steps]


def _flow_module(model: str) -> str | None:
    from flows import MODEL_FLOWS

    return MODEL_FLOWS[model][0] if model in MODEL_FLOWS else None


def build_parameters(model: str, *, data: list[str], actions: str | None, sets: list[str], ptm: str | None,
                     store: str | None, launcher: dict[str, Any], automl: dict[str, Any],
                     warm_start: str | None = None, promotion: dict[str, Any] | None = None):
    """The model flow's parameters from command-line values."""
    from flows import MODEL_FLOWS, model_flow
    from taoflow.skill import load_skill

    skill = load_skill(model)
    if model not in MODEL_FLOWS:
        raise UserError(f"no pipeline flow for {model!r}")
    from flows.parameters import datasets_model

    _, params_cls = model_flow(model)
    try:
        # The roles the flow's `datasets` parameter has (the UI form's fields): a misspelt role is refused.
        datasets = datasets_model(model)(**parse_data(data)).model_dump(exclude_none=True)
        return params_cls(
            datasets=datasets,
            actions=[a.strip() for a in actions.split(",") if a.strip()] if actions else None,
            overrides=parse_sets(sets, list(skill.actions)),
            pretrained_model=ptm,
            store=store,
            launcher=launcher,
            automl=automl,
            warm_start=warm_start,
            promotion=promotion or {},
        )
    except ValidationError as exc:
        raise UserError("invalid options", [
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        ]) from None


@app.command("tune")
def tune_command(
    model: str = typer.Argument(..., help="rtdetr, centerpose, action_recognition, sparse4d, nvpanoptix3d"),
    data: list[str] = typer.Option([], "--data", help="ROLE=URI (train, eval, ...)."),
    sets: list[str] = typer.Option([], "--set", help="ACTION.KEY=VALUE spec override (repeatable)."),
    trials: int = typer.Option(DEFAULT_TRIALS, "--trials", help="Trials in all (the budget)."),
    concurrency: int = typer.Option(DEFAULT_CONCURRENCY, "--concurrency", help="Trials running at once (the GPU budget)."),
    sampler: str = typer.Option("auto", "--sampler", help="auto | gp | tpe | random | grid (auto: gp up to 8 params, else tpe)"),
    pruner: str | None = typer.Option(
        None, "--pruner", help="asha | hyperband | none (default: asha, pruning only at rungs that rank trials as their ends do)"
    ),
    max_epochs: int | None = typer.Option(None, "--max-epochs"),
    seed: int = typer.Option(0, "--seed"),
    params: list[str] = typer.Option([], "--param", help="KEY=LOW:HIGH[:log] or KEY=a,b,c"),
    space: str = typer.Option("default", "--space", help="default: the model's AutoML parameters, extended by "
                              "--param (a key already there gets the --param range); none: only the --param ranges"),
    storage: str | None = typer.Option(None, "--storage", help="Optuna storage URL (default SQLite)."),
    resume: bool = typer.Option(False, "--resume", help="Attach to the existing study (the default "
                                "whenever the same sweep runs again; kept for scripts that say so)."),
    launcher: str = typer.Option("local", "--launcher"),
    store: str | None = typer.Option(None, "--store"),
    ptm: str | None = typer.Option(None, "--ptm"),
    emulate: bool | None = typer.Option(None, "--emulate/--no-emulate"),
    gpus: int = typer.Option(1, "--gpus"),
) -> None:
    """Run an AutoML sweep (train only) with a live trials table; prints the best trial."""
    from taoflow.automl.policy import resolve_policy
    from taoflow.skill import PIPELINE_ORDER, load_skill

    skill = load_skill(model)
    policy = resolve_policy(skill, "on")
    if not policy.sweep:
        raise UserError(policy.warning or f"{model} has no AutoML (skills/{model}/skill.yaml: automl.enabled)")
    upto = [a for a in PIPELINE_ORDER[: PIPELINE_ORDER.index("train") + 1] if a in skill.actions]
    options = {
        "data": data, "sets": sets, "ptm": ptm, "store": store,
        "launcher": {"name": launcher, "emulate": emulate, "gpus": gpus},
        "automl": {"policy": "on", "max_trials": trials, "max_concurrent": concurrency, "sampler": sampler,
                   "pruner": pruner, "max_epochs": max_epochs, "seed": seed, "parameters": params,
                   "space": space, "storage": storage},
    }
    preflight_command(model, actions=",".join(upto), **options)
    from taoflow.automl.report import space_summary
    from taoflow.automl.space import build_space

    console.print(space_summary(build_space(model, params, base=space)), highlight=False)  # bad ranges fail here
    from flows.cli_runtime import quiet_prefect_console, run_guarded, start_prefect

    start_prefect(console, "flows.automl")
    parameters = build_parameters(model, actions=None, **options)
    from flows.automl import tao_automl_sweep
    from flows.live import print_summary, run_with_trials_display

    quiet_prefect_console()
    summary, rows = run_guarded(lambda: run_with_trials_display(lambda: tao_automl_sweep(model, parameters),
                                                                console))
    print_summary(summary, console)
    from taoflow.automl.report import best_summary

    console.print(best_summary(model, rows), highlight=False, markup=False)


@app.command("demo")
def demo_command(
    model: str = typer.Argument("rtdetr"),
    directory: Path = typer.Option(Path("taoflow-demo"), "--dir", help="Where sample data and results go."),
) -> None:
    """Write sample data and run the full pipeline on the TAO emulator."""
    from flows.demo import run_demo

    run_demo(model, directory, console)


server_app = typer.Typer(help="The local Prefect server taoflow starts once and reuses (see README).",
                         no_args_is_help=True)
app.add_typer(server_app, name="server")


@server_app.command("status")
def server_status_command() -> None:
    """Whether the local Prefect server runs, its URL (API and UI), its home and its log."""
    from flows.server import status_lines

    for line in status_lines():
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@server_app.command("start")
def server_start_command() -> None:
    """Start the local Prefect server now (run, tune and demo start it when they need it)."""
    from flows.server import ensure_server, log_path

    url = ensure_server(lambda message: console.print(message, markup=False, highlight=False))
    console.print(f"local Prefect server: {url} (UI {url.removesuffix('/api')}); log {log_path()}",
                  markup=False, highlight=False, soft_wrap=True)


@server_app.command("stop")
def server_stop_command() -> None:
    """Stop the local Prefect server (its runs stay in its database; the next command starts it again)."""
    from flows.server import stop_server

    pids = stop_server()
    console.print(f"stopped the local Prefect server (pid {', '.join(map(str, pids))})" if pids
                  else "the local Prefect server was not running", highlight=False)


def main() -> None:
    import taoflow.cli

    taoflow.cli._register()
    # Keep the terminal for tao-flows' own display: Prefect's records stay off it (flows/cli_runtime.py:
    # quiet_prefect_console; warnings go to the command log) yet reach the Prefect API at Prefect's own
    # level, so the UI shows each run's log. Prefect never starts an embedded server of its own: it would be
    # orphaned whenever the command is killed (flows/server.py runs the shared one).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ["PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"] = "false"
    sys.exit(run_cli())
