"""The promotion gate: should a challenger replace the champion of a registry name? A pure function.

`decide` compares evaluations that were already made (no I/O, no clock), so it is the same decision in a
test, in a flow and on a laptop. A challenger is promoted only when every check passes:

1. metric: its KPI beats the champion's (same eval data) by at least `margin`, in the metric's direction.
   The first model for a name has no champion: this check passes and the others decide.
2. TensorRT parity: |TensorRT KPI - PyTorch KPI| of the challenger is within the tolerance of its engine's
   precision (fp16 tighter than int8), so the engine that gets deployed behaves like the model that won.
3. optional limits: TensorRT latency and engine size.

A rejection names every failing check with its numbers. What cannot be compared at all (the champion
evaluated on other data, a metric that is not among the KPIs, a precision without a tolerance) is not a
rejection but a `PromotionError`: the caller has to fix its inputs, and nothing is recorded.

KPI names: the skill names the metric as train reports it (`val_mAP`); TAO's PyTorch evaluate reports
`test_*` (`test_mAP`, nvidia_tao_pytorch/cv/rtdetr/model/pl_rtdetr_model.py `on_test_epoch_end`) and TAO
Deploy's TensorRT evaluate writes COCO names in results.json (`AP`, `AP50`;
tao_deploy nvidia_tao_deploy/metrics/coco_metric.py `EvaluationMetric.metric_names`). `find_kpi` maps
between them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from taoflow.errors import UserError

Direction = Literal["maximize", "minimize"]

# Float noise in KPI arithmetic (0.63 - 0.62 is 0.010000000000000009) must not decide a margin.
_EPS = 1e-12

# Our defaults, not NVIDIA's (TAO publishes no parity tolerance): absolute KPI units, e.g. 0.01 = one mAP
# point. Reduced precision loses more, so int8 gets the widest band.
DEFAULT_PARITY_TOLERANCES: dict[str, float] = {"fp32": 0.005, "fp16": 0.01, "int8": 0.03}

# TensorRT evaluate reports under other names than PyTorch evaluate, per model (see module docstring).
TENSORRT_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "rtdetr": {"mAP": ("AP",), "mAP50": ("AP50",)},
}
# PyTorch evaluate names that are not `test_<base>` (docs/tao-contract.md K3, K4): Action Recognition logs
# `accuracy` (nvidia_tao_pytorch/cv/action_recognition/model/pl_ar_model.py:206-211), Sparse4D the NuScenes
# metrics under `img_bbox_NuScenes/` (nvidia_tao_pytorch/cv/sparse4d/model/sparse4d_pl_model.py:242-249).
EVALUATE_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "action_recognition": {"acc": ("accuracy",)},
    "sparse4d": {"mAP": ("img_bbox_NuScenes/mAP",)},
}
_PREFIXES = ("val_", "test_", "train_")


class PromotionError(UserError):
    """The promotion cannot be decided from these inputs; nothing was compared or recorded."""


@dataclass(frozen=True)
class MetricRule:
    """The KPI that decides, and which way is better."""

    name: str
    direction: Direction

    def __post_init__(self) -> None:
        if self.direction not in ("maximize", "minimize"):
            raise PromotionError(f"metric direction {self.direction!r}: allowed values are maximize, minimize")

    @classmethod
    def for_skill(cls, skill: Any) -> MetricRule:
        """The skill's AutoML metric when it measures quality, else its monitoring metric.

        AutoML may optimise a training loss (NVPanoptix3D `train_loss`, ActionRecognition `val_loss`), which
        an evaluation does not report; the monitoring metric (PRQ, val_acc) is then the quality KPI."""
        automl = skill.automl
        if automl.metric and not automl.metric.lower().endswith("loss"):
            return cls(automl.metric, automl.direction)
        return cls(skill.monitoring.metric, skill.monitoring.direction)

    @property
    def base(self) -> str:
        for prefix in _PREFIXES:
            if self.name.startswith(prefix):
                return self.name[len(prefix):]
        return self.name

    def candidates(self, *, model: str | None = None, tensorrt: bool = False) -> list[str]:
        """KPI names to look for, most specific first: `test_mAP`, `val_mAP`, `mAP`, then the model's aliases
        (TensorRT evaluate's names with `tensorrt`, else PyTorch evaluate's)."""
        names = [f"test_{self.base}", self.name, self.base]
        aliases = TENSORRT_ALIASES if tensorrt else EVALUATE_ALIASES
        names += list(aliases.get(model or "", {}).get(self.base, ()))
        return list(dict.fromkeys(names))


def find_kpi(kpis: Mapping[str, Any], rule: MetricRule, *, model: str | None = None,
             tensorrt: bool = False) -> tuple[str, float] | None:
    """(name, value) of the rule's metric among `kpis`, or None. TAO writes some KPIs as strings."""
    names = rule.candidates(model=model, tensorrt=tensorrt)
    lowered = {k.lower(): k for k in kpis}
    for name in names:
        key = name if name in kpis else lowered.get(name.lower())
        if key is None:
            continue
        try:
            value = float(kpis[key])
        except (TypeError, ValueError):
            continue
        if math.isfinite(value):
            return key, value
    return None


@dataclass(frozen=True)
class PromotionPolicy:
    """What "better" means for a name. `margin` is in KPI units (0.01 = one mAP point)."""

    margin: float = 0.0
    parity_tolerances: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_PARITY_TOLERANCES))
    require_parity: bool = True  # False only for skills without a TensorRT step (Sparse4D)
    max_latency_ms: float | None = None
    max_engine_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.margin < 0:
            raise PromotionError(f"margin {self.margin}: must be 0 or more (KPI units, 0.01 = one point)")
        bad = {p: t for p, t in self.parity_tolerances.items() if t < 0}
        if bad:
            raise PromotionError(f"parity tolerances must be 0 or more: {bad}")

    @classmethod
    def for_skill(cls, skill: Any, **settings: Any) -> PromotionPolicy:
        """A policy for the skill: parity is required when its pipeline builds and evaluates an engine."""
        settings.setdefault("require_parity", "trt_evaluate" in skill.pipeline)
        return cls(**settings)

    def tolerance(self, precision: str) -> float:
        tolerances = {k.lower(): v for k, v in self.parity_tolerances.items()}
        if precision.lower() not in tolerances:
            raise PromotionError(
                f"no TensorRT parity tolerance for precision {precision!r}; tolerances are set for "
                f"{', '.join(sorted(tolerances)) or 'none'}"
            )
        return tolerances[precision.lower()]

    def to_dict(self) -> dict[str, Any]:
        return {"margin": self.margin, "parity_tolerances": dict(self.parity_tolerances),
                "require_parity": self.require_parity, "max_latency_ms": self.max_latency_ms,
                "max_engine_bytes": self.max_engine_bytes}


@dataclass(frozen=True)
class Evaluation:
    """One model version's KPIs on one eval dataset: PyTorch evaluate, and TensorRT evaluate of its engine.

    `version` names it in messages (a run key); `eval_digest` identifies the eval data, so a champion
    evaluated on other data is never compared."""

    version: str
    pytorch: Mapping[str, Any]
    tensorrt: Mapping[str, Any] | None = None
    precision: str | None = None
    eval_digest: str | None = None
    latency_ms: float | None = None
    engine_bytes: int | None = None


@dataclass(frozen=True)
class Check:
    name: str  # metric | parity | latency | engine size
    passed: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


@dataclass(frozen=True)
class Decision:
    promote: bool
    checks: tuple[Check, ...]
    metric: str  # the KPI name compared (e.g. test_mAP)
    direction: Direction
    challenger: str
    champion: str | None
    challenger_value: float | None
    champion_value: float | None = None
    tensorrt_value: float | None = None

    @property
    def reasons(self) -> list[str]:
        """Why it was rejected: one line with numbers per failing check (empty when promoted)."""
        return [c.detail for c in self.checks if not c.passed]

    def summary(self) -> str:
        if self.promote:
            return "promoted: " + "; ".join(c.detail for c in self.checks)
        return "not promoted: " + "; ".join(self.reasons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "promote": self.promote, "metric": self.metric, "direction": self.direction,
            "challenger": self.challenger, "champion": self.champion,
            "challenger_value": self.challenger_value, "champion_value": self.champion_value,
            "tensorrt_value": self.tensorrt_value, "checks": [c.to_dict() for c in self.checks],
        }


def _metric_of(kpis: Mapping[str, Any], rule: MetricRule, who: str, *, model: str | None,
               tensorrt: bool = False) -> tuple[str, float]:
    found = find_kpi(kpis, rule, model=model, tensorrt=tensorrt)
    if found is None:
        kind = "TensorRT" if tensorrt else "PyTorch"
        looked = ", ".join(rule.candidates(model=model, tensorrt=tensorrt))
        have = ", ".join(sorted(kpis)) or "none"
        raise PromotionError(
            f"the {who}'s {kind} evaluation has no {rule.name} KPI (looked for {looked}; it has {have}); "
            f"check the evaluate step's KPIs or the promotion metric"
        )
    return found


def _fmt(value: float) -> str:
    return f"{value:.4f}"


def _metric_check(rule: MetricRule, name: str, value: float, champion: Evaluation | None,
                  champion_value: float | None, margin: float) -> Check:
    if champion is None or champion_value is None:
        return Check("metric", True, f"first model for this name: {name} {_fmt(value)}")
    gain = value - champion_value if rule.direction == "maximize" else champion_value - value
    sign = "+" if gain >= 0 else "-"
    better = "higher" if rule.direction == "maximize" else "lower"
    head = (f"{name} {_fmt(value)} vs champion {champion.version} {_fmt(champion_value)}: "
            f"{sign}{_fmt(abs(gain))} ({better} is better)")
    if gain > _EPS and gain >= margin - _EPS:
        return Check("metric", True, f"{head} >= margin {_fmt(margin)}")
    if gain <= _EPS:
        return Check("metric", False, f"{head}; not better than the champion")
    return Check("metric", False, f"{head} < margin {_fmt(margin)}")


def _parity_check(challenger: Evaluation, rule: MetricRule, policy: PromotionPolicy, py_name: str,
                  py_value: float, model: str | None) -> tuple[Check | None, float | None]:
    if challenger.tensorrt is None:
        if not policy.require_parity:
            return None, None
        return Check("parity", False, "no TensorRT evaluation of the engine, so parity cannot be checked "
                                      "(run gen_trt_engine and trt_evaluate)"), None
    if not challenger.precision:
        raise PromotionError(f"the challenger {challenger.version} has TensorRT KPIs but no engine precision "
                             "(gen_trt_engine.tensorrt.data_type)")
    tolerance = policy.tolerance(challenger.precision)
    trt_name, trt_value = _metric_of(challenger.tensorrt, rule, "challenger", model=model, tensorrt=True)
    gap = abs(trt_value - py_value)
    detail = (f"TensorRT parity ({challenger.precision.lower()}): |{trt_name} {_fmt(trt_value)} - {py_name} "
              f"{_fmt(py_value)}| = {_fmt(gap)}")
    if gap <= tolerance + _EPS:
        return Check("parity", True, f"{detail} <= tolerance {_fmt(tolerance)}"), trt_value
    return Check("parity", False, f"{detail} > tolerance {_fmt(tolerance)}"), trt_value


def _limit_checks(challenger: Evaluation, policy: PromotionPolicy) -> list[Check]:
    checks = []
    if policy.max_latency_ms is not None:
        if challenger.latency_ms is None:
            checks.append(Check("latency", False, f"a TensorRT latency limit of {policy.max_latency_ms:g} ms "
                                                  "is set but no latency was measured"))
        else:
            ok = challenger.latency_ms <= policy.max_latency_ms
            checks.append(Check("latency", ok, f"TensorRT latency {challenger.latency_ms:g} ms "
                                               f"{'<=' if ok else '>'} limit {policy.max_latency_ms:g} ms"))
    if policy.max_engine_bytes is not None:
        if challenger.engine_bytes is None:
            checks.append(Check("engine size", False, f"an engine size limit of {policy.max_engine_bytes} "
                                                      "bytes is set but the engine size is unknown"))
        else:
            ok = challenger.engine_bytes <= policy.max_engine_bytes
            checks.append(Check("engine size", ok, f"engine {challenger.engine_bytes} bytes "
                                                   f"{'<=' if ok else '>'} limit {policy.max_engine_bytes} bytes"))
    return checks


def decide(challenger: Evaluation, champion: Evaluation | None, rule: MetricRule,
           policy: PromotionPolicy | None = None, *, model: str | None = None) -> Decision:
    """Promote or reject `challenger` against `champion` (None: the first model for the name)."""
    policy = policy or PromotionPolicy()
    if champion is not None and champion.eval_digest != challenger.eval_digest:
        raise PromotionError(
            f"the champion {champion.version} was evaluated on other eval data ({champion.eval_digest}) than "
            f"the challenger {challenger.version} ({challenger.eval_digest}); evaluate both on the same data"
        )
    name, value = _metric_of(challenger.pytorch, rule, "challenger", model=model)
    champion_value = None
    if champion is not None:
        _, champion_value = _metric_of(champion.pytorch, rule, "champion", model=model)
    checks = [_metric_check(rule, name, value, champion, champion_value, policy.margin)]
    parity, trt_value = _parity_check(challenger, rule, policy, name, value, model)
    if parity is not None:
        checks.append(parity)
    checks += _limit_checks(challenger, policy)
    return Decision(
        promote=all(c.passed for c in checks), checks=tuple(checks), metric=name, direction=rule.direction,
        challenger=challenger.version, champion=champion.version if champion else None,
        challenger_value=value, champion_value=champion_value, tensorrt_value=trt_value,
    )
