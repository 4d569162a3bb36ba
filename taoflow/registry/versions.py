"""Build the registry record of a model version from a finished pipeline's runs and results.

The pipeline knows each step's ActionRun (its spec and image) and ActionResult (run key, KPIs, products).
Which spec keys hold the checkpoint, the ONNX file and the engine is the skill's business: they are the keys
its handoffs fill (`parent_model` of export, `create_onnx_file[_2d]` of export, `create_engine_file` of
gen_trt_engine), so nothing here is model-specific.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from taoflow.dotted import get_dotted
from taoflow.errors import UserError
from taoflow.planner import PipelineRequest, PlannedStep, RunContext, digest_uri, prepare_run
from taoflow.registry.records import ModelVersion
from taoflow.runs import ActionResult, ActionRun, canonical_json
from taoflow.skill import Skill
from taoflow.store import ArtifactStore

STEPS = ("train", "evaluate", "export", "gen_trt_engine", "trt_evaluate")
PRECISION_KEY = "gen_trt_engine.tensorrt.data_type"


def _spec_value(skill: Skill, run: ActionRun | None, handoffs: tuple[str, ...]) -> str | None:
    if run is None:
        return None
    for key, fn in skill.actions[run.action].handoffs.items():
        if fn in handoffs:
            value = get_dotted(run.spec, key)
            if value:
                return str(value)
    return None


def eval_roles(skill: Skill) -> list[str]:
    """Dataset roles the evaluate step reads (with fallbacks): what "the same eval data" is made of."""
    action = skill.actions.get("evaluate")
    if action is None:
        return []
    roles = []
    for source in action.data_sources:
        roles += [source.role, *source.fallback]
    return list(dict.fromkeys(roles))


def eval_digest(skill: Skill, data_digests: Mapping[str, str]) -> str:
    """One digest of the eval data (the digests of the roles evaluate reads)."""
    parts = {role: data_digests[role] for role in eval_roles(skill) if role in data_digests}
    if not parts:
        raise UserError(f"{skill.name} evaluate reads the dataset roles {', '.join(eval_roles(skill)) or 'none'}, "
                        "none of which was supplied: there is no eval data to compare models on")
    return hashlib.sha256(canonical_json(parts).encode()).hexdigest()[:16]


def _size(store: ArtifactStore, uri: str | None) -> int | None:
    if not uri:
        return None
    folder, _, name = uri.rpartition("/")
    for entry in store.list_files(folder, include_dirs=False):
        if entry.path == name:
            return entry.size
    return None


def version_from_pipeline(
    store: ArtifactStore, skill: Skill, request: PipelineRequest, results: Mapping[str, ActionResult],
    runs: Mapping[str, ActionRun], *, latency_ms: float | None = None,
) -> ModelVersion:
    """The ModelVersion of a pipeline that ran train, evaluate and export (and gen_trt_engine + trt_evaluate
    when the skill has them). `results` and `runs` are keyed by step name. `latency_ms` is a TensorRT latency
    measured elsewhere (TAO's evaluate reports none)."""
    missing = [s for s in ("train", "evaluate", "export") if s not in results]
    if missing:
        raise UserError(f"a {skill.name} model version needs the results of {', '.join(missing)}; "
                        "run the pipeline through export before promoting")
    failed = [f"{s} ({r.status})" for s, r in results.items() if s in STEPS and not r.ok]
    if failed:
        raise UserError(f"cannot register a model whose steps did not succeed: {', '.join(failed)}")
    export_run = runs.get("export")
    checkpoint = _spec_value(skill, export_run, ("parent_model",)) or results["train"].products.get("checkpoint")
    if not checkpoint:
        raise UserError("the export step's checkpoint is unknown: pass the export ActionRun in `runs`")
    onnx = (_spec_value(skill, export_run, ("create_onnx_file", "create_onnx_file_2d"))
            or results["export"].products.get("onnx"))
    engine = precision = None
    if "gen_trt_engine" in results:
        engine_run = runs.get("gen_trt_engine")
        engine = (_spec_value(skill, engine_run, ("create_engine_file",))
                  or results["gen_trt_engine"].products.get("engine"))
        raw = get_dotted(engine_run.spec, PRECISION_KEY) if engine_run else None
        precision = str(raw or "fp32").lower()  # TAO Deploy lower-cases it; fp32 is its default
    images = {step: runs[step].image if step in runs else skill.image_for(step)
              for step in STEPS if step in results and step in skill.actions}
    data_digests = {role: digest_uri(uri) for role, uri in sorted(request.data.items())}
    trt = results.get("trt_evaluate")
    return ModelVersion(
        model=skill.name,
        run_keys={step: results[step].run_key for step in STEPS if step in results},
        results_uris={step: results[step].results_uri for step in STEPS if step in results},
        checkpoint=checkpoint, onnx=onnx, engine=engine, precision=precision, images=images, ptm=request.ptm,
        kpis_pytorch=_floats(results["evaluate"].kpis_final),
        kpis_tensorrt=_floats(trt.kpis_final) if trt is not None else None,
        eval_digest=eval_digest(skill, data_digests), data_digests=data_digests,
        engine_bytes=_size(store, engine), latency_ms=latency_ms,
        emulated=any(r.emulated for s, r in results.items() if s in STEPS),
    )


def _floats(kpis: Mapping[str, Any]) -> dict[str, float]:
    """TAO writes some KPIs as strings (`str(mAP)`); the registry stores numbers."""
    out = {}
    for key, value in kpis.items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def upstream_results(version: ModelVersion) -> dict[str, ActionResult]:
    """The version's steps as (minimal) results, so `planner.prepare_run` can build runs on top of them: an
    evaluate of the champion on today's eval data is `prepare_run(RunContext(skill, request, store,
    upstream_results(champion)), PlannedStep("evaluate"))` - an ordinary, cached action whose run key is the
    one the champion's own pipeline had when the eval data is unchanged."""
    return {
        step: ActionResult(model=version.model, action=step, run_key=key, status="SUCCESS",
                           results_uri=version.results_uris[step], emulated=version.emulated)
        for step, key in version.run_keys.items() if step in version.results_uris
    }


def champion_evaluate_run(store: ArtifactStore, skill: Skill, request: PipelineRequest,
                          champion: ModelVersion) -> ActionRun:
    """The evaluate run of the champion's checkpoint on `request`'s eval data and evaluate settings.

    The request's PTM is swapped for the one the champion was trained from, so with unchanged eval data the
    run key is the champion's own evaluate run key (the planner puts the PTM digest into every step's key):
    a cached action, no GPU time spent twice."""
    champion_request = replace(request, ptm=champion.ptm)
    context = RunContext(skill, champion_request, store, upstream_results(champion))
    return prepare_run(context, PlannedStep("evaluate"))
