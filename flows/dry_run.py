"""`taoflow run --dry-run`: the plan and every rendered spec (and, for Kubernetes, every object)."""

from __future__ import annotations

from rich.console import Console

from flows.parameters import PipelineParameters
from taoflow.planner import plan_pipeline, preflight
from taoflow.skill import load_skill
from taoflow.spec import dump_spec_yaml
from taoflow.store import ArtifactStore


def print_dry_run(model: str, parameters: PipelineParameters, console: Console) -> None:
    skill = load_skill(model)
    request = parameters.to_request(model)
    store = ArtifactStore(request.store)
    plan = plan_pipeline(skill, request)
    specs = preflight(skill, request, plan, store)
    # The plan as YAML comments, so the whole output stays valid YAML (`| kubectl apply -f -`).
    lines = [f"# {model} plan (store {store.root}, launcher {parameters.launcher.name}):"]
    for number, step in enumerate(plan.steps, 1):
        action = skill.actions[step.action]
        lines.append(f"#   {number}. {step.name}  image={skill.image_for(step.action)}"
                     + (f"  parent={action.parent}" if action.parent else ""))
    lines += [f"#   skipped {action}: {reason}" for action, reason in plan.skipped]
    console.print("\n".join(lines), markup=False, highlight=False, soft_wrap=True)
    if parameters.launcher.name == "kubernetes":
        from flows.k8s_dry_run import print_kubernetes_objects

        print_kubernetes_objects(skill, request, plan, specs, parameters, console)
        return
    for name, spec in specs.items():
        console.print(f"--- # {name} spec (handoffs still to resolve are shown as <...>)", markup=False)
        console.print(dump_spec_yaml(spec), markup=False, highlight=False, soft_wrap=True)
