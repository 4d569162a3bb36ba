"""`taoflow run … --launcher kubernetes --dry-run`: every Kubernetes object the pipeline would submit."""

from __future__ import annotations

from rich.console import Console

from flows.parameters import PipelineParameters
from taoflow.k8s import build_run_objects, dump_objects, profile_from_options
from taoflow.planner import PipelineRequest, Plan, planned_runs
from taoflow.skill import Skill
from taoflow.store import ArtifactStore


def print_kubernetes_objects(skill: Skill, request: PipelineRequest, plan: Plan, specs: dict[str, dict],
                             parameters: PipelineParameters, console: Console) -> None:
    profile = profile_from_options(parameters.launcher.options)
    objects = []
    for run in planned_runs(skill, request, plan, specs, ArtifactStore(request.store)):
        objects.extend(build_run_objects(run, skill, profile))
    console.print(dump_objects(objects), markup=False, highlight=False, soft_wrap=True, end="")
