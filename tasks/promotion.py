"""The promotion step of a pipeline (`promote` parameter, `taoflow run --promote NAME`): the last step, after
trt_evaluate. It records the challenger from the pipeline's runs, evaluates the current champion on the same
eval data as an ordinary cached `run_action` (a nested task run: no GPU time spent twice), lets the registry
decide and record, then publishes a markdown artifact with champion and challenger side by side and emits
`tao.model.promoted` or `tao.model.rejected`.

A rejection is not a failure: the task completes and returns `promoted: False`. A promotion that cannot be
decided (a PromotionError or another registry UserError) fails the task, and with it the flow run, with the
registry's message.
"""

from __future__ import annotations

import re
from typing import Any

from prefect import get_run_logger, tags, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext

from taoflow.planner import PipelineRequest
from taoflow.promotion import MetricRule
from taoflow.registry import ModelRegistry, ModelVersion, champion_evaluate_run, version_from_pipeline
from taoflow.registry.report import comparison_markdown
from taoflow.retraining import PromotionRequest, summary_of
from taoflow.runs import ActionResult, ActionRun
from taoflow.skill import load_skill
from taoflow.store import ArtifactStore
from tasks.events import emit_promotion_event
from tasks.progress import label_run
from tasks.run_action import run_action

CHAMPION_STEP = "evaluate (champion)"  # its row on the live board, beside the challenger's evaluate


@task(name="promote", cache_policy=NO_CACHE, persist_result=False)
def promote(request: PipelineRequest, results: dict[str, ActionResult], runs: dict[str, ActionRun],
            promotion: PromotionRequest, store_root: str, launcher: str,
            launcher_options: dict[str, Any]) -> dict[str, Any]:
    logger = get_run_logger()
    skill = load_skill(request.model)
    store = ArtifactStore(store_root)
    model, name = skill.name, promotion.name
    challenger = version_from_pipeline(store, skill, request, results, runs)
    rule = MetricRule.for_skill(skill)
    evaluated: dict[str, tuple[ModelVersion, dict[str, Any]]] = {}

    def evaluate_champion(champion: ModelVersion) -> dict[str, Any]:
        run = champion_evaluate_run(store, skill, request, champion)
        label_run(run.run_key, CHAMPION_STEP)
        logger.info("%s/%s: evaluating the champion %s on this run's eval data (run %s)", model, name,
                    champion.version_id, run.run_key)
        with tags(model, "evaluate", "champion"):
            state = run_action.with_options(task_run_name=f"{model}-evaluate-champion")(
                run, store_root, launcher, launcher_options, return_state=True)
        kpis = ActionResult.from_dict(state.result()).kpis_final
        evaluated[champion.version_id] = (champion, kpis)
        return kpis

    outcome = ModelRegistry(store).promote(
        challenger, name, rule=rule, policy=promotion.policy(skill), evaluate_champion=evaluate_champion,
        context=_flow_run_context(),
    )
    against = evaluated.get(outcome.decision.champion or "")
    summary = summary_of(outcome, challenger) | {
        "event_id": outcome.event.id, "registry": ModelRegistry(store).champion_uri(model, name)}
    markdown = comparison_markdown(outcome, challenger, against[0] if against else None,
                                   against[1] if against else None, rule)
    create_markdown_artifact(markdown=markdown, key=_key(f"{model}-{name}-promotion"),
                             description=f"{model}/{name}: " + ("promoted" if outcome.promoted else "not promoted"))
    emit_promotion_event(summary, challenger.to_dict())
    if outcome.promoted:
        logger.info("%s/%s: %s; engine %s", model, name, outcome.decision.summary(), summary["deployable"])
    else:
        logger.warning("%s/%s: %s", model, name, outcome.decision.summary())
    return summary


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _flow_run_context() -> dict[str, str]:
    """Where the promotion was decided, for the registry event (`context`)."""
    context = FlowRunContext.get()
    if context is None or context.flow_run is None:
        return {}
    run = context.flow_run
    out = {"flow_run_id": str(run.id), "flow_run_name": run.name}
    if run.deployment_id:
        out["deployment_id"] = str(run.deployment_id)
    return out
