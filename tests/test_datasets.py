"""Sample data per model passes the preflight; broken datasets fail it with the role, the path and the problem."""

from __future__ import annotations

import json
import shutil
import tarfile

import pytest

from taoflow.cli import _register, run_cli
from taoflow.datasets import preflight_dataset, write_sample_data
from taoflow.datasets.images import image_size, png_bytes
from taoflow.errors import UserError
from tests.s3server import s3_root, s3_server  # noqa: F401

ROLES = {
    "rtdetr": ["train", "eval", "inference"],
    "centerpose": ["train", "eval", "inference", "calibration"],
    "action_recognition": ["train", "eval", "inference"],
    "sparse4d": ["train", "eval"],
    "nvpanoptix3d": ["train", "eval", "inference"],
}


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("samples")
    for model in ROLES:
        write_sample_data(model, root / model)
    return {model: root / model for model in ROLES}


@pytest.mark.parametrize("model", sorted(ROLES))
def test_sample_data_has_one_valid_folder_per_role(model, samples):
    assert sorted(p.name for p in samples[model].iterdir()) == sorted(ROLES[model])
    for role in ROLES[model]:
        assert preflight_dataset(model, role, str(samples[model] / role))


def test_sample_data_is_deterministic(tmp_path):
    a, b = write_sample_data("centerpose", tmp_path / "a"), write_sample_data("centerpose", tmp_path / "b")
    for x, y in zip(a, b, strict=True):
        for f in x.rglob("*"):
            if f.is_file():
                assert f.read_bytes() == (y / f.relative_to(x)).read_bytes()


def test_png_writer_makes_real_pngs():
    assert image_size(png_bytes(20, 10)) == (20, 10)


def test_cli_writes_sample_data(tmp_path, capsys):
    _register()
    assert run_cli(["sample-data", "nvpanoptix3d", str(tmp_path / "np")]) == 0
    out = capsys.readouterr().out
    assert "--data train=" in out and (tmp_path / "np" / "eval" / "meta" / "val.json").is_file()
    assert run_cli(["sample-data", "nosuchmodel", str(tmp_path / "x")]) == 2


def _copy(samples, model, tmp_path):
    dest = tmp_path / model
    shutil.copytree(samples[model], dest)
    return dest


@pytest.mark.parametrize(("model", "role", "breakage", "expected"), [
    ("rtdetr", "train", lambda d: (d / "train" / "annotations.json").unlink(), "annotations.json"),
    ("rtdetr", "eval", lambda d: next((d / "eval" / "images").iterdir()).unlink(), "missing"),
    ("rtdetr", "train", lambda d: (d / "train" / "annotations.json").write_text("{not json"), "not valid JSON"),
    ("rtdetr", "inference", lambda d: (d / "inference" / "label_map.txt").write_text(""), "label map is empty"),
    ("centerpose", "eval", lambda d: (d / "eval" / "test.tar.gz").unlink(), "test.tar.gz"),
    ("centerpose", "train", lambda d: (d / "train" / "train.tar.gz").write_bytes(b"junk"), "tar"),
    ("action_recognition", "train", lambda d: (d / "train" / "train.tar.gz").unlink(), "train.tar.gz"),
    ("sparse4d", "train", lambda d: next((d / "train" / "train").iterdir()).joinpath("calibration.json").unlink(),
     "calibration.json"),
    ("nvpanoptix3d", "train", lambda d: (d / "train" / "meta" / "frustum_mask.npz").unlink(), "frustum_mask.npz"),
    ("nvpanoptix3d", "eval", lambda d: (d / "eval" / "meta" / "colormap.json").write_text(json.dumps([{"id": 1}])),
     "trainId"),
])
def test_broken_dataset_names_role_path_and_problem(samples, tmp_path, model, role, breakage, expected):
    root = _copy(samples, model, tmp_path)
    breakage(root)
    with pytest.raises(UserError) as err:
        preflight_dataset(model, role, str(root / role))
    text = str(err.value)
    assert f"dataset '{role}'" in text and str(root / role) in text and expected in text


def test_action_recognition_archive_without_its_folder_is_refused(samples, tmp_path):
    root = _copy(samples, "action_recognition", tmp_path)
    with tarfile.open(root / "train" / "train.tar.gz", "w:gz") as tar:
        tar.add(root / "inference", arcname="wrong_top")
    with pytest.raises(UserError, match="top-level 'train/' folder"):
        preflight_dataset("action_recognition", "train", str(root / "train"))


def test_unknown_role_and_missing_folder(samples, tmp_path):
    with pytest.raises(UserError, match="roles"):
        preflight_dataset("sparse4d", "calibration", str(samples["sparse4d"] / "train"))
    with pytest.raises(UserError, match="not a folder"):
        preflight_dataset("rtdetr", "train", str(tmp_path / "absent"))


def test_remote_dataset_is_checked_with_one_listing(samples, s3_root):  # noqa: F811
    from taoflow.store import ArtifactStore

    store = ArtifactStore(s3_root)
    uri = store.join(s3_root, "data", "rtdetr", "train")
    store.upload_dir(samples["rtdetr"] / "train", uri)
    assert "files" in preflight_dataset("rtdetr", "train", uri)
    with pytest.raises(UserError, match=r"lacks: label_map\.txt"):
        preflight_dataset("rtdetr", "inference", uri)
