"""Checkpoint manifests: name parsing, status.json KPI joining, and whole results folders on local and S3."""

# ruff: noqa: F811  (test functions take the imported fixtures as parameters)

from __future__ import annotations

import pytest

from taoflow.manifest import build_manifest, load_manifest, parse_name, parse_status
from taoflow.store import ArtifactStore
from tests.checkpoint_layouts import CKPT, put_results, status_text
from tests.s3server import any_store_root, s3_root, s3_server  # noqa: F401  (pytest fixtures)


@pytest.mark.parametrize(
    ("name", "kind", "epoch", "step"),
    [
        ("model_epoch_000_step_00020.pth", "checkpoint", 0, 20),
        ("model_epoch_12_step_340.pth", "checkpoint", 12, 340),  # unpadded
        ("model_epoch_7.pth", "checkpoint", 7, None),
        ("epoch=3-step=100.ckpt", "checkpoint", 3, 100),  # Lightning
        ("model_best_012.pth", "best", 12, None),
        ("best_model.pth", "best", None, None),
        ("best-epoch=4-val_mAP=0.61.ckpt", "best", 4, None),
        ("rtdetr_model_latest.pth", "latest", None, None),
        ("last.ckpt", "latest", None, None),
        ("weights.tlt", "checkpoint", None, None),
        ("model.hdf5", "checkpoint", None, None),
        ("model.onnx", "onnx", None, None),
        ("model_2d.onnx", "onnx", None, None),
        ("model.engine", "engine", None, None),
        ("cal.bin", "cal_cache", None, None),
        ("calibration.tensorfile", "cal_cache", None, None),
        ("status.json", None, None, None),
        ("logs/train.log", None, None, None),
        ("train/model_epoch_001_step_00040.pth", "checkpoint", 1, 40),  # nested: basename decides
        ("run_epoch_9/model_epoch_001_step_00040.pth", "checkpoint", 1, 40),  # path numbers ignored
    ],
)
def test_parse_name(name, kind, epoch, step):
    parsed = parse_name(name)
    assert (parsed.kind, parsed.epoch, parsed.step) == (kind, epoch, step)


def test_parse_name_incomplete_suffix_and_directories():
    parsed = parse_name("model_epoch_003_step_00080.pth.partial")
    assert (parsed.kind, parsed.epoch, parsed.step, parsed.incomplete_suffix) == ("checkpoint", 3, 80, ".partial")
    assert parse_name("model.onnx.tmp").incomplete_suffix == ".tmp"
    assert (parse_name("epoch_5", is_dir=True).kind, parse_name("epoch_5", is_dir=True).epoch) == ("checkpoint", 5)
    assert parse_name("step_1000", is_dir=True).step == 1000
    assert parse_name("train", is_dir=True).kind is None
    assert parse_name("some.pth", is_link=True).kind == "latest"


def test_parse_status_sticky_kpis_belong_to_the_epoch_that_changed_them():
    text = status_text([
        {"epoch": 0, "step": 10, "kpi": {"val_mAP50": 0.2, "val_mAP": 0.1}, "graphical": {"train_loss": 4.0}},
        {"epoch": 1, "step": 20, "graphical": {"train_loss": 3.0}},  # no validation: kpi only repeated
        {"epoch": 2, "step": 30, "kpi": {"val_mAP50": 0.2, "val_mAP": 0.15}},  # genuine tie on mAP50
    ]) + '{"status": "RUNNING", "epoch": 3, "kpi": {"val_mAP50": 0.'  # a line being written
    kpis = parse_status(text)
    assert kpis.by_epoch[0] == {"val_mAP50": 0.2, "val_mAP": 0.1, "train_loss": 4.0}
    assert kpis.by_epoch[1] == {"train_loss": 3.0}
    assert kpis.by_epoch[2] == {"val_mAP50": 0.2, "val_mAP": 0.15}
    assert kpis.status == "SUCCESS" and kpis.max_epoch == 2 and kpis.last_epoch == 2
    assert kpis.final["val_mAP"] == 0.15


def test_parse_status_losses_in_the_kpi_dict_do_not_refresh_a_stale_validation_metric():
    """The emulator (and some TAO trainers) log train_loss inside `kpi`; it changes every epoch."""
    kpis = parse_status(status_text([
        {"epoch": 0, "kpi": {"val_acc": 0.5, "train_loss": 2.0}},
        {"epoch": 1, "kpi": {"val_acc": 0.5, "train_loss": 1.5}},  # validation every 2nd epoch: repeat
        {"epoch": 2, "kpi": {"val_acc": 0.7, "train_loss": 1.1}},
    ]))
    assert kpis.by_epoch[1] == {"train_loss": 1.5}
    assert kpis.by_epoch[2] == {"val_acc": 0.7, "train_loss": 1.1}


def _full_layout(train_dir: str = "train/") -> dict[str, bytes | str]:
    return {
        f"{train_dir}model_epoch_000_step_00010.pth": CKPT,
        f"{train_dir}model_epoch_1_step_20.pth": CKPT,  # unpadded
        f"{train_dir}model_epoch_002_step_00030.pth": CKPT,
        f"{train_dir}model_best_001.pth": CKPT,
        f"{train_dir}model_epoch_003_step_00040.pth": b"",  # size 0: still being written
        f"{train_dir}model_epoch_004_step_00050.pth.tmp": CKPT,
        "lightning/epoch=2-step=30.ckpt": CKPT,
        "sharded/epoch_2/shard_0.distcp": CKPT,
        "sharded/epoch_2/shard_1.distcp": CKPT,
        "model.onnx": b"onnx",
        "model.engine": b"engine",
        "cal.bin": b"cal",
        "logs/train.log": "Epoch 0 ...",
        "status.json": status_text([
            {"epoch": 0, "step": 10, "kpi": {"val_mAP50": 0.30}},
            {"epoch": 1, "step": 20, "kpi": {"val_mAP50": 0.55}},
            {"epoch": 2, "step": 30, "kpi": {"val_mAP50": 0.50}},
            {"epoch": 3, "step": 40},
        ]),
    }


def test_build_manifest_describes_every_checkpoint_and_product(any_store_root, tmp_path):
    store = ArtifactStore(any_store_root)
    results = store.results_uri("rtdetr", "k", "train")
    put_results(store, results, tmp_path / "tree", _full_layout(),
                links={"train/rtdetr_model_latest.pth": "model_epoch_002_step_00030.pth"})

    manifest = build_manifest(store, results, metric="val_mAP50", direction="maximize")
    by_path = {e.path: e for e in manifest.entries}
    assert set(by_path) == {
        "train/model_epoch_000_step_00010.pth", "train/model_epoch_1_step_20.pth",
        "train/model_epoch_002_step_00030.pth", "train/model_best_001.pth",
        "train/model_epoch_003_step_00040.pth", "train/model_epoch_004_step_00050.pth.tmp",
        "train/rtdetr_model_latest.pth", "lightning/epoch=2-step=30.ckpt", "sharded/epoch_2",
        "model.onnx", "model.engine", "cal.bin",
    }
    assert manifest.files_seen == 15 and manifest.status == "SUCCESS"
    e1 = by_path["train/model_epoch_1_step_20.pth"]
    assert (e1.kind, e1.epoch, e1.step, e1.size, e1.metric_value) == ("checkpoint", 1, 20, len(CKPT), 0.55)
    assert e1.uri == store.join(results, "train/model_epoch_1_step_20.pth") and e1.version
    assert by_path["train/model_best_001.pth"].kind == "best"
    assert by_path["train/model_best_001.pth"].metric_value == 0.55
    assert by_path["train/rtdetr_model_latest.pth"].kind == "latest"
    assert by_path["lightning/epoch=2-step=30.ckpt"].metric_value == 0.50
    sharded = by_path["sharded/epoch_2"]
    assert (sharded.is_dir, sharded.epoch, sharded.size, sharded.complete) == (True, 2, 2 * len(CKPT), True)
    empty = by_path["train/model_epoch_003_step_00040.pth"]
    assert not empty.complete and "size 0" in empty.problem and empty.metric_value is None  # sticky kpi only
    assert not by_path["train/model_epoch_004_step_00050.pth.tmp"].complete
    assert [e.kind for e in manifest.entries if e.path in ("model.onnx", "model.engine", "cal.bin")] == [
        "cal_cache", "engine", "onnx"]
    assert manifest.best_kpis() == {"val_mAP50": 0.55}
    assert manifest.status_files == [store.join(results, "status.json")]


def test_manifest_is_stored_beside_results_and_rebuilt_on_demand(any_store_root, tmp_path):
    store = ArtifactStore(any_store_root)
    results = store.results_uri("centerpose", "k", "train")
    put_results(store, results, tmp_path / "a", {
        "model_epoch_000_step_00005.pth": CKPT,
        "status.json": status_text([{"epoch": 0, "step": 5, "kpi": {"val_3DIoU": 0.4}}]),
    })
    assert load_manifest(store, results) is None
    first = build_manifest(store, results, metric="val_3DIoU", direction="maximize", save=True)
    stored = load_manifest(store, results)
    assert stored is not None and stored.to_dict() == first.to_dict()
    assert stored.entries[0].metric_value == 0.4

    store.write_bytes_atomic(store.join(results, "model_epoch_001_step_00010.pth"), CKPT)
    rebuilt = build_manifest(store, results, save=True)
    assert [e.epoch for e in rebuilt.entries] == [0, 1]  # manifest.json itself is not an entry
    assert [e.epoch for e in load_manifest(store, results).entries] == [0, 1]


def test_empty_folder_builds_an_empty_manifest_without_writing(any_store_root):
    store = ArtifactStore(any_store_root)
    results = store.results_uri("rtdetr", "fresh", "train")
    manifest = build_manifest(store, results, save=True)
    assert manifest.entries == [] and manifest.files_seen == 0
    assert not store.exists(store.join(results, "manifest.json"))
