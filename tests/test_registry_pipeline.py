"""The registry on real pipeline runs: RT-DETR train → evaluate → export → gen_trt_engine → trt_evaluate on the
emulator through the planner and the local launcher (real processes, no Prefect), on a local store and on
s3:// (moto's server on loopback). Covers the record built from the runs, the champion's evaluate as an
ordinary cached action, a warm-started challenger, and the run key that includes the warm start."""

# ruff: noqa: F811  (test functions take the imported fixtures as parameters)

from __future__ import annotations

from pathlib import Path

import pytest

from taoflow.datasets import write_sample_data
from taoflow.dotted import get_dotted
from taoflow.errors import UserError
from taoflow.launchers.local import LocalLauncher
from taoflow.planner import PipelineRequest, PlannedStep, RunContext, plan_pipeline, prepare_run
from taoflow.promotion import MetricRule, PromotionPolicy, find_kpi
from taoflow.registry import ModelRegistry, champion_evaluate_run, version_from_pipeline
from taoflow.runs import ActionResult, ActionRun
from taoflow.skill import load_skill
from taoflow.store import ArtifactStore
from tests.s3server import any_store_root, s3_root, s3_server  # noqa: F401  (pytest fixtures)

ACTIONS = ["train", "evaluate", "export", "gen_trt_engine", "trt_evaluate"]


@pytest.fixture(autouse=True)
def _emulator(tmp_path, monkeypatch):
    monkeypatch.setenv("TAOFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TAOFLOW_EMULATOR_EPOCH_SECONDS", "0")
    monkeypatch.delenv("TAOFLOW_EMULATOR_FAULT", raising=False)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, str]:
    roles = write_sample_data("rtdetr", tmp_path_factory.mktemp("rtdetr-data"))
    return {Path(p).name: str(p) for p in roles}


def launch(run: ActionRun) -> ActionResult:
    launcher = LocalLauncher(poll_seconds=0.05)
    handle = launcher.submit(run)
    for _ in launcher.events(handle):
        pass
    result = launcher.result(handle)
    assert result.ok, (run.action, result.message)
    return result


def run_pipeline(request: PipelineRequest) -> tuple[dict[str, ActionResult], dict[str, ActionRun]]:
    skill, store = load_skill(request.model), ArtifactStore(request.store)
    results: dict[str, ActionResult] = {}
    runs: dict[str, ActionRun] = {}
    for step in plan_pipeline(skill, request).steps:
        runs[step.name] = prepare_run(RunContext(skill, request, store, results), step)
        results[step.name] = launch(runs[step.name])
    return results, runs


def test_promotion_on_emulated_pipelines_with_warm_start(any_store_root, data):
    skill = load_skill("rtdetr")
    store = ArtifactStore(any_store_root)
    registry = ModelRegistry(store)
    rule, policy = MetricRule.for_skill(skill), PromotionPolicy.for_skill(skill)
    request = PipelineRequest(model="rtdetr", data=data, actions=ACTIONS, store=store.root, emulate=True,
                              overrides={"train": {"train.num_epochs": 2}})

    # 1. the first model for rtdetr/prod, recorded from its runs
    results, runs = run_pipeline(request)
    first = version_from_pipeline(store, skill, request, results, runs)
    assert first.run_keys == {step: results[step].run_key for step in ACTIONS}
    assert first.checkpoint == get_dotted(runs["export"].spec, "export.checkpoint")
    assert first.onnx == get_dotted(runs["export"].spec, "export.onnx_file")
    assert first.engine == get_dotted(runs["gen_trt_engine"].spec, "gen_trt_engine.trt_engine")
    assert first.precision == str(get_dotted(runs["gen_trt_engine"].spec,
                                             "gen_trt_engine.tensorrt.data_type", "fp32")).lower()
    assert first.images["gen_trt_engine"] == runs["gen_trt_engine"].image and first.emulated
    assert first.engine_bytes and registry.missing_files(first) == []
    outcome = registry.promote(first, "prod", rule=rule, policy=policy)
    parity = [c for c in outcome.decision.checks if c.name == "parity"]
    assert parity and f"({first.precision})" in parity[0].detail
    assert outcome.promoted, f"an emulated engine without a fault must pass parity: {outcome.decision.summary()}"

    # 2. warm start: the champion's checkpoint is the PTM of the retraining run, and part of its run key
    warm = registry.warm_start_checkpoint("rtdetr", "prod")
    assert warm == first.checkpoint
    retrain = PipelineRequest(model="rtdetr", data=data, actions=ACTIONS, store=store.root, emulate=True,
                              ptm=warm, overrides={"train": {"train.num_epochs": 3}})
    cold_train = prepare_run(RunContext(skill, PipelineRequest(**{**retrain.__dict__, "ptm": None}), store, {}),
                             PlannedStep("train"))
    warm_train = prepare_run(RunContext(skill, retrain, store, {}), PlannedStep("train"))
    assert get_dotted(warm_train.spec, "train.pretrained_model_path") == warm
    assert get_dotted(cold_train.spec, "train.pretrained_model_path") != warm
    assert warm_train.run_key != cold_train.run_key

    results2, runs2 = run_pipeline(retrain)
    challenger = version_from_pipeline(store, skill, retrain, results2, runs2)
    assert challenger.run_keys["train"] == warm_train.run_key
    assert challenger.eval_digest == first.eval_digest  # same eval data
    assert challenger.ptm == warm and first.ptm is None  # the lineage of a warm start

    # 3. the champion's evaluate on today's eval data is an ordinary action with the champion's own run key
    evaluated = []

    def evaluate_champion(champion):
        run = champion_evaluate_run(store, skill, retrain, champion)
        assert get_dotted(run.spec, "evaluate.checkpoint") == champion.checkpoint
        evaluated.append(run.run_key)
        return launch(run).kpis_final

    outcome = registry.promote(challenger, "prod", rule=rule, policy=policy, evaluate_champion=evaluate_champion)
    assert evaluated == [first.run_keys["evaluate"]]  # cached in a flow: no GPU spent twice
    _, new = find_kpi(challenger.kpis_pytorch, rule, model="rtdetr")
    _, old = find_kpi(first.kpis_pytorch, rule, model="rtdetr")
    assert outcome.decision.champion_value == pytest.approx(old)
    parity_ok = all(c.passed for c in outcome.decision.checks if c.name == "parity")
    assert outcome.promoted == (new > old and parity_ok)
    expected = challenger if outcome.promoted else first
    assert registry.champion("rtdetr", "prod") == expected
    assert [e.kind for e in registry.history("rtdetr", "prod")] == [
        "promoted", "promoted" if outcome.promoted else "rejected"]


def test_a_version_needs_successful_train_evaluate_and_export(tmp_path, data):
    skill, store = load_skill("rtdetr"), ArtifactStore(tmp_path / "store")
    request = PipelineRequest(model="rtdetr", data=data, store=store.root)
    ok = {step: ActionResult("rtdetr", step, f"{step}-key", "SUCCESS", f"/x/{step}") for step in ACTIONS}
    with pytest.raises(UserError, match="needs the results of export"):
        version_from_pipeline(store, skill, request, {k: v for k, v in ok.items() if k != "export"}, {})
    failed = {**ok, "gen_trt_engine": ActionResult("rtdetr", "gen_trt_engine", "k", "FAILURE", "/x/g")}
    with pytest.raises(UserError, match=r"did not succeed: gen_trt_engine \(FAILURE\)"):
        version_from_pipeline(store, skill, request, failed, {})
