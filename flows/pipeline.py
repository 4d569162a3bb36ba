"""The generic TAO pipeline flow: preflight → dataset_convert → train (or AutoML) → evaluate → export →
quantize → gen_trt_engine → TensorRT evaluate, each step a cached, resumable `run_action` task.
The model flows in this package call `run_pipeline` with their own parameters."""

from __future__ import annotations

from typing import Any

from prefect import Flow, flow, get_run_logger, tags, task

from flows.parameters import PipelineParameters, pipeline_signature, run_name
from taoflow.planner import PipelineRequest, Plan, RunContext, plan_pipeline, preflight, prepare_run
from taoflow.runs import ActionResult
from taoflow.skill import load_skill
from taoflow.store import ArtifactStore
from tasks.artifacts import publish_kpi_table, publish_model_card, publish_result_links, publish_skipped
from tasks.preflight import check_launcher_reaches_store, tag_flow_run
from tasks.run_action import run_action


@task(name="preflight")
def preflight_task(request: PipelineRequest, plan: Plan, store_root: str) -> dict[str, dict]:
    """CPU only: datasets present and well formed, every planned spec valid. Nothing reaches a GPU before."""
    skill = load_skill(request.model)
    specs = preflight(skill, request, plan, ArtifactStore(store_root))
    get_run_logger().info("preflight passed: %d specs valid (%s)", len(specs), ", ".join(specs))
    return specs


def run_pipeline(model: str, params: PipelineParameters) -> dict[str, Any]:
    """Run the pipeline in the current flow run; returns a summary (results per step)."""
    logger = get_run_logger()
    request = params.to_request(model)
    skill = load_skill(model)
    store = ArtifactStore(request.store)
    plan = plan_pipeline(skill, request)
    for action, reason in plan.skipped:
        logger.warning("skipping %s: %s", action, reason)
    publish_skipped(model, plan.skipped)
    tag_flow_run(model)
    check_launcher_reaches_store(params.launcher.name, params.launcher.options, store.root, request.store)
    preflight_task(request, plan, store.root)

    results: dict[str, ActionResult] = {}
    for step in plan.steps:
        if step.action == "train" and params.automl.enabled:
            from flows.automl import automl_train_step

            results[step.name] = automl_train_step(request, results, params)
            continue
        run = prepare_run(RunContext(skill, request, store, results), step)
        with tags(model, step.action):
            state = run_action.with_options(task_run_name=f"{model}-{step.name}")(
                run, store.root, params.launcher.name, params.launcher.options, return_state=True
            )
        results[step.name] = ActionResult.from_dict(state.result())  # a cache hit is a "Cached" state
        logger.info("%s done: %s", step.name, results[step.name].results_uri)

    publish_kpi_table(model, results)
    publish_result_links(model, results)
    publish_model_card(model, results, plan.skipped, store)
    return {
        "model": model,
        "store": store.root,
        "skipped": [{"action": a, "reason": r} for a, r in plan.skipped],
        "results": {name: res.to_dict() for name, res in results.items()},
    }


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
