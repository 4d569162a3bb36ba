"""`taoflow run --dry-run`: the plan and every rendered spec (and, for Kubernetes, every object)."""

from __future__ import annotations

from rich.console import Console

from flows.parameters import PipelineParameters
from taoflow.automl.policy import check_sweep
from taoflow.planner import plan_pipeline, preflight
from taoflow.retraining import promotion_problems, raise_problems, resolve_warm_start, warm_started
from taoflow.skill import load_skill
from taoflow.spec import dump_spec_yaml
from taoflow.store import ArtifactStore


def print_dry_run(model: str, parameters: PipelineParameters, console: Console) -> None:
    skill = load_skill(model)
    request = parameters.to_request(model)
    store = ArtifactStore(request.store)
    warm = resolve_warm_start(store, model, parameters.warm_start) if parameters.warm_start else None
    if warm is not None:
        request = warm_started(request, warm)
    plan = plan_pipeline(skill, request)
    specs = preflight(skill, request, plan, store)
    promotion = parameters.promotion.to_request()
    if promotion is not None:
        raise_problems(model, promotion_problems(skill, request, plan, specs, promotion, store))
    if plan.sweeps:
        check_sweep(skill, store.root, **parameters.automl.sweep_options())
    # The plan as YAML comments, so the whole output stays valid YAML (`| kubectl apply -f -`).
    lines = [f"# {model} plan (store {store.root}, launcher {parameters.launcher.name}):"]
    for number, step in enumerate(plan.steps, 1):
        action = skill.actions[step.action]
        sweep = "  AutoML sweep (each trial: this spec with its values)" if step.action == "train" and plan.sweeps else ""
        lines.append(f"#   {number}. {step.name}  image={skill.image_for(step.action)}"
                     + (f"  parent={action.parent}" if action.parent else "") + sweep)
    lines += [f"#   skipped {action}: {reason}" for action, reason in plan.skipped]
    if plan.policy is not None:
        automl = parameters.automl
        lines.append(f"#   {plan.policy.describe(automl.max_trials, automl.max_concurrent)}"
                     + (f"; {plan.policy.hint}" if plan.policy.hint else ""))
    lines += [f"# warning: {warning}" for warning in plan.warnings]
    if promotion is not None:
        lines.append(f"#   then: promote to {model}/{promotion.name} if the gate passes (docs/registry.md)")
    if warm is not None:
        lines.append("#   " + warm.describe(model, parameters.pretrained_model))
    console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)
    if parameters.launcher.name == "kubernetes":
        from flows.k8s_dry_run import print_kubernetes_objects

        print_kubernetes_objects(skill, request, plan, specs, parameters, console)
        return
    for name, spec in specs.items():
        console.print(f"--- # {name} spec (handoffs still to resolve are shown as <...>)", markup=False)
        console.print(dump_spec_yaml(spec), markup=False, highlight=False, soft_wrap=True)
