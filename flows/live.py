"""A rich live table in the terminal while a pipeline runs in this process."""

from __future__ import annotations

import threading
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from flows.parameters import PipelineParameters
from taoflow.launchers.base import EpochProgress, Event, Finished
from taoflow.runs import ActionRun


class StepBoard:
    """Per-action status lines fed by the run_action task's events."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.rows: dict[str, dict[str, str]] = {}
        self.lock = threading.Lock()

    def on_event(self, run: ActionRun, event: Event) -> None:
        with self.lock:
            row = self.rows.setdefault(run.action, {"status": "RUNNING", "progress": "", "kpi": ""})
            if isinstance(event, EpochProgress):
                eta = (event.eta or "").split(".")[0]  # TAO writes H:MM:SS.ffffff
                row["progress"] = f"epoch {event.epoch + 1}/{event.max_epoch + 1}" + (f"  ETA {eta}" if eta else "")
                row["kpi"] = ", ".join(
                    f"{k}={v:.4g}" for k, v in sorted(event.kpi.items()) if isinstance(v, (int, float))
                )
            elif isinstance(event, Finished):
                row["status"] = event.status

    def table(self) -> Table:
        table = Table(title=f"{self.model} pipeline", expand=False)
        for column in ("action", "status", "progress", "KPIs"):
            table.add_column(column)
        with self.lock:
            for action, row in self.rows.items():
                table.add_row(action, row["status"], row["progress"], row["kpi"])
        return table


def run_with_live_display(model: str, parameters: PipelineParameters, console: Console) -> dict[str, Any]:
    from flows import model_flow
    from tasks.progress import subscribe

    flow_fn, _ = model_flow(model)
    board = StepBoard(model)
    unsubscribe = subscribe(board.on_event)
    try:
        with Live(board.table(), console=console, refresh_per_second=4, transient=False) as live:
            stop = threading.Event()

            def refresh() -> None:
                while not stop.wait(0.25):
                    live.update(board.table())

            refresher = threading.Thread(target=refresh, daemon=True)
            refresher.start()
            try:
                summary = flow_fn(parameters)
            finally:
                stop.set()
                live.update(board.table())
    finally:
        unsubscribe()
    print_summary(summary, console)
    return summary


def print_summary(summary: dict[str, Any], console: Console) -> None:
    console.print()
    table = Table(title=f"{summary['model']} results")
    for column in ("step", "status", "results", "KPIs"):
        table.add_column(column, overflow="fold")
    for name, res in summary["results"].items():
        kpis = res.get("kpis_best") or res.get("kpis_final") or {}
        table.add_row(
            name, res["status"] + (" (cached)" if res.get("cached") else ""), res["results_uri"],
            ", ".join(f"{k}={v:.4g}" for k, v in sorted(kpis.items())),
        )
    console.print(table)
    for skipped in summary.get("skipped", []):
        console.print(f"[yellow]skipped[/yellow] {skipped['action']}: {skipped['reason']}")


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
        unsubscribe()
    return summary, latest["rows"]
