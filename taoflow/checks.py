"""Readiness checks a command runs on the CPU, before any Prefect server starts or any GPU is asked for:
the artifact store is reachable and writable, the launcher can launch (TAO installed or the emulator
allowed, a docker daemon, a Kubernetes configuration), the credentials it needs are present and the images
are known. Each returns problem lines (empty: ready); `check_ready` raises one UserError with all of them.

Dataset and spec checks are `planner.preflight`'s; together they are the whole preflight of `run`.
"""

from __future__ import annotations

import os
import re
import uuid
from typing import Any

from taoflow.automl.policy import sweep_problems
from taoflow.errors import UserError
from taoflow.planner import PipelineRequest, Plan
from taoflow.retraining import PromotionRequest, promotion_problems, resolve_warm_start, warm_started
from taoflow.skill import Skill
from taoflow.storage_errors import storage_problem
from taoflow.store import ArtifactStore

# A container image reference: [registry[:port]/]path[:tag][@digest]
IMAGE_REF = re.compile(r"^[a-z0-9]([a-z0-9._-]*[a-z0-9])?(:[0-9]+)?(/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*"
                       r"(:[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?(@sha256:[a-f0-9]{64})?$")


def check_store(root: str | None) -> list[str]:
    """The store answers and takes a write (a probe object, removed again)."""
    try:
        store = ArtifactStore(root, retries=0)  # a preflight answers at once; runs retry transient failures
    except Exception as exc:
        problem = storage_problem(exc, str(root), "artifact store", write=True)
        if problem is None:
            raise
        return [problem]
    probe = store.join(store.root, f".taoflow-write-probe-{uuid.uuid4().hex[:8]}")
    try:
        store.write_bytes_atomic(probe, b"probe\n")
        store.remove(probe)
    except Exception as exc:
        problem = storage_problem(exc, store.root, "artifact store", write=True)
        if problem is None:
            raise
        return [problem]
    return []


def check_launcher(skill: Skill, request: PipelineRequest, plan: Plan, launcher: str,
                   options: dict[str, Any] | None = None) -> list[str]:
    options = dict(options or {})
    actions = list(dict.fromkeys(step.action for step in plan.steps))
    problems = _check_images(skill, actions, options)
    if launcher == "local":
        problems += _check_local(skill, request, actions)
    elif launcher == "docker":
        problems += _check_docker(skill, request, actions)
    elif launcher == "kubernetes":
        problems += _check_kubernetes(request, options)
    return problems


def _check_images(skill: Skill, actions: list[str], options: dict[str, Any]) -> list[str]:
    images = {skill.image_for(a) for a in actions} | {v for v in (options.get("images") or {}).values() if v}
    return [f"image {image!r} is not a valid image reference (set it in the skill, TAOFLOW_IMAGE_<ROLE> or "
            "the launcher's `images` option)" for image in sorted(images) if not IMAGE_REF.match(image or "")]


def _check_local(skill: Skill, request: PipelineRequest, actions: list[str]) -> list[str]:
    from taoflow.launchers.local import tao_installed

    if request.emulate is not False:
        return []  # the emulator stands in where TAO is missing
    missing: dict[str, list[str]] = {}  # one line per missing program, naming the actions that need it
    for action in actions:
        argv = skill.actions[action].argv
        if not tao_installed(argv):
            program = argv[2] if len(argv) > 2 and argv[1] == "-m" else argv[0]
            missing.setdefault(program, []).append(action)
    return [f"TAO's `{program}` entry point is not installed here (needed by {', '.join(names)}); run inside the "
            "TAO container, use --launcher docker or kubernetes, or drop --no-emulate to use the emulator"
            for program, names in missing.items()]


def _secret_vars(skill: Skill, request: PipelineRequest, actions: list[str]) -> list[str]:
    if not request.encryption_key_env:
        return []
    uses_key = any(fn == "key" for a in actions for fn in skill.actions[a].handoffs.values())
    return [request.encryption_key_env] if uses_key else []


def _check_docker(skill: Skill, request: PipelineRequest, actions: list[str]) -> list[str]:
    problems = [f"the docker launcher passes {var} to the container and it is not set; export it (the model "
                "encryption key)" for var in _secret_vars(skill, request, actions) if not os.environ.get(var)]
    try:
        import docker
    except ImportError:
        return [*problems, "the docker launcher needs the docker package: pip install 'tao-flows[docker]'"]
    try:
        docker.from_env(timeout=10).ping()
    except Exception as exc:
        host = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        problems.append(f"cannot reach the docker daemon at {host} ({_first_line(exc)}); start docker, check "
                        "DOCKER_HOST and that you may use it (the docker group), or use --launcher local")
    return problems


def _check_kubernetes(request: PipelineRequest, options: dict[str, Any]) -> list[str]:
    from taoflow.k8s import profile_from_options

    try:
        profile = profile_from_options(options)
    except UserError as exc:
        return exc.problems or [str(exc)]
    problems = []
    store_root = ArtifactStore(request.store).root
    if "://" not in store_root and not profile.store_pvc:
        problems.append(f"the kubernetes launcher needs a store its pods can reach: {store_root} is a local "
                        "folder; use --store s3://BUCKET/PREFIX, or the store_pvc launcher option")
    try:
        from kubernetes import config
    except ImportError:
        return [*problems, "the kubernetes launcher needs the kubernetes package: pip install "
                           "'tao-flows[kubernetes]'"]
    try:
        config.load_incluster_config()
    except config.ConfigException:
        try:
            config.load_kube_config(config_file=options.get("kubeconfig"), context=options.get("context"))
        except Exception as exc:
            problems.append(f"no usable Kubernetes configuration ({_first_line(exc)}); set KUBECONFIG or "
                            "--launcher-option kubeconfig=PATH (and context=NAME), or run inside the cluster")
    return problems


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


def check_pipeline(skill: Skill, request: PipelineRequest, launcher: str, options: dict[str, Any] | None = None,
                   *, promotion: PromotionRequest | None = None, warm_start: str | None = None,
                   sweep: dict[str, Any] | None = None) -> Plan:
    """The whole preflight of a run: the plan, every dataset and spec (planner.preflight), the store, the
    launcher, with `promotion` / `warm_start` the model registry (taoflow.retraining), and when train is an
    AutoML sweep its search space and study storage (`sweep`: parameters, space, storage; policy.py). One
    UserError lists every problem, each once; returns the plan."""
    from taoflow.planner import plan_pipeline, preflight

    plan = plan_pipeline(skill, request)
    problems: list[str] = check_store(request.store)
    store_ok = not problems
    if warm_start and store_ok:
        try:
            request = warm_started(request, resolve_warm_start(ArtifactStore(request.store), skill.name, warm_start))
        except UserError as exc:
            problems += [f"warm start from {skill.name}/{warm_start}: {p}" for p in exc.problems or [str(exc)]]
    specs = None
    try:
        specs = preflight(skill, request, plan, ArtifactStore(request.store))
    except UserError as exc:
        problems += exc.problems or [str(exc)]
    if promotion is not None and store_ok:
        problems += promotion_problems(skill, request, plan, specs, promotion, ArtifactStore(request.store))
    if plan.sweeps:
        problems += sweep_problems(skill, request.store, **(sweep or {}))
    problems += check_launcher(skill, request, plan, launcher, options)
    if problems:
        raise UserError(f"the {skill.name} pipeline cannot run; nothing was started", problems)
    return plan
