"""Reading results folders laid out exactly as real TAO 6.x lays them out (tests/tao_layouts.py, written from
NVIDIA's source): per-action folders, string KPIs, metric lines without an epoch, no SUCCESS line, RT-DETR's
epoch-only names, step-based checkpoints, TAO Deploy's results.json / report.csv, Sparse4D's per-scene
pickles — through the manifest, the resolver, the status reader and the AutoML controller's metric reading,
on a local store and on S3 (moto's server on loopback)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from taoflow.automl.controller import SweepController
from taoflow.kpis import canonical_metric, kpi_value, metric_in
from taoflow.launchers.base import EpochProgress
from taoflow.manifest import build_manifest
from taoflow.resolver import choose_parent, choose_resume, parent_model
from taoflow.skill import load_skill
from taoflow.status import StatusReader, final_and_best, read_kpis, read_status, run_outcome
from taoflow.store import ArtifactStore
from tests.s3server import s3_root, s3_server  # noqa: F401
from tests.tao_layouts import (
    LATEST,
    SCORE_KEY,
    eval_dict,
    write_evaluate,
    write_sparse4d_convert,
    write_train,
    write_trt_evaluate,
)

MODELS = ["rtdetr", "centerpose", "action_recognition", "sparse4d", "nvpanoptix3d"]
SCORES = [0.2, 0.6, 0.4, 0.5]  # the best validation is epoch 1, not the last
LOSSES = [9.0, 7.0, 4.0, 5.0]  # the lowest training loss is epoch 2


def _train(tmp_path, model: str, **kw):
    action = tmp_path / "runs" / model / "k" / "train"
    write_train(action, model, SCORES, steps=5, losses=LOSSES, **kw)
    return ArtifactStore(str(tmp_path)), action


@pytest.mark.parametrize("model", MODELS)
def test_best_for_hand_on_and_newest_for_resume_on_a_real_train_folder(model, tmp_path):
    store, action = _train(tmp_path, model)
    skill = load_skill(model)
    choice = choose_parent(store, str(action), skill=skill, parent_action="train")
    name = "model_epoch_001.pth" if model == "rtdetr" else "model_epoch_001_step_00010.pth"
    assert choice.entry.path == name, (choice.note, choice.rejected)
    assert choice.entry.metric_value == pytest.approx(metric_in({SCORE_KEY[model]: SCORES[1]},
                                                                skill.monitoring.metric) or SCORES[1])
    resume = choose_resume(store, str(action))
    assert resume.entry.path == ("model_epoch_003.pth" if model == "rtdetr" else "model_epoch_003_step_00020.pth")
    manifest = build_manifest(store, str(action), metric=skill.monitoring.metric,
                              direction=skill.monitoring.direction)
    assert manifest.status == "RUNNING"  # TAO's CLI never writes SUCCESS
    assert {e.path for e in manifest.of_kind("latest")} == {LATEST[model]}
    assert [e.epoch for e in manifest.of_kind("checkpoint")] == [0, 1, 2, 3]


@pytest.mark.parametrize("model", MODELS)
def test_status_reader_attributes_every_kpi_to_its_epoch(model, tmp_path):
    _, action = _train(tmp_path, model)
    records = read_status(action / "status.json")
    reader = StatusReader()
    events = reader.feed_all(records) + reader.close()
    progress = [e for e in events if isinstance(e, EpochProgress)]
    assert [p.epoch for p in progress] == [0, 1, 2, 3]
    for epoch, event in enumerate(progress):
        assert event.kpi[SCORE_KEY[model]] == pytest.approx(SCORES[epoch])  # strings read as numbers
        loss_key = "loss" if model == "sparse4d" else "train_loss"
        assert event.kpi[loss_key] == LOSSES[epoch]  # written after the epoch line, still that epoch's
        assert event.max_epoch == 3 and event.eta
    final, best = final_and_best(records, SCORE_KEY[model], "maximize")
    assert best[SCORE_KEY[model]] == pytest.approx(0.6) and final[SCORE_KEY[model]] == pytest.approx(0.5)
    assert run_outcome(records, None) == "SUCCESS"  # re-attached: "Train finished successfully." decides
    assert run_outcome(records, 0) == "SUCCESS" and run_outcome(records, 1) == "FAILURE"


@pytest.mark.parametrize("model", MODELS)
def test_automl_reads_its_metric_from_real_progress_lines(model, tmp_path):
    """The sweep controller's metric reading (what it reports to Optuna per epoch and at the end) on TAO's
    own names: RT-DETR's string val_mAP, Sparse4D's img_bbox_NuScenes/mAP for val_mAP, NVPanoptix3D's
    train_loss from the "Train metrics generated." line."""
    _, action = _train(tmp_path, model)
    skill = load_skill(model)
    reader = StatusReader()
    progress = [e for e in reader.feed_all(read_status(action / "status.json")) + reader.close()
                if isinstance(e, EpochProgress)]
    controller = SimpleNamespace(settings=SimpleNamespace(metric=skill.automl.metric))
    values = [SweepController._metric_of(controller, e.kpi) for e in progress]
    if skill.automl.metric == "train_loss":
        assert values == LOSSES
    else:
        expected = [kpi_value(metric_in(_eval(model, s), skill.automl.metric)) for s in SCORES]
        assert values == pytest.approx(expected) and None not in values


def _eval(model: str, score: float) -> dict:
    return {k: kpi_value(v) for k, v in eval_dict(model, score).items()}


def test_validation_every_other_epoch_leaves_the_others_without_a_score(tmp_path):
    """validation_interval 2: epochs 0 and 2 ran no validation; their lines repeat the last dict, which must
    not become their score, and their checkpoints are no candidates for best."""
    store, action = _train(tmp_path, "centerpose", validation_interval=2)
    kpis = read_kpis(read_status(action / "status.json"))
    assert [("val_3DIoU" in kpis.by_epoch[e]) for e in range(4)] == [False, True, False, True]
    choice = choose_parent(store, str(action), skill=load_skill("centerpose"), parent_action="train")
    assert choice.entry.epoch == 1
    assert any("no val_3DIoU KPI of its own" in why for _, why in choice.rejected)


def test_step_checkpoints_written_mid_epoch_carry_no_score(tmp_path):
    """checkpoint_interval_unit: step (all NVIDIA NVPanoptix3D specs): every 3 steps of 5 per epoch. Only a
    checkpoint at an epoch's last step holds a validated state."""
    store, action = _train(tmp_path, "nvpanoptix3d", unit="step", checkpoint_interval=3)
    manifest = build_manifest(store, str(action), metric="PRQ", direction="maximize")
    scored = {e.path: e.metric_value for e in manifest.of_kind("checkpoint")}
    assert scored["model_epoch_002_step_00015.pth"] == pytest.approx(0.4)  # 15 = end of epoch 2
    assert scored["model_epoch_001_step_00009.pth"] is None  # mid-epoch 1 (its end is step 10)
    choice = choose_parent(store, str(action), metric="PRQ", direction="maximize", parent_action="train")
    assert choice.entry.path == "model_epoch_002_step_00015.pth"
    assert choose_resume(store, str(action)).entry.path == "model_epoch_003_step_00018.pth"


def test_step_interval_longer_than_the_run_leaves_only_the_latest_file(tmp_path):
    """NVIDIA's NVPanoptix3D specs checkpoint every 1000–3000 steps: a short run writes no interval
    checkpoint, and Lightning saves its state as `<name>_latest.pth` — the only model to hand on."""
    store, action = _train(tmp_path, "nvpanoptix3d", unit="step", checkpoint_interval=1000)
    assert not (action / "nvpanoptix3d_model_latest.pth").is_symlink()
    assert parent_model(store, str(action), parent_action="train", metric="PRQ", direction="maximize") == \
        str(action / "nvpanoptix3d_model_latest.pth")
    assert choose_resume(store, str(action)).entry.kind == "latest"


def test_older_layout_nested_one_level_down_is_read_too(tmp_path):
    """TAO handed the step folder itself writes `<step>/train/…`: the same choices one level down."""
    store = ArtifactStore(str(tmp_path))
    step = tmp_path / "runs" / "rtdetr" / "k" / "train"
    write_train(step / "train", "rtdetr", SCORES, steps=5)
    assert parent_model(store, str(step), skill=load_skill("rtdetr"), parent_action="train") == \
        str(step / "train" / "model_epoch_001.pth")


def test_a_failure_line_or_a_missing_success_line_is_a_failure(tmp_path):
    _, action = _train(tmp_path, "rtdetr", finished=False)
    records = read_status(action / "status.json")
    assert run_outcome(records, 0) == "FAILURE"  # exit 0 but TAO never said it finished (Data Services)
    assert run_outcome(records, None) is None  # re-attached: nothing says it ended
    failed = records + [{"status": "FAILURE", "message": "Parameter validation error: bad"}]
    assert run_outcome(failed, 0) == "FAILURE" and run_outcome(failed, None) == "FAILURE"
    old = records + [{"status": "SUCCESS", "message": "train action completed successfully for rtdetr"}]
    assert run_outcome(old, None) == "SUCCESS"  # TAO Core's wrapper and older releases


@pytest.mark.parametrize("model", ["rtdetr", "centerpose"])
def test_pytorch_and_tensorrt_evaluations_compare_on_the_skills_metric(model, tmp_path):
    store = ArtifactStore(str(tmp_path))
    evaluate = write_evaluate(tmp_path / "e" / "evaluate", model, 0.61)
    trt = write_trt_evaluate(tmp_path / "t" / "trt_evaluate", model, 0.6)
    metric = load_skill(model).monitoring.metric
    torch_final, _ = final_and_best(read_status(evaluate / "status.json"), metric, "maximize")
    trt_manifest = build_manifest(store, str(trt))
    assert read_kpis(read_status(trt / "status.json")).final == {}  # Deploy's evaluate logs no KPI
    assert metric_in(torch_final, metric) == pytest.approx(0.61)
    assert metric_in(trt_manifest.evaluation, metric) == pytest.approx(0.6)
    assert not any("loss" in k for k in torch_final)


def test_metric_names_match_across_actions_and_images():
    assert canonical_metric("val_mAP50") == canonical_metric("test_mAP50") == canonical_metric("AP50") == "ap50"
    assert canonical_metric("val_mAP") == canonical_metric("img_bbox_NuScenes/mAP") == canonical_metric("AP")
    assert canonical_metric("val_acc") == canonical_metric("accuracy") != canonical_metric("m_accuracy")
    assert metric_in({"val_mAP": 0.3, "val_mAP50": 0.5}, "test_mAP50") == 0.5
    assert metric_in({"train_loss": 1.0}, "val_loss") is None


def test_sparse4d_converter_output_is_what_the_skill_hands_on(tmp_path):
    """The skill's ann_file is the converter's per-split folder; the emulator's Sparse4D reads such a folder
    of real-shaped pickles as TAO's dataset does (every *.pkl, infos sorted by scene and time)."""
    from taoflow.emulator.pickles import read_annotations
    from taoflow.spec import build_spec

    train = write_sparse4d_convert(tmp_path / "dataset_convert-train", "train",
                                   {"Warehouse_001": 2, "Warehouse_000": 3}, anchor="anchor_init.npy")
    evaluation = write_sparse4d_convert(tmp_path / "dataset_convert-eval", "val", {"Warehouse_002": 2})
    skill = load_skill("sparse4d")
    spec = build_spec(skill, "train", data={"train": str(tmp_path / "data-train"), "eval": str(tmp_path / "e")},
                      upstream={"dataset_convert:train": str(train), "dataset_convert:eval": str(evaluation)})
    assert spec["dataset"]["train_dataset"]["ann_file"] == str(train / "train")
    assert spec["dataset"]["val_dataset"]["ann_file"] == str(evaluation / "val")
    assert spec["dataset"]["test_dataset"]["ann_file"] == str(evaluation / "val")  # no inference role
    assert spec["model"]["head"]["instance_bank"]["anchor"] == str(train / "anchor_init.npy")
    infos = read_annotations(spec["dataset"]["train_dataset"]["ann_file"])["infos"]
    assert [(i["scene_name"], i["frame_idx"]) for i in infos][:4] == [
        ("Warehouse_000", 0), ("Warehouse_000", 1), ("Warehouse_000", 2), ("Warehouse_001", 0)]


def test_the_same_choices_on_s3(tmp_path, s3_root):  # noqa: F811
    """Uploaded as a launcher uploads (links become copies): same best, same resume."""
    local = tmp_path / "local" / "train"
    write_train(local, "rtdetr", SCORES, steps=5)
    store = ArtifactStore(s3_root)
    uri = store.results_uri("rtdetr", "s3key", "train")
    store.upload_dir(local, uri)
    skill = load_skill("rtdetr")
    assert parent_model(store, uri, skill=skill, parent_action="train") == store.join(uri, "model_epoch_001.pth")
    assert choose_resume(store, uri).entry.path == "model_epoch_003.pth"
