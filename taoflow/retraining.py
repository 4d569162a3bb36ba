"""Retraining with a promotion gate, as a pipeline asks for it: the promotion settings a run carries, what the
preflight refuses before any GPU time (a pipeline that cannot produce what the gate needs, a registry that
cannot be read, a champion whose files are gone), and the warm start (the champion's checkpoint as the PTM).

The decision itself is `taoflow.promotion.decide`; the records are `taoflow.registry`'s. This module only
connects them to a planned pipeline, so the CLI's preflight and the flow's preflight say the same thing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from taoflow.dotted import get_dotted
from taoflow.errors import UserError
from taoflow.planner import PipelineRequest, Plan
from taoflow.promotion import DEFAULT_PARITY_TOLERANCES, PromotionPolicy
from taoflow.registry import ModelRegistry
from taoflow.registry.records import check_name
from taoflow.registry.versions import PRECISION_KEY, eval_roles
from taoflow.skill import Skill
from taoflow.store import ArtifactStore

MEGABYTE = 1_000_000  # engine size limits are given in MB (10^6 bytes), as disk sizes are


@dataclass(frozen=True)
class PromotionRequest:
    """Promote the pipeline's model to `name` (e.g. `prod`) when the gate passes.

    `margin` is in KPI units (0.01 = one mAP point); `parity_tolerances` replace the defaults of the
    precisions they name (fp32 0.005, fp16 0.01, int8 0.03); `max_engine_bytes` limits the TensorRT engine."""

    name: str
    margin: float = 0.0
    parity_tolerances: Mapping[str, float] = field(default_factory=dict)
    max_engine_bytes: int | None = None

    def policy(self, skill: Skill) -> PromotionPolicy:
        tolerances = {**DEFAULT_PARITY_TOLERANCES, **{k.lower(): v for k, v in self.parity_tolerances.items()}}
        return PromotionPolicy.for_skill(skill, margin=self.margin, parity_tolerances=tolerances,
                                         max_engine_bytes=self.max_engine_bytes)


def required_actions(skill: Skill) -> list[str]:
    """The actions a promotion needs in the pipeline: a model version is train + evaluate + export, and the
    TensorRT parity check needs the engine and its evaluation where the skill has them."""
    needed = ["train", "evaluate", "export"]
    if "trt_evaluate" in skill.pipeline:
        needed += ["gen_trt_engine", "trt_evaluate"]
    return needed


def engine_precision(specs: Mapping[str, dict]) -> str | None:
    """The engine's precision as TAO Deploy reads it (`tensorrt.data_type`, lower-cased; fp32 by default)."""
    spec = specs.get("gen_trt_engine")
    if spec is None:
        return None
    return str(get_dotted(spec, PRECISION_KEY) or "fp32").lower()


def promotion_problems(skill: Skill, request: PipelineRequest, plan: Plan, specs: Mapping[str, dict] | None,
                       promotion: PromotionRequest, store: ArtifactStore) -> list[str]:
    """Why this pipeline cannot promote to `promotion.name` (empty: it can). Checked on the CPU, before
    anything runs: the steps the gate needs, the eval data, the policy for the engine's precision, and the
    registry entry (readable by this taoflow, its champion's files still in the store)."""
    where = f"promotion to {skill.name}/{promotion.name}"
    try:
        check_name("registry name", promotion.name)
    except UserError as exc:
        return [f"{where}: {exc}"]
    problems = []
    planned = {step.action for step in plan.steps}
    missing = [a for a in required_actions(skill) if a not in planned]
    if missing:
        why = ("a model version is train, evaluate and export" + (
            ", and TensorRT parity needs gen_trt_engine and trt_evaluate" if "trt_evaluate" in skill.pipeline else ""))
        problems.append(f"{where} needs {', '.join(missing)} in the pipeline ({why}); add them to the actions "
                        "or drop the promotion")
    roles = eval_roles(skill)
    if "evaluate" in planned and roles and not any(role in request.data for role in roles):
        problems.append(f"{where} compares models on the eval data, and none of the dataset roles evaluate "
                        f"reads ({', '.join(roles)}) was given")
    try:
        policy = promotion.policy(skill)
        precision = engine_precision(specs or {})
        if precision and policy.require_parity:
            policy.tolerance(precision)
    except UserError as exc:
        problems.append(f"{where}: {exc}")
    if promotion.max_engine_bytes is not None and "gen_trt_engine" not in skill.pipeline:
        problems.append(f"{where}: an engine size limit is set, but {skill.name} builds no TensorRT engine")
    problems += registry_problems(store, skill.name, promotion.name, where)
    return problems


def registry_problems(store: ArtifactStore, model: str, name: str, where: str) -> list[str]:
    """The registry entry can be read by this taoflow and its champion's files are all still in the store."""
    registry = ModelRegistry(store)
    try:
        champion = registry.champion(model, name)
        if champion is not None:
            registry.require_files(champion, model, name, "champion")
    except UserError as exc:
        return [f"{where}: {exc}"]
    return []


@dataclass(frozen=True)
class WarmStart:
    """What a warm start resolved to: the champion's checkpoint, or None (no champion yet: the PTM)."""

    name: str
    checkpoint: str | None
    champion: str | None  # the champion's version id

    def describe(self, model: str, ptm: str | None) -> str:
        if self.checkpoint:
            return (f"warm start: training starts from the {model}/{self.name} champion {self.champion} "
                    f"({self.checkpoint})")
        return (f"warm start: {model}/{self.name} has no champion yet; training starts from "
                + (f"the pretrained model {ptm}" if ptm else "scratch (no pretrained model given)"))


def resolve_warm_start(store: ArtifactStore, model: str, name: str) -> WarmStart:
    """The champion of `model`/`name` to start training from. Raises a UserError (a registry of a newer
    format, a champion whose files were deleted) rather than silently training from the PTM."""
    check_name("registry name", name)
    registry = ModelRegistry(store)
    champion = registry.champion(model, name)
    if champion is None:
        return WarmStart(name, None, None)
    return WarmStart(name, registry.warm_start_checkpoint(model, name), champion.version_id)


def warm_started(request: PipelineRequest, warm: WarmStart) -> PipelineRequest:
    """The request with the champion's checkpoint as its PTM (the PTM handoffs put it into the train spec,
    and the planner puts its digest into every run key, so a warm-started run never reuses a cold run)."""
    return replace(request, ptm=warm.checkpoint) if warm.checkpoint else request


def summary_of(outcome: Any, challenger: Any) -> dict[str, Any]:
    """A JSON summary of a promotion for flow results, events and the CLI (outcome: PromotionOutcome)."""
    champion = outcome.champion
    return {
        "promoted": outcome.promoted,
        "recorded": outcome.written,
        "name": outcome.event.name,
        "model": outcome.event.model,
        "seq": outcome.event.seq,
        "event": outcome.event.kind,
        "challenger": challenger.version_id,
        "champion": champion.version_id if champion else None,
        "engine": champion.engine if champion else None,
        "deployable": champion.deployable if champion else None,
        "reasons": outcome.decision.reasons,
        "summary": outcome.decision.summary(),
        "decision": outcome.decision.to_dict(),
    }


def raise_problems(model: str, problems: list[str]) -> None:
    if problems:
        raise UserError(f"the {model} pipeline cannot promote; nothing was started", problems)
