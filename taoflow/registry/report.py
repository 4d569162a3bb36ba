"""The promotion report: champion and challenger side by side, every check of the gate with its numbers.

Plain markdown, so the flow can publish it as a Prefect artifact and a script can keep it beside the run.
A rejection starts with its reasons; the table compares the versions on the eval data of this run (the
champion's PyTorch KPI comes from its evaluation on that data, its TensorRT KPI from its own record).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taoflow.promotion import MetricRule, find_kpi
from taoflow.registry.core import PromotionOutcome
from taoflow.registry.records import ModelVersion


def _kpi(kpis: Mapping[str, Any] | None, rule: MetricRule, model: str, *, tensorrt: bool = False) -> str:
    found = find_kpi(kpis or {}, rule, model=model, tensorrt=tensorrt)
    return f"{found[0]} {found[1]:.4f}" if found else "—"


def _gap(version: ModelVersion | None, rule: MetricRule) -> str:
    if version is None:
        return "—"
    torch = find_kpi(version.kpis_pytorch, rule, model=version.model)
    trt = find_kpi(version.kpis_tensorrt or {}, rule, model=version.model, tensorrt=True)
    return f"{abs(trt[1] - torch[1]):.4f}" if torch and trt else "—"


def _size(value: int | None) -> str:
    return "—" if value is None else f"{value / 1e6:.2f} MB ({value} bytes)"


def _code(value: str | None) -> str:
    return f"`{value}`" if value else "—"


def comparison_markdown(outcome: PromotionOutcome, challenger: ModelVersion, champion: ModelVersion | None,
                        champion_kpis: Mapping[str, Any] | None, rule: MetricRule) -> str:
    """`champion` is the champion the challenger was decided against (None: the first model for the name);
    `champion_kpis` its PyTorch KPIs on the challenger's eval data."""
    event = outcome.event
    model, name = event.model, event.name
    if outcome.promoted and not outcome.written:
        verdict = "already the champion"
    else:
        verdict = "promoted" if outcome.promoted else "not promoted"
    lines = [f"# {model}/{name}: {verdict}", ""]
    if challenger.emulated or (champion is not None and champion.emulated):
        lines += ["> **EMULATED**: these models come from the tao-flows TAO emulator, not a GPU.", ""]
    if not outcome.promoted:
        lines += ["The challenger was **not promoted**:", ""] + [f"- {r}" for r in outcome.decision.reasons] + [""]
    live = outcome.champion
    lines += [f"Registry event #{event.seq} ({event.kind}{'' if outcome.written else ', recorded before'}); "
              f"champion now: {_code(live.version_id if live else None)}, "
              f"engine {_code(live.deployable if live else None)}.", ""]
    same_data = champion is None or champion.eval_digest == challenger.eval_digest
    rows = [
        ("version (engine run key)", _code(champion.version_id if champion else None), _code(challenger.version_id)),
        (f"{rule.name}, PyTorch, this eval data", _kpi(champion_kpis, rule, model) if champion else "—",
         _kpi(challenger.kpis_pytorch, rule, model)),
        ("TensorRT" + ("" if same_data else " (its own eval data)"),
         _kpi(champion.kpis_tensorrt if champion else None, rule, model, tensorrt=True),
         _kpi(challenger.kpis_tensorrt, rule, model, tensorrt=True)),
        ("TensorRT − PyTorch gap" + ("" if same_data else " (champion: its own eval data)"),
         _gap(champion, rule), _gap(challenger, rule)),
        ("precision", champion.precision or "—" if champion else "—", challenger.precision or "—"),
        ("engine size", _size(champion.engine_bytes) if champion else "—", _size(challenger.engine_bytes)),
        ("engine", _code(champion.engine if champion else None), _code(challenger.engine)),
        ("ONNX", _code(champion.onnx if champion else None), _code(challenger.onnx)),
        ("checkpoint", _code(champion.checkpoint if champion else None), _code(challenger.checkpoint)),
        ("trained from", _code(champion.ptm if champion else None), _code(challenger.ptm)),
        ("train run key", _code(champion.run_keys.get("train") if champion else None),
         _code(challenger.run_keys.get("train"))),
        ("eval data digest", _code(champion.eval_digest if champion else None), _code(challenger.eval_digest)),
        ("emulated", str(champion.emulated) if champion else "—", str(challenger.emulated)),
    ]
    lines += ["| | champion | challenger |", "|---|---|---|"]
    lines += [f"| {label} | {left} | {right} |" for label, left, right in rows]
    lines += ["", "## Checks", "", "| check | passed | detail |", "|---|---|---|"]
    lines += [f"| {c.name} | {'yes' if c.passed else '**no**'} | {c.detail} |" for c in outcome.decision.checks]
    lines += ["", f"History: `taoflow models show {model} {name}`; undo: `taoflow models rollback {model} {name}`."]
    return "\n".join(lines) + "\n"
