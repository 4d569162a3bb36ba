"""The promotion gate as a pure function: metric with margin and direction, TensorRT parity per precision,
latency and engine-size limits, KPI names as TAO reports them, and inputs it must refuse."""

from __future__ import annotations

import pytest

from taoflow.promotion import (
    DEFAULT_PARITY_TOLERANCES,
    Evaluation,
    MetricRule,
    PromotionError,
    PromotionPolicy,
    decide,
    find_kpi,
)
from taoflow.skill import load_skill

MAP = MetricRule("val_mAP", "maximize")


def ev(version: str, pytorch: float | None, tensorrt: float | None = None, *, precision: str | None = "fp16",
       digest: str = "eval-1", **kw) -> Evaluation:
    return Evaluation(version=version, pytorch={} if pytorch is None else {"test_mAP": pytorch},
                      tensorrt=None if tensorrt is None else {"AP": tensorrt},
                      precision=precision if tensorrt is not None else None, eval_digest=digest, **kw)


def test_first_model_is_promoted_when_parity_holds():
    decision = decide(ev("new", 0.600, 0.595), None, MAP, model="rtdetr")
    assert decision.promote
    assert [c.name for c in decision.checks] == ["metric", "parity"]
    assert "first model" in decision.checks[0].detail
    assert decision.tensorrt_value == pytest.approx(0.595)


def test_first_model_is_rejected_when_parity_fails():
    decision = decide(ev("new", 0.600, 0.550), None, MAP, model="rtdetr")
    assert not decision.promote
    assert decision.reasons == [
        "TensorRT parity (fp16): |AP 0.5500 - test_mAP 0.6000| = 0.0500 > tolerance 0.0100"
    ]


def test_better_challenger_beats_champion_by_margin():
    policy = PromotionPolicy(margin=0.01)
    decision = decide(ev("new", 0.63, 0.628), ev("old", 0.61), MAP, policy, model="rtdetr")
    assert decision.promote, decision.summary()
    assert decision.checks[0].detail == (
        "test_mAP 0.6300 vs champion old 0.6100: +0.0200 (higher is better) >= margin 0.0100")
    assert decision.champion_value == pytest.approx(0.61)


def test_gain_below_margin_is_rejected_with_numbers():
    policy = PromotionPolicy(margin=0.02)
    decision = decide(ev("new", 0.62, 0.62), ev("old", 0.61), MAP, policy, model="rtdetr")
    assert not decision.promote
    assert decision.reasons == ["test_mAP 0.6200 vs champion old 0.6100: +0.0100 (higher is better) < margin 0.0200"]


def test_margin_exactly_met_despite_float_noise():
    # 0.63 - 0.62 is 0.010000000000000009, 0.82 - 0.81 is 0.009999999999999898: both meet a 0.01 margin
    for new, old in ((0.63, 0.62), (0.82, 0.81)):
        assert decide(ev("n", new, new), ev("o", old), MAP, PromotionPolicy(margin=0.01), model="rtdetr").promote


def test_worse_or_equal_challenger_is_rejected_even_with_zero_margin():
    worse = decide(ev("new", 0.60, 0.60), ev("old", 0.61), MAP, model="rtdetr")
    assert not worse.promote
    assert "-0.0100" in worse.reasons[0] and "not better than the champion" in worse.reasons[0]
    equal = decide(ev("new", 0.61, 0.61), ev("old", 0.61), MAP, model="rtdetr")
    assert not equal.promote


def test_parity_failure_rejects_although_pytorch_improved():
    decision = decide(ev("new", 0.70, 0.62, precision="fp16"), ev("old", 0.61), MAP, model="rtdetr")
    assert not decision.promote
    assert decision.checks[0].passed  # the PyTorch metric did improve
    assert decision.reasons == ["TensorRT parity (fp16): |AP 0.6200 - test_mAP 0.7000| = 0.0800 > tolerance 0.0100"]


def test_fp16_is_tighter_than_int8():
    assert DEFAULT_PARITY_TOLERANCES["fp16"] < DEFAULT_PARITY_TOLERANCES["int8"]
    gap = 0.02  # too much for fp16, fine for int8
    fp16 = decide(ev("new", 0.62, 0.62 - gap, precision="fp16"), None, MAP, model="rtdetr")
    int8 = decide(ev("new", 0.62, 0.62 - gap, precision="INT8"), None, MAP, model="rtdetr")
    assert not fp16.promote and int8.promote
    custom = PromotionPolicy(parity_tolerances={"fp16": 0.05, "int8": 0.1})
    assert decide(ev("new", 0.62, 0.62 - gap, precision="fp16"), None, MAP, custom, model="rtdetr").promote


def test_minimize_direction():
    loss = MetricRule("val_loss", "minimize")
    better = Evaluation("new", {"test_loss": 0.40}, {"test_loss": 0.401}, "fp32", "d")
    worse = Evaluation("new", {"test_loss": 0.50}, {"test_loss": 0.50}, "fp32", "d")
    old = Evaluation("old", {"test_loss": 0.45}, eval_digest="d")
    assert decide(better, old, loss).promote
    rejected = decide(worse, old, loss)
    assert not rejected.promote and "(lower is better)" in rejected.reasons[0]


def test_latency_and_engine_size_limits():
    policy = PromotionPolicy(max_latency_ms=5.0, max_engine_bytes=1000)
    fast_small = ev("new", 0.62, 0.62, latency_ms=4.0, engine_bytes=900)
    assert decide(fast_small, None, MAP, policy, model="rtdetr").promote
    slow_big = ev("new", 0.62, 0.62, latency_ms=7.5, engine_bytes=2048)
    decision = decide(slow_big, None, MAP, policy, model="rtdetr")
    assert decision.reasons == ["TensorRT latency 7.5 ms > limit 5 ms", "engine 2048 bytes > limit 1000 bytes"]
    unmeasured = decide(ev("new", 0.62, 0.62), None, MAP, policy, model="rtdetr")
    assert [c.name for c in unmeasured.checks if not c.passed] == ["latency", "engine size"]


def test_no_tensorrt_evaluation_rejects_unless_parity_is_not_required():
    decision = decide(ev("new", 0.62), None, MAP, model="rtdetr")
    assert not decision.promote and "parity cannot be checked" in decision.reasons[0]
    assert decide(ev("new", 0.62), None, MAP, PromotionPolicy(require_parity=False), model="rtdetr").promote


def test_policy_for_skill_requires_parity_only_with_a_tensorrt_step():
    assert PromotionPolicy.for_skill(load_skill("rtdetr")).require_parity
    assert not PromotionPolicy.for_skill(load_skill("sparse4d")).require_parity  # no gen_trt_engine
    assert PromotionPolicy.for_skill(load_skill("rtdetr"), margin=0.5).margin == 0.5


def test_metric_rule_follows_the_skill():
    assert MetricRule.for_skill(load_skill("rtdetr")) == MetricRule("val_mAP", "maximize")
    assert MetricRule.for_skill(load_skill("centerpose")) == MetricRule("val_3DIoU", "maximize")
    # AutoML optimises a loss that evaluate does not report: the monitoring metric decides
    assert MetricRule.for_skill(load_skill("nvpanoptix3d")) == MetricRule("PRQ", "maximize")
    assert MetricRule.for_skill(load_skill("action_recognition")) == MetricRule("val_acc", "maximize")


def test_kpi_names_as_tao_writes_them():
    # PyTorch evaluate: test_mAP as a string (pl_rtdetr_model.py); TensorRT evaluate: COCO "AP" (coco_metric.py)
    assert find_kpi({"test_mAP": "0.61", "test_mAP50": "0.8"}, MAP) == ("test_mAP", 0.61)
    assert find_kpi({"AP": 0.6, "AP50": 0.8}, MAP, model="rtdetr", tensorrt=True) == ("AP", 0.6)
    assert find_kpi({"AP": 0.6}, MAP, model="rtdetr") is None  # AP is a TensorRT name only
    assert find_kpi({"val_mAP": 0.5}, MAP) == ("val_mAP", 0.5)
    assert find_kpi({"prq": 0.4}, MetricRule("PRQ", "maximize")) == ("prq", 0.4)
    assert find_kpi({"test_mAP": "nan"}, MAP) is None


def test_evaluate_kpi_names_of_action_recognition_and_sparse4d():
    # AR evaluate logs `accuracy`, Sparse4D `img_bbox_NuScenes/mAP` (docs/tao-contract.md K3, K4)
    acc = MetricRule.for_skill(load_skill("action_recognition"))
    assert find_kpi({"accuracy": 0.71, "m_accuracy": 0.69}, acc, model="action_recognition") == ("accuracy", 0.71)
    sparse = MetricRule.for_skill(load_skill("sparse4d"))
    kpis = {"img_bbox_NuScenes/NDS": 0.4, "img_bbox_NuScenes/mAP": 0.33, "img_bbox_NuScenes/car_AP_dist_0.5": 0.5}
    assert find_kpi(kpis, sparse, model="sparse4d") == ("img_bbox_NuScenes/mAP", 0.33)
    assert find_kpi({"accuracy": 0.71}, acc, model="rtdetr") is None  # aliases are per model


def test_refused_inputs_raise_instead_of_deciding():
    with pytest.raises(PromotionError, match="other eval data"):
        decide(ev("new", 0.62, 0.62), ev("old", 0.6, digest="eval-2"), MAP, model="rtdetr")
    with pytest.raises(PromotionError, match=r"no val_mAP KPI \(looked for test_mAP, val_mAP, mAP; it has none\)"):
        decide(ev("new", None), None, MAP, model="rtdetr")
    with pytest.raises(PromotionError, match="champion's PyTorch evaluation has no val_mAP"):
        decide(ev("new", 0.62, 0.62), ev("old", None), MAP, model="rtdetr")
    with pytest.raises(PromotionError, match="no TensorRT parity tolerance for precision 'bf16'"):
        decide(ev("new", 0.62, 0.62, precision="bf16"), None, MAP, model="rtdetr")
    with pytest.raises(PromotionError, match=r"margin -0\.1"):
        PromotionPolicy(margin=-0.1)
    with pytest.raises(PromotionError, match="direction"):
        MetricRule("val_mAP", "up")  # type: ignore[arg-type]


def test_summary_lists_every_check():
    decision = decide(ev("new", 0.63, 0.628), ev("old", 0.61), MAP, model="rtdetr")
    assert decision.summary().startswith("promoted: test_mAP 0.6300 vs champion old 0.6100")
    assert "TensorRT parity (fp16)" in decision.summary()
    data = decision.to_dict()
    assert data["promote"] and data["metric"] == "test_mAP" and len(data["checks"]) == 2
