"""What a sweep tells a person: its search space, its trials (a table that fits 80 columns) and the best
trial as a ready `--set` line with the values that trial trained with.

The values come from the trial's spec (`trained_with`), after the skill's overrides, the dependency clamps
(`x-tao-depends-on`, e.g. RT-DETR's `num_select ≤ num_queries`) and anything the planner applied — not
from what the sampler proposed.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from typing import Any

from rich import box
from rich.table import Table

from taoflow.automl.space import SearchSpace

WIDTH = 80
MAX_ROWS = 24  # beyond this the table shows running trials, the best ones and the latest
PARAMS_OFFSET = 41  # columns before the parameters: 4 + 11 + 10 + 6 wide, and the padding between them


def space_summary(space: SearchSpace) -> str:
    """One paragraph: where each searched parameter comes from, and what `--param` did to the defaults."""
    lines = [f"search space: {len(space.params)} parameter(s); " + space.origin()]
    lines += [f"  {text}" for text in space.describe()]
    return "\n".join(lines)


def format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # the exact value trained with, not a rounding of it
    return str(value)


def set_line(trained_with: Mapping[str, Any], action: str = "train") -> str:
    """`--set train.KEY=VALUE ...` for `taoflow run` (the first part names the action the key belongs to)."""
    return " ".join(f"--set {shlex.quote(f'{action}.{key}={format_value(value)}')}"
                    for key, value in sorted(trained_with.items()))


def best_summary(model: str, rows: list[dict[str, Any]], *, metric: str | None = None,
                 direction: str | None = None) -> str:
    """The lines `taoflow tune` prints at the end: the best trial, the values it trained with as a ready
    `--set` line for `taoflow run`, and the GPU-epochs the sweep trained."""
    metric, direction = _metric(model, metric, direction)
    gpu = sum(int(r.get("gpu_epochs") or 0) for r in rows)
    done = [r for r in rows if r["state"] == "COMPLETE" and r.get("value") is not None]
    if not done:
        return f"no trial completed ({len(rows)} trial(s), {gpu} GPU-epochs trained); see the trials table"
    best = (max if direction == "maximize" else min)(done, key=lambda r: r["value"])
    return "\n".join([
        f"best trial {best['number']}: {metric} = {best['value']:.6g} ({direction}); {len(rows)} trial(s), "
        f"{gpu} GPU-epochs trained in all",
        "  trained with (its spec, after clamps and dependencies):",
        f"  {set_line(best.get('trained_with') or best['params'])}",
        f"  results: {best.get('results_uri')}",
        *_baseline_line(rows, best, metric),
    ])


def _baseline_line(rows: list[dict[str, Any]], best: Mapping[str, Any], metric: str) -> list[str]:
    """What the search gained over the baseline trial (the run's own values, what --automl off trains)."""
    base = next((r for r in rows if r.get("baseline")), None)
    if base is None or base.get("value") is None:
        return []
    if base["number"] == best["number"]:
        return ["  the best is the baseline trial: the run's own values (what --automl off trains) won"]
    return [f"  baseline trial {base['number']} (the run's own values, what --automl off trains): "
            f"{metric} = {base['value']:.6g}"]


def _metric(model: str, metric: str | None, direction: str | None) -> tuple[str, str]:
    """The sweep's metric and direction: as given, else the model's AutoML ones."""
    if model and (metric is None or direction is None):
        from taoflow.skill import load_skill

        automl = load_skill(model).automl
        metric, direction = metric or automl.metric, direction or automl.direction
    return metric or "value", direction or "maximize"


# ------------------------------------------------------------------------------------------------ table

def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return format_value(value)


def _params(row: Mapping[str, Any]) -> str:
    values = row.get("trained_with") or row.get("params") or {}
    return " ".join(f"{key.rsplit('.', 1)[-1]}={_short(value)}" for key, value in sorted(values.items()))


def _state(row: Mapping[str, Any], max_epochs: int | None) -> str:
    state = row["state"]
    if state in ("RUNNING", "PRUNING"):
        epochs = row.get("epochs") or 0
        return f"{'run' if state == 'RUNNING' else 'prune'} {epochs}/{max_epochs}" if max_epochs else state.lower()
    if state == "PRUNED":
        return f"pruned@{row.get('pruned_at_epoch') or row.get('epochs')}"
    return {"COMPLETE": "complete", "FAIL": "failed"}.get(state, state.lower())


def _shown(rows: list[dict[str, Any]], maximize: bool) -> tuple[list[dict[str, Any]], int]:
    """The rows that fit: all when few; else running ones, the best five, the baseline and the latest ones."""
    if len(rows) <= MAX_ROWS:
        return rows, 0
    running = [r for r in rows if r["state"] in ("RUNNING", "PRUNING")]
    done = [r for r in rows if r["state"] == "COMPLETE" and r.get("value") is not None]
    best = sorted(done, key=lambda r: r["value"], reverse=maximize)[:5]
    keep = {r["number"] for r in running + best} | {r["number"] for r in rows if r.get("baseline")}
    for row in reversed(rows):
        if len(keep) >= MAX_ROWS:
            break
        keep.add(row["number"])
    shown = [r for r in rows if r["number"] in keep]
    return shown, len(rows) - len(shown)


def trials_table(model: str, rows: list[dict[str, Any]], *, metric: str | None = None,
                 direction: str | None = None, width: int = WIDTH) -> Table:
    """The live trials table, at most `width` columns wide (long parameter lists end in an ellipsis).
    The metric and direction default to the model's AutoML ones."""
    metric, direction = _metric(model, metric, direction)
    shown, hidden = _shown(rows, direction == "maximize")
    done = [r for r in rows if r["state"] == "COMPLETE" and r.get("value") is not None]
    best = None
    if done:
        best = (max if direction == "maximize" else min)(done, key=lambda r: r["value"])["number"]
    gpu = sum(int(r.get("gpu_epochs") or 0) for r in rows)
    table = Table(title=f"{model} AutoML trials ({gpu} GPU-epochs)", box=box.SIMPLE, width=width,
                  title_justify="left", pad_edge=False)
    table.add_column("#", justify="right", width=4, no_wrap=True)
    table.add_column("state", width=11, no_wrap=True)
    table.add_column(metric[:10], justify="right", width=10, no_wrap=True)
    table.add_column("GPU-ep", justify="right", width=6, no_wrap=True)
    room = max(width - PARAMS_OFFSET, 10)
    table.add_column("parameters", width=room, no_wrap=True)
    for row in shown:
        value = row.get("value") if row.get("value") is not None else row.get("last_value")
        number = f"{row['number']}" + ("*" if row["number"] == best else "b" if row.get("baseline") else "")
        params = _params(row)
        table.add_row(number, _state(row, row.get("max_epochs")), "" if value is None else f"{value:.4g}",
                      str(row.get("gpu_epochs") or 0), params if len(params) <= room else params[: room - 1] + "…")
    marks = "* marks the best" + ("; b the baseline (the run's own values)" if any(r.get("baseline") for r in rows)
                                  else "")
    if hidden:
        table.caption = f"{hidden} more trial(s) not shown; {marks}"
    elif best is not None:
        table.caption = marks
    return table
