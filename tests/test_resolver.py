"""The handoff resolver on local and s3:// (moto server) stores: the same tests, the same answers."""

# ruff: noqa: F811  (test functions take the imported fixtures as parameters)

from __future__ import annotations

import inspect
import re
import typing

import pytest

from taoflow import resolver
from taoflow.errors import UserError
from taoflow.resolver import NoCandidate
from taoflow.runs import ActionRun
from taoflow.skill import HandoffName, load_skill
from taoflow.store import ArtifactStore
from tests.checkpoint_layouts import CKPT, put_results, status_text
from tests.s3server import any_store_root, s3_root, s3_server  # noqa: F401  (pytest fixtures)


@pytest.fixture
def store(any_store_root) -> ArtifactStore:
    return ArtifactStore(any_store_root)


def _train_run(store, tmp_path, files, links=None, key="k"):
    results = store.results_uri("rtdetr", key, "train")
    put_results(store, results, tmp_path / f"tree-{key}", files, links)
    return results


def name(uri: str) -> str:
    return uri.rsplit("/", 1)[-1]


# ------------------------------------------------------------------------------------ parent_model
def test_best_by_skill_metric_maximize_joins_kpi_of_the_checkpoint_epoch(store, tmp_path):
    """rtdetr monitors val_mAP50 (maximize): the best epoch wins even though later epochs exist."""
    results = _train_run(store, tmp_path, {
        "train/model_epoch_000_step_00010.pth": CKPT,
        "train/model_epoch_001_step_00020.pth": CKPT,
        "train/model_epoch_002_step_00030.pth": CKPT,
        "train/model_epoch_003_step_00040.pth": CKPT,
        "status.json": status_text([
            {"epoch": 0, "step": 10, "kpi": {"val_mAP50": 0.31}},
            {"epoch": 1, "step": 20, "kpi": {"val_mAP50": 0.62}},
            {"epoch": 2, "step": 30, "kpi": {"val_mAP50": 0.58}},
            {"epoch": 3, "step": 40, "kpi": {"val_mAP50": 0.60}},
        ]),
    }, links={"train/rtdetr_model_latest.pth": "model_epoch_003_step_00040.pth"})
    skill = load_skill("rtdetr")
    chosen = resolver.parent_model(store, results, skill=skill, parent_action="train")
    assert chosen == store.join(results, "train/model_epoch_001_step_00020.pth")
    assert resolver.parent_model_folder(store, results, skill=skill) == store.join(results, "train")


def test_best_by_metric_to_minimise_given_by_the_caller(store, tmp_path):
    results = _train_run(store, tmp_path, {
        "model_epoch_0_step_5.pth": CKPT,
        "model_epoch_1_step_10.pth": CKPT,
        "model_epoch_2_step_15.pth": CKPT,
        "status.json": status_text([
            {"epoch": 0, "step": 5, "graphical": {"train_loss": 3.0}},
            {"epoch": 1, "step": 10, "graphical": {"train_loss": 1.2}},
            {"epoch": 2, "step": 15, "graphical": {"train_loss": 1.9}},
        ]),
    })
    assert name(resolver.parent_model(store, results, metric="train_loss")) == "model_epoch_1_step_10.pth"
    # nvpanoptix3d names train_loss as its AutoML metric (minimize): the skill supplies the direction.
    pan = load_skill("nvpanoptix3d")
    assert resolver.monitoring_for(pan, "train_loss") == ("train_loss", "minimize")
    assert name(resolver.parent_model(store, results, skill=pan, metric="train_loss")) == (
        "model_epoch_1_step_10.pth")
    # The same folder picked by maximising the same metric gives the other end.
    assert name(resolver.parent_model(store, results, metric="train_loss", direction="maximize")) == (
        "model_epoch_0_step_5.pth")


def test_ties_go_to_the_later_epoch_and_exact_names_beat_best_copies(store, tmp_path):
    results = _train_run(store, tmp_path, {
        "model_epoch_000_step_00010.pth": CKPT,
        "model_epoch_001_step_00020.pth": CKPT,
        "model_epoch_002_step_00030.pth": CKPT,
        "model_best_002.pth": CKPT,
        "status.json": status_text([
            {"epoch": 0, "step": 10, "kpi": {"val_mAP50": 0.5, "val_mAP": 0.30}},
            {"epoch": 1, "step": 20, "kpi": {"val_mAP50": 0.4, "val_mAP": 0.31}},
            {"epoch": 2, "step": 30, "kpi": {"val_mAP50": 0.5, "val_mAP": 0.29}},
        ]),
    })
    choice = resolver.choose_parent(store, results, skill=load_skill("rtdetr"))
    assert choice.entry.path == "model_epoch_002_step_00030.pth"
    reasons = dict(choice.rejected)
    assert "ties with" in reasons["model_epoch_000_step_00010.pth"]
    assert "ties with" in reasons["model_best_002.pth"]


def test_checkpoint_without_kpi_is_rejected_when_others_have_one(store, tmp_path):
    """Validation every 2 epochs: epoch 2 only repeats epoch 1's sticky KPI; epoch 3 was never validated."""
    results = _train_run(store, tmp_path, {
        "model_epoch_001_step_00020.pth": CKPT,
        "model_epoch_002_step_00030.pth": CKPT,
        "model_epoch_003_step_00040.pth": CKPT,
        "status.json": status_text([
            {"epoch": 0, "step": 10, "kpi": {}},
            {"epoch": 1, "step": 20, "kpi": {"val_mAP50": 0.45}},
            {"epoch": 2, "step": 30},
        ]),
    })
    choice = resolver.choose_parent(store, results, skill=load_skill("rtdetr"))
    assert choice.entry.path == "model_epoch_001_step_00020.pth"
    reasons = dict(choice.rejected)
    assert "no val_mAP50 KPI of its own" in reasons["model_epoch_002_step_00030.pth"]
    assert "other checkpoints have one" in reasons["model_epoch_003_step_00040.pth"]


def test_without_any_kpi_tao_best_file_then_newest(store, tmp_path):
    results = _train_run(store, tmp_path, {
        "model_epoch_000_step_00010.pth": CKPT,
        "model_best_000.pth": CKPT,
        "model_epoch_001_step_00020.pth": CKPT,
    })
    choice = resolver.choose_parent(store, results, skill=load_skill("rtdetr"))
    assert choice.entry.path == "model_best_000.pth"
    assert "no checkpoint has a val_mAP50 KPI" in choice.note
    other = _train_run(store, tmp_path, {"a/model_epoch_000_step_00010.pth": CKPT,
                                          "b/model_epoch_001_step_00020.pth": CKPT}, key="k2")
    assert resolver.parent_model(store, other).endswith("b/model_epoch_001_step_00020.pth")


def test_exact_epoch_and_step_including_unpadded_and_lightning_names(store, tmp_path):
    results = _train_run(store, tmp_path, {
        "model_epoch_000_step_00010.pth": CKPT,
        "model_epoch_1_step_20.pth": CKPT,
        "model_epoch_001_step_00015.pth": CKPT,
        "lightning_logs/checkpoints/epoch=2-step=30.ckpt": CKPT,
    })
    assert name(resolver.parent_model(store, results, epoch=1)) == "model_epoch_1_step_20.pth"
    assert name(resolver.parent_model(store, results, epoch=1, step=15)) == "model_epoch_001_step_00015.pth"
    assert name(resolver.parent_model(store, results, step=30)) == "epoch=2-step=30.ckpt"
    with pytest.raises(NoCandidate) as err:
        resolver.parent_model(store, results, epoch=7)
    text = str(err.value)
    assert "no checkpoint for epoch 7 qualifies" in text
    for listed in ("model_epoch_000_step_00010.pth", "model_epoch_1_step_20.pth", "epoch=2-step=30.ckpt"):
        assert re.search(re.escape(listed) + r".*not the requested epoch 7", text)


def test_latest_link_only_when_asked(store, tmp_path):
    results = _train_run(store, tmp_path, {
        "model_epoch_000_step_00010.pth": CKPT,
        "model_epoch_001_step_00020.pth": CKPT,
    }, links={"rtdetr_model_latest.pth": "model_epoch_001_step_00020.pth"})
    default = resolver.choose_parent(store, results)
    assert default.entry.path == "model_epoch_001_step_00020.pth"
    assert "used only when latest is asked for" in dict(default.rejected)["rtdetr_model_latest.pth"]
    assert name(resolver.parent_model(store, results, latest=True)) == "rtdetr_model_latest.pth"
    without_link = _train_run(store, tmp_path, {"model_epoch_004_step_00050.pth": CKPT}, key="k2")
    assert name(resolver.parent_model(store, without_link, latest=True)) == "model_epoch_004_step_00050.pth"


def test_export_parent_hands_onnx_engine_parent_hands_engine(store, tmp_path):
    skill = load_skill("rtdetr")
    export = store.results_uri("rtdetr", "e", "export")
    put_results(store, export, tmp_path / "export", {
        "model.onnx": b"onnx", "model.onnx.partial": b"half", "model_epoch_000_step_00001.pth": CKPT,
    })
    assert resolver.parent_model(store, export, skill=skill, parent_action="export") == store.join(
        export, "model.onnx")
    engine = store.results_uri("rtdetr", "g", "gen_trt_engine")
    put_results(store, engine, tmp_path / "engine", {"model.engine": b"plan", "cal.bin": b"cal",
                                                     "model.onnx": b"onnx"})
    assert name(resolver.parent_model(store, engine, skill=skill, parent_action="gen_trt_engine")) == (
        "model.engine")
    # Without parent_action, the folder's name says which action wrote it.
    assert name(resolver.parent_model(store, engine)) == "model.engine"
    with pytest.raises(NoCandidate) as err:
        resolver.parent_model(store, export, parent_action="gen_trt_engine")
    assert "model.onnx: onnx file, not a TensorRT engine" in str(err.value)


def test_incomplete_files_are_never_candidates(store, tmp_path):
    results = _train_run(store, tmp_path, {
        "model_epoch_000_step_00010.pth": CKPT,
        "model_epoch_001_step_00020.pth": b"",
        "model_epoch_002_step_00030.pth.tmp": CKPT,
        "status.json": status_text([
            {"epoch": 0, "step": 10, "kpi": {"val_mAP50": 0.1}},
            {"epoch": 1, "step": 20, "kpi": {"val_mAP50": 0.9}},
            {"epoch": 2, "step": 30, "kpi": {"val_mAP50": 0.95}},
        ]),
    })
    choice = resolver.choose_parent(store, results, skill=load_skill("rtdetr"))
    assert choice.entry.path == "model_epoch_000_step_00010.pth"
    reasons = dict(choice.rejected)
    assert "size 0" in reasons["model_epoch_001_step_00020.pth"]
    assert "'.tmp' suffix" in reasons["model_epoch_002_step_00030.pth.tmp"]
    assert name(resolver.resume_model(store, results)) == "model_epoch_000_step_00010.pth"


def test_nothing_qualifies_lists_every_candidate_and_reason(store, tmp_path):
    results = _train_run(store, tmp_path, {
        "model_epoch_000_step_00010.pth": b"",
        "model.onnx": b"onnx",
        "logs/train.log": "x",
    }, links={"rtdetr_model_latest.pth": "model_epoch_000_step_00010.pth"})
    with pytest.raises(NoCandidate) as err:
        resolver.parent_model(store, results, skill=load_skill("rtdetr"), parent_action="train")
    assert isinstance(err.value, UserError)
    assert dict(err.value.rejected) == {
        "model.onnx": "onnx file, not a checkpoint",
        "model_epoch_000_step_00010.pth": "incomplete: size 0",
        "rtdetr_model_latest.pth": "incomplete: size 0",
    }
    empty = store.results_uri("rtdetr", "none", "train")
    with pytest.raises(NoCandidate, match="among the 0 file"):
        resolver.parent_model(store, empty)


# ------------------------------------------------------------------------------------ resume_model
def test_resume_takes_newest_of_the_current_run_never_the_parent(store, tmp_path):
    parent = _train_run(store, tmp_path, {"model_epoch_009_step_00100.pth": CKPT}, key="parent")
    current = store.results_uri("rtdetr", "child", "train")
    assert resolver.resume_model(store, current) is None
    put_results(store, current, tmp_path / "child", {
        "model_epoch_000_step_00010.pth": CKPT,
        "model_epoch_001_step_00020.pth": CKPT,
        "model_epoch_001_step_00025.pth": CKPT,
        "model_best_000.pth": CKPT,
    }, links={"rtdetr_model_latest.pth": "model_epoch_001_step_00025.pth"})
    assert resolver.resume_model(store, current) == store.join(current, "model_epoch_001_step_00025.pth")
    assert resolver.resume_model(store, parent) == store.join(parent, "model_epoch_009_step_00100.pth")


@pytest.mark.parametrize(
    ("later", "expected"),
    [
        (None, "model_epoch_000_step_00020.pth"),
        (CKPT, "model_epoch_001_step_00040.pth"),
        (b"", "model_epoch_000_step_00020.pth"),
    ],
    ids=["later-absent", "later-present", "later-incomplete"],
)
def test_nvpanoptix3d_epoch_boundary_resume(store, tmp_path, later, expected):
    """The smoke run wrote model_epoch_000_step_00020.pth; a resume must continue from it until the retrain
    writes model_epoch_001_step_00040.pth, and needs num_epochs >= 3 to get there (reference notes)."""
    results = store.results_uri("nvpanoptix3d", "smoke", "train")
    files = {"model_epoch_000_step_00020.pth": CKPT,
             "status.json": status_text([{"epoch": 0, "step": 20, "graphical": {"train_loss": 2.5}}])}
    if later is not None:
        files["model_epoch_001_step_00040.pth"] = later
    put_results(store, results, tmp_path / "pan", files,
                links={"nvpanoptix3d_model_latest.pth": "model_epoch_000_step_00020.pth"})
    resume = resolver.resume_model(store, results)
    assert name(resume) == expected
    assert resolver.num_epochs_to_progress(resume) == (3 if expected.startswith("model_epoch_000") else 4)
    # ptm is dropped exactly when a resume checkpoint exists
    assert resolver.ptm_if_no_resume_model(store, results, "s3://ptm/model.pth") is None


# ------------------------------------------------------------------------------------ the rest
def test_ptm_variants_and_output_paths(store, tmp_path):
    fresh = store.results_uri("rtdetr", "fresh", "train")
    assert resolver.ptm(None) is None and resolver.ptm("ngc://x/y.pth") == "ngc://x/y.pth"
    assert resolver.ptm_if_no_resume_model(store, fresh, "ngc://x/y.pth") == "ngc://x/y.pth"
    parent = _train_run(store, tmp_path, {"model_epoch_000_step_00001.pth": CKPT}, key="p")
    assert name(resolver.parent_model_or_ptm(store, parent, "ngc://x/y.pth")) == "model_epoch_000_step_00001.pth"
    assert resolver.parent_model_or_ptm(store, None, "ngc://x/y.pth") == "ngc://x/y.pth"
    out = store.results_uri("rtdetr", "x", "export")
    assert resolver.output_dir(out) == out
    assert resolver.create_onnx_file(out, model="rtdetr") == out + "/model.onnx"
    assert resolver.create_onnx_file_2d(out) == out + "/model_2d.onnx"
    assert resolver.create_engine_file(out) == out + "/model.engine"
    assert resolver.create_cal_cache(out) == out + "/cal.bin"


def test_key_is_a_reference_never_the_value(monkeypatch):
    monkeypatch.setenv("TAO_ENCRYPTION_KEY", "tlt_encode_value")
    ref = resolver.key()
    assert ref.env == "TAO_ENCRYPTION_KEY" and "tlt_encode_value" not in repr(ref) + str(ref)
    assert ref.reveal() == "tlt_encode_value"
    run = ActionRun(model="rtdetr", action="train", spec={}, image="i", run_key="k", results_uri="/r",
                    secret_overrides=ref.override_for("encryption_key"))
    assert "tlt_encode_value" not in str(run.to_dict())
    monkeypatch.delenv("TAO_ENCRYPTION_KEY")
    with pytest.raises(UserError, match="set the environment variable TAO_ENCRYPTION_KEY"):
        resolver.key()

    vault = {"tao-key-block": "from-a-block"}
    block = resolver.key("tao-key-block", secret_source=vault.get, source_label="prefect-secret")
    assert (block.env, block.name, block.source) == ("TAO_ENCRYPTION_KEY", "tao-key-block", "prefect-secret")
    assert block.reveal(vault.get) == "from-a-block" and "from-a-block" not in repr(block)
    with pytest.raises(UserError, match="create the secret 'other'"):
        resolver.key("other", secret_source=vault.get)


def test_every_handoff_name_of_the_skills_has_a_resolver_function():
    assert set(resolver.HANDOFFS) == set(typing.get_args(HandoffName))
    for fn in resolver.HANDOFFS.values():
        assert fn.__doc__, fn.__name__


def test_resolver_has_no_branch_on_the_storage_backend():
    source = inspect.getsource(resolver)
    for backend_word in ("s3", "is_local", "protocol", "local_path", "fsspec", "os.path", "boto"):
        assert not re.search(rf"\b{re.escape(backend_word)}\b", source), backend_word
