"""What the terminal shows while a pipeline runs in this process, and after: a live table with one row per
step (per-role conversions and the AutoML train step included), retries with their reason, cached and
EMULATED steps labelled, then a summary that fits an 80-column terminal — paths are printed on lines of
their own, never folded inside a table cell, so they can be copied."""

from __future__ import annotations

import textwrap
import threading
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from taoflow.launchers.base import Cached, EpochProgress, Event, Finished, LogLine, Retrying
from taoflow.runs import ActionRun

EMULATOR_BANNER = "[EMULATED]"  # the emulator's first log line starts with it (taoflow/emulator/cli.py)


def step_name(run: ActionRun) -> str:
    """The plan's step name of a run: `dataset_convert[eval]` for per-role runs (their results folder is
    `dataset_convert-eval`, see planner._results_folder), else the action; a run given a label of its own
    (the champion's evaluate during a promotion) goes by that label."""
    from tasks.progress import run_label

    label = run_label(run.run_key)
    if label:
        return label
    folder = run.results_uri.rstrip("/").rsplit("/", 1)[-1]
    prefix = run.action + "-"
    return f"{run.action}[{folder[len(prefix):]}]" if folder.startswith(prefix) else run.action


@dataclass
class StepRow:
    status: str = "pending"
    progress: str = ""
    kpi: str = ""
    emulated: bool = False
    cached: bool = False
    retries: list[Retrying] = field(default_factory=list)

    def label(self) -> str:
        return " ".join([self.status] + (["cached"] if self.cached else []) + (["EMULATED"] if self.emulated else []))


def _kpis(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in sorted(values.items()) if isinstance(v, (int, float)))


class StepBoard:
    """Rows fed by the run_action task's events (tasks.progress) and the AutoML sweep's trials; under them,
    how train runs (the train action policy in force) and a warning when AutoML was asked for but cannot run."""

    def __init__(self, model: str, steps: list[str] | None = None, trials_budget: int | None = None,
                 training: str | None = None, warning: str | None = None) -> None:
        self.model = model
        self.rows: dict[str, StepRow] = {name: StepRow() for name in steps or []}
        self.trials_budget = trials_budget
        self.training = training
        self.warning = warning
        self.lock = threading.Lock()
        if trials_budget and "train" in self.rows:  # the sweep's row says so before its first trial starts
            self.rows["train"].progress = f"AutoML 0/{trials_budget} trials"

    def on_event(self, run: ActionRun, event: Event) -> None:
        with self.lock:
            row = self.rows.setdefault(step_name(run), StepRow())
            if row.status == "pending" or row.status.startswith("retry"):
                row.status = "RUNNING"
            if isinstance(event, EpochProgress):
                eta = (event.eta or "").split(".")[0] if event.epoch < event.max_epoch else ""  # H:MM:SS.ffffff
                row.progress = f"epoch {event.epoch + 1}/{event.max_epoch + 1}" + (f" ETA {eta}" if eta else "")
                row.kpi = _kpis(event.kpi)
            elif isinstance(event, LogLine) and event.text.startswith(EMULATOR_BANNER):
                row.emulated = True
            elif isinstance(event, Cached):
                row.status, row.cached, row.emulated = "SUCCESS", True, event.emulated
                row.progress = ""
            elif isinstance(event, Retrying):
                row.retries.append(event)
                row.status = f"retry {event.attempt + 1}/{event.max_attempts}"
                row.progress = event.reason.splitlines()[0] if event.reason else ""
            elif isinstance(event, Finished):
                row.status = event.status

    def on_trials(self, model: str, trials: list[dict[str, Any]]) -> None:
        """The AutoML sweep stands in for `train`: one row with the trials' progress and the best value."""
        with self.lock:
            row = self.rows.setdefault("train", StepRow())
            done = sum(1 for t in trials if t["state"] in ("COMPLETE", "PRUNED", "FAIL"))
            running = sum(1 for t in trials if t["state"] in ("RUNNING", "PRUNING"))
            budget = self.trials_budget or len(trials)
            row.status = "RUNNING" if done < budget else "SUCCESS"
            row.progress = f"AutoML {done}/{budget} trials" + (f", {running} running" if running else "")
            values = [t["value"] for t in trials if t["state"] == "COMPLETE" and t.get("value") is not None]
            row.kpi = f"trials {min(values):.4g}..{max(values):.4g}" if values else ""

    def settle(self, summary: dict[str, Any]) -> None:
        """Final states from the summary (a step answered from a cache may have sent no event at all)."""
        with self.lock:
            for name, res in summary.get("results", {}).items():
                row = self.rows.setdefault(name, StepRow())
                row.status = res["status"]
                row.cached = row.cached or bool(res.get("cached"))
                row.emulated = row.emulated or bool(res.get("emulated"))
                kpis = _kpis(res.get("kpis_best") or res.get("kpis_final") or {})
                row.kpi = kpis or row.kpi  # a sweep's row ends with its best trial's KPIs

    def table(self, width: int = 80) -> Table:
        """The board for a terminal `width` wide: step and status are never cut; progress and KPIs give way
        (ellipsis)."""
        with self.lock:
            rows = [(name, row.label(), row.progress, row.kpi) for name, row in self.rows.items()]
        step_w = max([len(r[0]) for r in rows] + [4])
        status_w = max([len(r[1]) for r in rows] + [6])
        progress_w = min(max([len(r[2]) for r in rows] + [8]), 24)
        kpi_w = max(width - step_w - status_w - progress_w - 13, 8)  # 13: borders and padding of 4 columns
        table = Table(title=Text(f"{self.model} pipeline"), title_justify="left", expand=False)
        table.add_column("step", no_wrap=True, width=step_w)
        table.add_column("status", no_wrap=True, width=status_w)
        table.add_column("progress", no_wrap=True, overflow="ellipsis", width=progress_w)
        table.add_column("KPIs", no_wrap=True, overflow="ellipsis", max_width=kpi_w)
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))
        return table

    def view(self, width: int = 80) -> Group:
        """The table, then the training line and the warning (each wraps at the terminal's width)."""
        parts: list[Any] = [self.table(width)]
        if self.training:  # wrapped here: the CLI's console soft-wraps, and a live display crops long lines
            parts.append(Text(textwrap.fill(self.training, width)))
        if self.warning:
            parts.append(Text(textwrap.fill(f"warning: {self.warning}", width), style="yellow"))
        return Group(*parts)

    def retry_notes(self) -> list[str]:
        """Every retry with its reason and remedy, so they stay on screen after the step succeeded."""
        notes = []
        with self.lock:
            for name, row in self.rows.items():
                for r in row.retries:
                    notes.append(f"{name}: attempt {r.attempt}/{r.max_attempts} failed: {r.reason}"
                                 + (f"\n  remedy: {r.remedy}" if r.remedy else ""))
        return notes


def run_with_live_display(model: str, parameters: Any, console: Console, steps: list[str] | None = None
                          ) -> dict[str, Any]:
    from flows import model_flow
    from tasks.progress import subscribe, subscribe_trials

    flow_fn, _ = model_flow(model)
    board = pipeline_board(model, parameters, steps)
    unsubscribe = [subscribe(board.on_event), subscribe_trials(board.on_trials)]
    try:
        with Live(board.view(console.width), console=console, refresh_per_second=4, transient=False) as live:
            stop = threading.Event()

            def refresh() -> None:
                while not stop.wait(0.25):
                    live.update(board.view(console.width))

            refresher = threading.Thread(target=refresh, daemon=True)
            refresher.start()
            try:
                summary = flow_fn(parameters)
                board.settle(summary)
            finally:
                stop.set()
                live.update(board.view(console.width))
    finally:
        if not console.is_terminal:
            console.line()  # rich ends a live display with a newline on terminals only
        for undo in unsubscribe:
            undo()
        for note in board.retry_notes():
            console.print(f"[yellow]retried[/yellow] {escape(note)}", highlight=False)
    print_summary(summary, console)
    return summary


def pipeline_board(model: str, parameters: Any, steps: list[str] | None = None) -> StepBoard:
    """The board of a pipeline run: one row per planned step, and how train runs (the train action policy in
    force, taoflow/automl/policy.py) when the plan trains."""
    from taoflow.automl.policy import resolve_policy
    from taoflow.skill import load_skill

    automl = parameters.automl
    policy = resolve_policy(load_skill(model), automl.policy)
    if steps is not None and "train" not in steps:
        return StepBoard(model, steps)
    training = policy.describe(automl.max_trials, automl.max_concurrent)
    if policy.hint:
        training += f"; {policy.hint}"
    return StepBoard(model, steps, trials_budget=automl.max_trials if policy.sweep else None,
                     training=training, warning=policy.notice)


def status_label(result: dict[str, Any]) -> str:
    return " ".join([result["status"]] + (["cached"] if result.get("cached") else [])
                    + (["EMULATED"] if result.get("emulated") else []))


def print_summary(summary: dict[str, Any], console: Console) -> None:
    console.print()
    table = Table(title=Text(f"{summary['model']} results"), title_justify="left")
    names = list(summary["results"])
    step_w = max([len(n) for n in names] + [4])
    status_w = max([len(status_label(r)) for r in summary["results"].values()] + [6])
    table.add_column("step", no_wrap=True, width=step_w)
    table.add_column("status", no_wrap=True, width=status_w)
    table.add_column("KPIs", max_width=max(console.width - step_w - status_w - 10, 8))  # wraps between KPIs
    for name, res in summary["results"].items():
        kpis = res.get("kpis_best") or res.get("kpis_final") or {}
        table.add_row(Text(name), Text(status_label(res)), Text(_kpis(kpis)))
    console.print(table)
    for skipped in summary.get("skipped", []):
        console.print(f"[yellow]skipped[/yellow] {escape(skipped['action'])}: {escape(skipped['reason'])}")
    print_training(summary.get("training"), console)
    print_locations(summary, console)


def print_training(training: dict[str, Any] | None, console: Console) -> None:
    """For a sweep: which trial won, and whether this run launched any (a rerun answers from the study)."""
    sweep = (training or {}).get("sweep")
    if not sweep or sweep.get("best_value") is None:
        return
    launched = (f"{sweep['launched']} launched by this run" if sweep["launched"]
                else "none launched: answered from the study" + ("'s finished record" if sweep.get("record") else ""))
    console.print(f"AutoML: best trial {sweep['best_trial']} of {sweep['trials']} ({sweep['metric']}="
                  f"{sweep['best_value']:.4g}; {launched}), study {sweep['study']}",
                  markup=False, highlight=False, soft_wrap=True)


def print_locations(summary: dict[str, Any], console: Console) -> None:
    """Where each step's results and the model card are: one path per line, never folded."""
    store = summary.get("store")
    if not summary["results"]:
        return
    console.print("results:", highlight=False)
    width = max(len(name) for name in summary["results"])
    for name, res in summary["results"].items():
        console.print(f"  {name:<{width}}  {res['results_uri']}", markup=False, highlight=False, soft_wrap=True)
    if store:
        card = f"{store.rstrip('/')}/runs/{summary['model']}/MODEL_CARD.md"
        console.print(f"model card: {card}", markup=False, highlight=False, soft_wrap=True)


def print_promotion(summary: dict[str, Any], console: Console) -> bool | None:
    """The warm start and the promotion's outcome, after the results: True promoted (or already the champion),
    False not promoted (each reason on its own line, with its numbers), None when no promotion was asked."""
    warm = summary.get("warm_start")
    if warm:
        start = (f"the {summary['model']}/{warm['name']} champion {warm['champion']}" if warm.get("checkpoint")
                 else f"the pretrained model ({summary['model']}/{warm['name']} has no champion yet)")
        console.print(f"warm start: trained from {start}", markup=False, highlight=False, soft_wrap=True)
    promotion = summary.get("promotion")
    if not promotion:
        return None
    where = f"{promotion['model']}/{promotion['name']}"
    if promotion["promoted"]:
        what = "promoted" if promotion["recorded"] else "already the champion"
        console.print(f"[green]{what}[/green]: {escape(promotion['challenger'])} is the champion of "
                      f"{escape(where)} (registry event #{promotion['seq']})", highlight=False)
    else:
        console.print(f"[yellow]not promoted[/yellow] to {escape(where)}; the champion stays "
                      f"{escape(str(promotion['champion']))}:", highlight=False)
        for reason in promotion["reasons"]:
            console.print(f"  - {reason}", markup=False, highlight=False, soft_wrap=True)
    if promotion.get("deployable"):
        console.print(f"champion engine: {promotion['deployable']}", markup=False, highlight=False, soft_wrap=True)
    return bool(promotion["promoted"])


def trials_table(model: str, rows: list[dict[str, Any]]) -> Table:
    from taoflow.automl.report import trials_table as build  # 80 columns wide (AutoML's own module)

    return build(model, rows)


def run_with_trials_display(run, console: Console) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run `run()` (a sweep) while a live table shows its trials; returns its summary and the last rows."""
    from tasks.progress import subscribe_trials

    latest: dict[str, Any] = {"model": "", "rows": []}
    lock = threading.Lock()

    def on_rows(model: str, rows: list[dict[str, Any]]) -> None:
        with lock:
            latest.update(model=model, rows=rows)

    unsubscribe = subscribe_trials(on_rows)
    try:
        with Live(trials_table("", []), console=console, refresh_per_second=4) as live:
            stop = threading.Event()

            def refresh() -> None:
                while not stop.wait(0.25):
                    with lock:
                        live.update(trials_table(latest["model"], latest["rows"]))

            threading.Thread(target=refresh, daemon=True).start()
            try:
                summary = run()
            finally:
                stop.set()
                with lock:
                    live.update(trials_table(latest["model"], latest["rows"]))
    finally:
        if not console.is_terminal:
            console.line()
        unsubscribe()
    return summary, latest["rows"]
