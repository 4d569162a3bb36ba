"""Prefect artifacts of a pipeline run: skipped actions, a KPI table per action, and the model card."""

from __future__ import annotations

import re
from typing import Any

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from taoflow.runs import ActionResult
from taoflow.store import ArtifactStore


def _key(model: str, what: str) -> str:
    """An artifact key: lower-case letters, digits and dashes (`dataset_convert[eval]` → `dataset-convert-eval`)."""
    return re.sub(r"[^a-z0-9]+", "-", f"{model}-{what}".lower()).strip("-")


def publish_skipped(model: str, skipped: list[tuple[str, str]]) -> None:
    if skipped:
        lines = "\n".join(f"- **{action}** skipped: {reason}" for action, reason in skipped)
        create_markdown_artifact(
            markdown=f"# {model}: actions skipped\n\n{lines}\n", key=_key(model, "skipped"),
            description="Actions asked for that this model does not have",
        )


def kpi_rows(results: dict[str, ActionResult]) -> list[dict[str, Any]]:
    rows = []
    for name, res in results.items():
        row: dict[str, Any] = {"action": name, "status": status_label(res), "emulated": res.emulated}
        row.update({f"final {k}": _fmt(v) for k, v in sorted(res.kpis_final.items())})
        row.update({f"best {k}": _fmt(v) for k, v in sorted(res.kpis_best.items())})
        rows.append(row)
    columns = sorted({k for row in rows for k in row}, key=lambda c: (c not in ("action", "status"), c))
    return [{c: row.get(c, "") for c in columns} for row in rows]


def status_label(res: ActionResult) -> str:
    """`SUCCESS (EMULATED, cached)`: an emulated result says so wherever its status is shown."""
    marks = [mark for mark, on in (("EMULATED", res.emulated), ("cached", res.cached)) if on]
    return res.status + (f" ({', '.join(marks)})" if marks else "")


def _fmt(value: Any) -> Any:
    return round(value, 5) if isinstance(value, float) else value


def publish_kpi_table(model: str, results: dict[str, ActionResult]) -> None:
    create_table_artifact(
        table=kpi_rows(results), key=_key(model, "kpis"), description=f"{model}: KPIs per action"
    )


def publish_result_links(model: str, results: dict[str, ActionResult]) -> None:
    """A link artifact per step to its results folder in the store (checkpoints, logs, ONNX, engines)."""
    for name, res in results.items():
        create_link_artifact(
            link=res.results_uri, link_text=f"{model} {name} results", key=_key(model, f"{name}-results"),
            description=f"{model} {name}: {res.status}" + (" (cached)" if res.cached else ""),
        )


def model_card(model: str, results: dict[str, ActionResult], skipped: list[tuple[str, str]], store: str,
               training: dict[str, Any] | None = None) -> str:
    emulated = any(r.emulated for r in results.values())
    lines = [f"# {model} model card", ""]
    if emulated:
        lines += ["> **EMULATED**: these results come from the tao-flows TAO emulator, not a GPU.", ""]
    lines += training_lines(training)
    lines += [f"Store: `{store}`", "", "| step | status | results | run key |", "|---|---|---|---|"]
    lines += [f"| {n} | {status_label(r)} | `{r.results_uri}` | `{r.run_key}` |" for n, r in results.items()]
    for name, res in results.items():
        lines += ["", f"## {name}" + (" (EMULATED)" if res.emulated else ""), ""]
        if res.kpis_best or res.kpis_final:
            kpis = ", ".join(f"{k} = {v:.4g}" for k, v in sorted((res.kpis_best or res.kpis_final).items()))
            lines += [f"KPIs ({'best' if res.kpis_best else 'final'}): {kpis}", ""]
        for kind, uri in sorted(res.products.items()):
            lines.append(f"- {kind}: `{uri}`")
        for entry in _checkpoints(res):
            lines.append(f"- checkpoint: `{entry}`")
    if skipped:
        lines += ["", "## Skipped", ""] + [f"- {a}: {why}" for a, why in skipped]
    return "\n".join(lines) + "\n"


def training_lines(training: dict[str, Any] | None) -> list[str]:
    """How the model was trained (flows.pipeline.training_summary): the train action policy in force and, for
    a sweep, which trial won; a warning when AutoML was asked for but could not run."""
    if not training:
        return []
    lines = []
    if training.get("warning"):
        lines += [f"> **Warning**: {training['warning']}.", ""]
    line = "Training: " + training["line"].removeprefix("train: ")
    sweep = training.get("sweep")
    if sweep:
        value = sweep["best_value"]
        line += (f"; the best trial is {sweep['best_trial']} of {sweep['trials']} ({sweep['metric']} = "
                 f"{value:.4g}, {sweep['direction']}), study `{sweep['study']}`" if value is not None else "")
        line += "; the train row is the best trial's run."
    lines += [line, ""]
    return lines


def _checkpoints(res: ActionResult) -> list[str]:
    entries = (res.manifest or {}).get("entries", [])
    return [e["uri"] for e in entries if e.get("kind") in ("checkpoint", "best") and e.get("uri")]


def publish_model_card(model: str, results: dict[str, ActionResult], skipped: list[tuple[str, str]],
                       store: ArtifactStore, training: dict[str, Any] | None = None) -> str:
    """The model card as a Prefect artifact and as `runs/<model>/MODEL_CARD.md` in the store."""
    markdown = model_card(model, results, skipped, store.root, training)
    create_markdown_artifact(markdown=markdown, key=_key(model, "model-card"), description=f"{model} model card")
    store.write_text_atomic(store.join(store.root, "runs", model, "MODEL_CARD.md"), markdown)
    return markdown
