"""ArtifactStore against a local root and against s3:// on moto's S3 server (127.0.0.1, through s3fs)."""

# ruff: noqa: F811  (test functions take the imported fixtures as parameters)

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import boto3
import pytest

from taoflow.runs import ActionResult
from taoflow.store import ArtifactStore, _s3_options
from tests.s3server import BUCKET, any_store_root, s3_root, s3_server  # noqa: F401  (pytest fixtures)


def test_default_root_is_taoflow_store_env_then_dot_taoflow(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TAOFLOW_STORE", raising=False)
    assert ArtifactStore().root == str(tmp_path / ".taoflow")
    monkeypatch.setenv("TAOFLOW_STORE", str(tmp_path / "elsewhere"))
    assert ArtifactStore().root == str(tmp_path / "elsewhere")
    assert ArtifactStore("file://" + str(tmp_path / "x")).root == str(tmp_path / "x")


def test_s3_options_honour_standard_aws_environment(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://generic:9000")
    monkeypatch.setenv("AWS_REGION", "eu-west-3")
    assert _s3_options()["client_kwargs"] == {"endpoint_url": "http://generic:9000", "region_name": "eu-west-3"}
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://s3-only:9000")
    assert _s3_options()["client_kwargs"]["endpoint_url"] == "http://s3-only:9000"


def test_results_uri_layout(any_store_root):
    store = ArtifactStore(any_store_root + "/")
    assert store.root == any_store_root.rstrip("/")
    assert store.results_uri("rtdetr", "abc123", "train") == f"{store.root}/runs/rtdetr/abc123/train"
    assert store.join(store.root, "a/", "/b") == f"{store.root}/a/b"


def test_json_and_text_roundtrip_atomic_overwrite(any_store_root):
    store = ArtifactStore(any_store_root)
    uri = store.join(store.results_uri("rtdetr", "k", "train"), "manifest.json")
    assert not store.exists(uri)
    with pytest.raises(FileNotFoundError):
        store.read_json(uri)
    store.write_json_atomic(uri, {"entries": [1, 2]})
    store.write_json_atomic(uri, {"entries": [3]})
    assert store.read_json(uri) == {"entries": [3]}
    store.write_text_atomic(store.join(store.root, "note.txt"), "hello")
    assert store.read_text(store.join(store.root, "note.txt")) == "hello"
    names = [e.path for e in store.list_files(store.root, include_dirs=False)]
    assert sorted(names) == ["note.txt", "runs/rtdetr/k/train/manifest.json"]  # no temp files left behind


def test_local_atomic_write_keeps_old_content_when_replace_fails(tmp_path, monkeypatch):
    store = ArtifactStore(tmp_path)
    uri = store.join(store.root, "result.json")
    store.write_json_atomic(uri, {"v": 1})

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        store.write_json_atomic(uri, {"v": 2})
    monkeypatch.undo()
    assert store.read_json(uri) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_list_files_is_recursive_with_sizes_versions_and_dirs(any_store_root, tmp_path):
    store = ArtifactStore(any_store_root)
    results = store.results_uri("rtdetr", "k", "train")
    src = tmp_path / "src"
    (src / "train").mkdir(parents=True)
    (src / "train" / "model_epoch_000_step_00010.pth").write_bytes(b"12345")
    (src / "status.json").write_text("{}\n")
    os.symlink("train/model_epoch_000_step_00010.pth", src / "rtdetr_model_latest.pth")
    store.upload_dir(src, results)

    entries = {e.path: e for e in store.list_files(results)}
    assert set(entries) == {"train", "train/model_epoch_000_step_00010.pth", "status.json",
                            "rtdetr_model_latest.pth"}
    ckpt = entries["train/model_epoch_000_step_00010.pth"]
    assert ckpt.size == 5 and not ckpt.is_dir and ckpt.version
    assert ckpt.uri == store.join(results, "train/model_epoch_000_step_00010.pth")
    assert entries["train"].is_dir
    latest = entries["rtdetr_model_latest.pth"]
    assert latest.size == 5
    if store.is_local:
        assert latest.is_link is True and ckpt.is_link is False
        assert os.path.islink(store.local_path(latest.uri))
    else:
        assert latest.is_link is None and ckpt.etag == hashlib.md5(b"12345").hexdigest()
    assert store.list_files(store.join(results, "missing")) == []


def test_listing_sees_objects_written_by_another_client(s3_root):
    """s3fs caches listings; the store must invalidate so files a training pod uploads are seen."""
    store = ArtifactStore(s3_root)
    results = store.results_uri("rtdetr", "k", "train")
    store.write_text_atomic(store.join(results, "status.json"), "{}\n")
    assert [e.path for e in store.list_files(results)] == ["status.json"]
    client = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    key = results.split(f"s3://{BUCKET}/", 1)[1] + "/model_epoch_000_step_00010.pth"
    client.put_object(Bucket=BUCKET, Key=key, Body=b"w")
    assert [e.path for e in store.list_files(results)] == ["model_epoch_000_step_00010.pth", "status.json"]
    assert store.exists(store.join(results, "model_epoch_000_step_00010.pth"))


def test_upload_download_roundtrip(any_store_root, tmp_path):
    store = ArtifactStore(any_store_root)
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    (src / "a" / "b" / "x.onnx").write_bytes(b"onnx")
    (src / "top.txt").write_text("t")
    uri = store.join(store.root, "data")
    written = store.upload_dir(src, uri)
    assert sorted(written) == sorted([store.join(uri, "a/b/x.onnx"), store.join(uri, "top.txt")])
    single = store.upload_file(src / "top.txt", store.join(store.root, "single.txt"))
    assert store.read_text(single) == "t"

    out = store.download(uri, tmp_path / "out")
    assert (out / "a" / "b" / "x.onnx").read_bytes() == b"onnx" and (out / "top.txt").read_text() == "t"
    one = store.download(store.join(uri, "a/b/x.onnx"), tmp_path / "one.onnx")
    assert one.read_bytes() == b"onnx"
    with pytest.raises(FileNotFoundError):
        store.download(store.join(store.root, "nothing-here"), tmp_path / "none")


def test_local_path_only_for_local_roots(any_store_root):
    store = ArtifactStore(any_store_root)
    local = store.local_path(store.root)
    assert (local == Path(store.root)) if store.is_local else local is None


def test_digest_tracks_content(any_store_root):
    store = ArtifactStore(any_store_root)
    uri = store.join(store.root, "weights.pth")
    store.write_bytes_atomic(uri, b"first")
    first = store.digest(uri)
    if store.is_local:
        assert first == "sha256:" + hashlib.sha256(b"first").hexdigest()
    else:
        assert first == f"etag:{hashlib.md5(b'first').hexdigest()}:5"
    store.write_bytes_atomic(uri, b"second")
    assert store.digest(uri) != first
    folder = store.digest(store.root)
    store.write_bytes_atomic(store.join(store.root, "other.pth"), b"x")
    assert store.digest(store.root) != folder
    with pytest.raises(FileNotFoundError):
        store.digest(store.join(store.root, "absent"))


def test_result_record_roundtrip(any_store_root):
    store = ArtifactStore(any_store_root)
    results = store.results_uri("rtdetr", "k", "evaluate")
    assert store.read_result(results) is None
    result = ActionResult(model="rtdetr", action="evaluate", run_key="k", status="SUCCESS",
                          results_uri=results, kpis_final={"val_mAP50": 0.5})
    uri = store.write_result(results, result)
    assert uri == store.join(results, "result.json")
    assert store.read_result(results) == result


def test_credentials_are_never_written_into_the_store(s3_root, monkeypatch, tmp_path):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sekrit-value-4711")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSEKRIT4711")
    store = ArtifactStore(s3_root)
    results = store.results_uri("rtdetr", "k", "train")
    store.write_result(results, ActionResult(model="rtdetr", action="train", run_key="k",
                                             status="SUCCESS", results_uri=results))
    from taoflow.manifest import build_manifest

    build_manifest(store, results, save=True)
    out = store.download(store.root, tmp_path / "all")
    blob = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    assert blob and b"sekrit" not in blob and b"SEKRIT" not in blob
