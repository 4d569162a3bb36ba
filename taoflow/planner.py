"""From a pipeline request to ActionRuns: which steps run, their specs, their handoffs and run keys.

This is the orchestration logic that does not need an orchestrator, so the Prefect flows stay thin:
- `plan_pipeline` picks the steps (the skill's pipeline, or the actions asked for, in pipeline order;
  per-role steps such as Sparse4D's dataset_convert run once per supplied role) and records why an
  asked-for action is skipped.
- `preflight` checks every dataset and renders and validates every planned spec on the CPU, with
  placeholders where a handoff is only known later, and reports every problem of the whole plan at once.
- `prepare_run` builds the real spec of one step once its parents have results, and its `run_key`: a
  content hash of the image, the spec with output paths blanked, the datasets' digests and the parents'
  chosen checkpoints, so identical inputs map to the same results folder and never run twice.
- `resolve_emulate` decides, before any run key is computed, whether a step runs on the TAO emulator: the
  run key includes it, so an emulated result never answers a run that must use TAO.
- The train action policy (taoflow/automl/policy.py) decides whether train is an AutoML sweep or one train
  run; `plan_pipeline` records it (`Plan.policy`) and the train step's run key includes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import fsspec

from taoflow import resolver
from taoflow.automl.policy import TrainPolicy, resolve_policy
from taoflow.dotted import set_dotted
from taoflow.errors import UserError
from taoflow.runs import ActionResult, ActionRun, canonical_json, compute_run_key
from taoflow.secrets import DEFAULT_KEY_ENV
from taoflow.skill import DATASET_ROLES, PIPELINE_ORDER, Skill
from taoflow.spec import build_spec
from taoflow.store import ArtifactStore
from taoflow.validate import validate_spec

# Handoffs that only name where this run writes: blanked for the run key (they derive from it).
OUTPUT_HANDOFFS = {"output_dir", "create_onnx_file", "create_onnx_file_2d", "create_engine_file", "create_cal_cache"}


@dataclass
class PipelineRequest:
    """Everything a user decides about one pipeline run (the flows' parameters become this)."""

    model: str
    data: dict[str, str]
    actions: list[str] | None = None
    # Spec overrides per step name; the key "*" applies to every step (model-wide fields).
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    ptm: str | None = None
    store: str | None = None
    emulate: bool | None = None  # None: see resolve_emulate
    launcher: str = "local"  # where GPU steps run: local, docker, kubernetes or workpool
    gpus: int = 1
    nodes: int = 1
    encryption_key_env: str = DEFAULT_KEY_ENV
    timeout_seconds: float | None = None
    force: list[str] = field(default_factory=list)
    automl_policy: str | None = None  # on | auto | off; None: the skill's default (taoflow/automl/policy.py)


@dataclass(frozen=True)
class PlannedStep:
    action: str
    role: str | None = None

    @property
    def name(self) -> str:
        """Unique within a plan: `dataset_convert[eval]` for per-role runs."""
        return f"{self.action}[{self.role}]" if self.role else self.action


@dataclass
class Plan:
    model: str
    steps: list[PlannedStep]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    policy: TrainPolicy | None = None  # how train runs (None: the plan has no train step)

    @property
    def sweeps(self) -> bool:
        """Whether the plan's train step is an AutoML sweep."""
        return self.policy is not None and self.policy.sweep

    @property
    def warnings(self) -> list[str]:
        return [self.policy.notice] if self.policy is not None and self.policy.notice else []


def resolve_emulate(skill: Skill, action: str, launcher: str, emulate: bool | None) -> bool:
    """Whether `action` will run on the TAO emulator. Forced either way by `emulate`; otherwise the local
    launcher emulates exactly when TAO's entry point for the action is not installed here, and docker,
    kubernetes and workpool run TAO's image for real (the emulator only when forced)."""
    if emulate is not None:
        return bool(emulate)
    if launcher != "local":
        return False
    from taoflow.launchers.local import tao_installed

    return not tao_installed(skill.actions[action].argv)


def plan_pipeline(skill: Skill, request: PipelineRequest) -> Plan:
    wanted = list(request.actions) if request.actions else list(skill.pipeline)
    unknown = [a for a in wanted if a not in PIPELINE_ORDER and a not in skill.actions]
    if unknown:
        raise UserError(
            f"unknown action(s) {', '.join(unknown)}; pipeline actions are: {', '.join(PIPELINE_ORDER)}"
        )
    skipped = [(a, f"{skill.name} has no {a} action") for a in wanted if a not in skill.actions]
    present = [a for a in wanted if a in skill.actions]
    ordered = [a for a in PIPELINE_ORDER if a in present] + [a for a in present if a not in PIPELINE_ORDER]
    steps: list[PlannedStep] = []
    for action in ordered:
        per_role = skill.actions[action].per_role
        if per_role:
            roles = [r for r in per_role if r in request.data]
            if not roles:
                raise UserError(f"{skill.name} {action} needs one of the datasets {', '.join(per_role)}")
            steps.extend(PlannedStep(action, r) for r in roles)
        else:
            steps.append(PlannedStep(action))
    _check_parents(skill, ordered)
    policy = resolve_policy(skill, request.automl_policy) if "train" in ordered else None
    return Plan(model=skill.name, steps=steps, skipped=skipped, policy=policy)


def train_policy_key(skill: Skill, request: PipelineRequest, step: PlannedStep) -> str | None:
    """What a step's run key records of the train action policy: `on`/`off` for the train step, else None."""
    return resolve_policy(skill, request.automl_policy).in_force if step.action == "train" else None


def _check_parents(skill: Skill, actions: list[str]) -> None:
    """An action whose parent does not run in this pipeline has nothing to take its model from."""
    missing = [
        f"{a} needs {skill.actions[a].parent} in the same pipeline"
        for a in actions
        if skill.actions[a].parent and skill.actions[a].parent not in actions
    ]
    if missing:
        raise UserError("the planned actions are incomplete", missing)


def _upstream_key(step_name: str) -> str:
    """build_spec's name for a step's results: `dataset_convert[eval]` → `dataset_convert:eval`."""
    return step_name.replace("[", ":").rstrip("]")


def upstream_uris(results: dict[str, ActionResult]) -> dict[str, str]:
    """`upstream` for build_spec: results URIs of earlier steps by step (`dataset_convert:eval`) and action."""
    out: dict[str, str] = {}
    for name, res in results.items():
        out[_upstream_key(name)] = res.results_uri
        out.setdefault(res.action, res.results_uri)
    return out


def _placeholder_upstream(skill: Skill, plan: Plan, store: ArtifactStore) -> dict[str, str]:
    out: dict[str, str] = {}
    for step in plan.steps:
        uri = store.join(store.root, "runs", skill.name, "<run_key>", step.action)
        out[_upstream_key(step.name)] = uri
        out.setdefault(step.action, uri)
    return out


def step_overrides(request: PipelineRequest, step: PlannedStep, skill: Skill) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    merged.update(request.overrides.get("*", {}))
    merged.update(request.overrides.get(step.action, {}))
    if step.role:
        merged.update(skill.actions[step.action].per_role.get(step.role, {}) or {})
        merged.update(request.overrides.get(step.name, {}))
    if step.action == "train" or skill.actions[step.action].tao_action == "train":
        merged.setdefault("train.num_gpus", request.gpus)
        merged.setdefault("train.gpu_ids", list(range(request.gpus)))
        if skill.actions[step.action].multi_node and request.nodes > 1:
            merged.setdefault("train.num_nodes", request.nodes)
    return merged


def preflight(skill: Skill, request: PipelineRequest, plan: Plan, store: ArtifactStore) -> dict[str, dict]:
    """Render and validate every planned spec before anything runs; all problems at once, each once (a
    problem several steps share is one line naming those steps)."""
    from taoflow.datasets import preflight_dataset

    problems: dict[str, list[str]] = {}  # problem → the steps it concerns (none: the whole pipeline)
    unknown = [role for role in request.data if role not in DATASET_ROLES]
    if unknown:  # said once here, not again by every step's spec
        problems[f"unknown dataset role(s) {', '.join(unknown)}; roles are {', '.join(DATASET_ROLES)}"] = []
    data = {role: uri for role, uri in request.data.items() if role not in unknown}
    for role, uri in data.items():
        try:
            preflight_dataset(skill.name, role, uri)
        except UserError as exc:
            for line in _problem_lines(exc):
                problems.setdefault(line, [])
    upstream = _placeholder_upstream(skill, plan, store)
    specs: dict[str, dict] = {}
    for step in plan.steps:
        action = skill.actions[step.action]
        image_problem = skill.image_problem(step.action)  # an image known not to contain the action
        if image_problem:
            problems.setdefault(image_problem, []).append(step.name)
        handoffs = handoff_values(
            skill, step.action, ptm=request.ptm, results_uri=upstream[step.action],
            parent_uri=f"<{action.parent} model>" if action.parent else None, resume=None,
        )
        try:
            spec = build_spec(
                skill, step.action, data=data, handoffs=handoffs,
                overrides=step_overrides(request, step, skill), upstream=upstream, role=step.role,
            )
        except UserError as exc:
            for line in _problem_lines(exc):
                problems.setdefault(line, []).append(step.name)
            continue
        for problem in validate_spec(skill, step.action, spec, complete=True, force=request.force):
            problems.setdefault(problem, []).append(step.name)
        specs[step.name] = spec
    if problems:
        raise UserError(f"the {skill.name} pipeline is not valid; nothing was started", [
            f"{', '.join(steps)}: {problem}" if steps else problem for problem, steps in problems.items()
        ])
    return specs


def planned_runs(skill: Skill, request: PipelineRequest, plan: Plan, specs: dict[str, dict],
                 store: ArtifactStore) -> list[ActionRun]:
    """ActionRuns of a dry run: the preflight specs, whose handoffs still read `<...>`, with run keys of
    their own (what a launcher would be given if the parents' results were the placeholders)."""
    runs = []
    for step in plan.steps:
        action = skill.actions[step.action]
        spec = specs[step.name]
        image = skill.image_for(step.action)
        emulate = resolve_emulate(skill, step.action, request.launcher, request.emulate)
        run_key = compute_run_key(model=skill.name, action=step.name, image=image, spec=spec, emulated=emulate,
                                  automl=train_policy_key(skill, request, step))
        runs.append(ActionRun(
            model=skill.name, action=step.action, spec=spec, image=image, run_key=run_key,
            results_uri=store.results_uri(skill.name, run_key, _results_folder(step)),
            gpus=request.gpus if action.gpu else 0, nodes=request.nodes if action.multi_node else 1,
            secret_overrides=_secret_overrides(action, request), timeout_seconds=request.timeout_seconds,
            emulate=emulate,
        ))
    return runs


def _results_folder(step: PlannedStep) -> str:
    return f"{step.action}-{step.role}" if step.role else step.action


def _secret_overrides(action, request: PipelineRequest) -> dict[str, str]:
    """Spec keys the `key` handoff fills, mapped to the environment variable holding the secret."""
    if not request.encryption_key_env:
        return {}
    return {key: request.encryption_key_env for key, fn in action.handoffs.items() if fn == "key"}


def _problem_lines(exc: UserError, prefix: str = "") -> list[str]:
    """One line per problem of a UserError (its own list when it has one, else its message)."""
    return [prefix + p for p in exc.problems] if exc.problems else [prefix + str(exc)]


def digest_uri(uri: str) -> str:
    """A digest of a file or folder (one recursive listing: names, sizes, ETags or mtimes)."""
    fs, path = fsspec.core.url_to_fs(uri)
    if not fs.exists(path):
        return "missing"
    if fs.isfile(path):
        info = fs.info(path)
        entries = [("", info.get("size"), info.get("ETag") or info.get("mtime") or info.get("LastModified"))]
    else:
        found = fs.find(path, detail=True, withdirs=False)
        entries = sorted(
            (name[len(path):], meta.get("size"), meta.get("ETag") or meta.get("mtime") or meta.get("LastModified"))
            for name, meta in found.items()
        )
    return hashlib.sha256(canonical_json(entries).encode()).hexdigest()[:16]


@dataclass
class RunContext:
    """What prepare_run needs besides the request: the store and the results of earlier steps."""

    skill: Skill
    request: PipelineRequest
    store: ArtifactStore
    results: dict[str, ActionResult]
    secret_source: Callable[[str], str | None] | None = None


def prepare_run(ctx: RunContext, step: PlannedStep) -> ActionRun:
    skill, request, store = ctx.skill, ctx.request, ctx.store
    action = skill.actions[step.action]
    image = skill.image_for(step.action)
    upstream = upstream_uris(ctx.results)
    overrides = step_overrides(request, step, skill)

    parent_uri: str | None = None
    parent_digest: dict[str, str] = {}
    if action.parent:
        parent_result = ctx.results.get(action.parent)
        if parent_result is None:
            raise UserError(f"{step.name} needs the results of {action.parent}, which has not run")
        needs_parent = {"parent_model", "parent_model_folder", "parent_model_or_ptm"}
        if needs_parent & set(action.handoffs.values()):
            parent_uri = resolver.parent_model(
                store, parent_result.results_uri, skill=skill, parent_action=action.parent
            )
            parent_digest = {action.parent: f"{parent_result.run_key}:{parent_uri.rsplit('/', 1)[-1]}"}

    # First pass: output paths blanked, so the run key does not depend on where results go.
    identity_handoffs = handoff_values(
        skill, step.action, ptm=request.ptm, results_uri="<results>", parent_uri=parent_uri, resume=None
    )
    identity_spec = build_spec(
        skill, step.action, data=request.data, handoffs=identity_handoffs, overrides=overrides,
        upstream=upstream, role=step.role,
    )
    input_digests = {role: digest_uri(uri) for role, uri in sorted(request.data.items())}
    if request.ptm:
        input_digests["ptm"] = digest_uri(request.ptm)
    emulate = resolve_emulate(skill, step.action, request.launcher, request.emulate)
    run_key = compute_run_key(
        model=skill.name, action=step.name, image=image, spec=identity_spec,
        input_digests=input_digests, parent_digests=parent_digest, emulated=emulate,
        automl=train_policy_key(skill, request, step),
    )
    results_uri = store.results_uri(skill.name, run_key, _results_folder(step))
    resume = resolver.resume_model(store, results_uri) if "resume_model" in action.handoffs.values() else None
    handoffs = handoff_values(
        skill, step.action, ptm=request.ptm, results_uri=results_uri, parent_uri=parent_uri, resume=resume
    )
    spec = build_spec(
        skill, step.action, data=request.data, handoffs=handoffs, overrides=overrides,
        upstream=upstream, role=step.role,
    )
    secret_overrides = _secret_overrides(action, request)
    return ActionRun(
        model=skill.name, action=step.action, spec=spec, image=image, run_key=run_key,
        results_uri=results_uri, gpus=request.gpus if action.gpu else 0,
        nodes=request.nodes if action.multi_node else 1, secret_overrides=secret_overrides,
        timeout_seconds=request.timeout_seconds, emulate=emulate,
    )


def handoff_values(
    skill: Skill, action_name: str, *, ptm: str | None, results_uri: str, parent_uri: str | None,
    resume: str | None,
) -> dict[str, Any]:
    """Values for every handoff key of the action; keys with nothing to give are left to the template."""
    action = skill.actions[action_name]
    values: dict[str, Any] = {}
    for key, fn in action.handoffs.items():
        if fn == "output_dir":
            values[key] = resolver.output_dir(results_uri, image=action.image.value, tao_action=action.tao_action)
        elif fn in ("create_onnx_file", "create_onnx_file_2d", "create_engine_file", "create_cal_cache"):
            values[key] = getattr(resolver, fn)(results_uri, model=skill.name)
        elif fn == "parent_model":
            if parent_uri:
                values[key] = parent_uri
        elif fn == "parent_model_folder":
            if parent_uri:
                values[key] = parent_uri.rsplit("/", 1)[0]
        elif fn == "parent_model_or_ptm":
            if parent_uri or ptm:
                values[key] = parent_uri or ptm
        elif fn == "ptm":
            if ptm:
                values[key] = ptm
        elif fn == "ptm_if_no_resume_model":
            if ptm and not resume:
                values[key] = ptm
        elif fn == "resume_model":
            if resume:
                values[key] = resume
        elif fn == "key":
            continue  # secrets travel as ActionRun.secret_overrides, never in the spec
    return values


def refresh_resume(skill: Skill, store: ArtifactStore, run: ActionRun) -> ActionRun:
    """Point the run's resume keys at the newest checkpoint in its own results (called on every retry)."""
    action = skill.actions[run.action]
    if "resume_model" not in action.handoffs.values():
        return run
    resume = resolver.resume_model(store, run.results_uri)
    if not resume:
        return run
    for key, fn in action.handoffs.items():
        if fn == "resume_model":
            set_dotted(run.spec, key, resume)
        elif fn == "ptm_if_no_resume_model":
            set_dotted(run.spec, key, None)
    return run
