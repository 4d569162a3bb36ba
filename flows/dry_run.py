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
    console.print(f"[bold]{model} plan[/bold] (store {store.root}, launcher {parameters.launcher.name}):")
    for number, step in enumerate(plan.steps, 1):
        action = skill.actions[step.action]
        console.print(f"  {number}. {step.name}  image={skill.image_for(step.action)}"
                      + (f"  parent={action.parent}" if action.parent else ""))
    for action, reason in plan.skipped:
        console.print(f"  [yellow]skipped[/yellow] {action}: {reason}")
    if parameters.launcher.name == "kubernetes":
        from flows.k8s_dry_run import print_kubernetes_objects

        print_kubernetes_objects(skill, request, plan, specs, parameters, console)
        return
    for name, spec in specs.items():
        console.print(f"--- # {name} spec (handoffs still to resolve are shown as <...>)", markup=False)
        console.print(dump_spec_yaml(spec), markup=False, highlight=False, soft_wrap=True)
