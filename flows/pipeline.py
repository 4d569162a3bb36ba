"""The generic TAO pipeline flow: preflight → dataset_convert → train → evaluate → export → quantize →
gen_trt_engine → TensorRT evaluate, each step a cached, resumable `run_action` task, then, when asked
(`promote`), the promotion gate (tasks/promotion.py). `warm_start` trains from a registry champion.
Train is an AutoML sweep (flows/automl.py) unless the run's train action policy says off or the model's
AutoML cannot run (taoflow/automl/policy.py). The model flows in this package call `run_pipeline` with their
own parameters."""

from __future__ import annotations

from typing import Any

from prefect import Flow, flow, get_run_logger, tags, task

from flows.parameters import PipelineParameters, pipeline_signature, run_name
from taoflow.automl.policy import check_sweep
from taoflow.planner import PipelineRequest, Plan, RunContext, plan_pipeline, preflight, prepare_run
from taoflow.retraining import PromotionRequest, promotion_problems, raise_problems, resolve_warm_start, warm_started
from taoflow.runs import ActionResult, ActionRun
from taoflow.skill import load_skill
from taoflow.store import ArtifactStore
from tasks.artifacts import publish_kpi_table, publish_model_card, publish_result_links, publish_skipped
from tasks.preflight import check_launcher_reaches_store, tag_flow_run
from tasks.promotion import promote
from tasks.run_action import run_action


@task(name="preflight")
def preflight_task(request: PipelineRequest, plan: Plan, store_root: str,
                   promotion: PromotionRequest | None = None, sweep: dict[str, Any] | None = None) -> dict[str, dict]:
    """CPU only: datasets present and well formed, every planned spec valid, a promotion the pipeline can
    decide (the steps it needs, a readable registry, the champion's files), and when train is a sweep its
    search space and study storage. Nothing reaches a GPU before."""
    skill = load_skill(request.model)
    store = ArtifactStore(store_root)
    specs = preflight(skill, request, plan, store)
    if promotion is not None:
        raise_problems(skill.name, promotion_problems(skill, request, plan, specs, promotion, store))
    if plan.sweeps:
        check_sweep(skill, store_root, **(sweep or {}))
    get_run_logger().info("preflight passed: %d specs valid (%s)", len(specs), ", ".join(specs))
    return specs


def run_pipeline(model: str, params: PipelineParameters) -> dict[str, Any]:
    """Run the pipeline in the current flow run; returns a summary (results per step)."""
    logger = get_run_logger()
    request = params.to_request(model)
    skill = load_skill(model)
    store = ArtifactStore(request.store)
    warm = None
    if params.warm_start:
        warm = resolve_warm_start(store, model, params.warm_start)
        request = warm_started(request, warm)
        logger.info(warm.describe(model, params.pretrained_model))
    plan = plan_pipeline(skill, request)
    for action, reason in plan.skipped:
        logger.warning("skipping %s: %s", action, reason)
    publish_skipped(model, plan.skipped)
    for warning in plan.warnings:
        logger.warning("%s", warning)
    if plan.policy is not None:
        logger.info("%s", plan.policy.describe(params.automl.max_trials, params.automl.max_concurrent))
    tag_flow_run(model)
    check_launcher_reaches_store(params.launcher.name, params.launcher.options, store.root, request.store)
    promotion = params.promotion.to_request()
    preflight_task(request, plan, store.root, promotion, params.automl.sweep_options())

    results: dict[str, ActionResult] = {}
    runs: dict[str, ActionRun] = {}  # what each step ran (the promotion reads its checkpoint and engine)
    sweep: dict[str, Any] | None = None  # the AutoML sweep that stood in for train
    for step in plan.steps:
        if step.action == "train" and plan.sweeps:
            from flows.automl import automl_train_step

            results[step.name], sweep = automl_train_step(request, results, params)
            continue
        run = runs[step.name] = prepare_run(RunContext(skill, request, store, results), step)
        with tags(model, step.action):
            state = run_action.with_options(task_run_name=f"{model}-{step.name}")(
                run, store.root, params.launcher.name, params.launcher.options, return_state=True
            )
        results[step.name] = ActionResult.from_dict(state.result())  # a cache hit is a "Cached" state
        logger.info("%s done: %s", step.name, results[step.name].results_uri)

    publish_kpi_table(model, results)
    publish_result_links(model, results)
    training = training_summary(plan, params, sweep)
    publish_model_card(model, results, plan.skipped, store, training=training)
    summary: dict[str, Any] = {
        "model": model,
        "store": store.root,
        "skipped": [{"action": a, "reason": r} for a, r in plan.skipped],
        "results": {name: res.to_dict() for name, res in results.items()},
        "training": training,
    }
    if warm is not None:
        summary["warm_start"] = {"name": warm.name, "champion": warm.champion, "checkpoint": warm.checkpoint}
    if promotion is not None:  # a rejection completes the run; a promotion that cannot be decided fails it
        summary["promotion"] = promote(request, results, runs, promotion, store.root, params.launcher.name,
                                       params.launcher.options)
    return summary


def training_summary(plan: Plan, params: PipelineParameters, sweep: dict[str, Any] | None) -> dict[str, Any] | None:
    """How this run trained, for the summary, the board's last word and the model card (None: no train)."""
    policy = plan.policy
    if policy is None:
        return None
    return {"policy": policy.asked, "in_force": policy.in_force, "source": policy.source,
            "line": policy.describe(params.automl.max_trials, params.automl.max_concurrent),
            "warning": policy.notice, "sweep": sweep}


@flow(name="tao-pipeline")
def tao_pipeline(model: str, params: PipelineParameters) -> dict[str, Any]:
    """Any skill's pipeline with the generic parameters (model-specific flows give a richer form)."""
    return run_pipeline(model, params)


def pipeline_flow(model: str, params_cls: type[PipelineParameters]) -> Flow:
    """The model's pipeline flow, `<model>-pipeline`, with top-level parameters (flows/parameters.py): the
    datasets by role, the model's own fields, then the run and AutoML settings. Its run names say the model
    and the date."""
    signature, args_doc = pipeline_signature(model, params_cls)

    def pipeline(**values: Any) -> dict[str, Any]:
        bound = signature.bind(**values)
        bound.apply_defaults()
        return run_pipeline(model, params_cls.from_flow(bound.arguments))

    pipeline.__name__ = pipeline.__qualname__ = f"{model}_pipeline"
    pipeline.__signature__ = signature  # type: ignore[attr-defined]
    pipeline.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
    pipeline.__doc__ = f"The {model} TAO pipeline.\n\nArgs:\n" + "\n".join(
        "    " + line for line in args_doc.splitlines())
    name = model.replace("_", "-") + "-pipeline"
    return flow(name=name, flow_run_name=run_name(model))(pipeline)


def run_with(flow_fn: Flow, params: PipelineParameters, **options: Any) -> Any:
    """Call a model's pipeline flow with a PipelineParameters object (the CLI, the demo, tests)."""
    return flow_fn(**params.flow_parameters(), **options)
