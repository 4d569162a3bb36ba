"""A planted encryption key reaches TAO's command line but nothing the pipeline writes or shows:
specs in the store, logs, manifests, result records, Prefect's cache records, artifacts and logs."""

from __future__ import annotations

from pathlib import Path

import yaml
from prefect.client.orchestration import get_client

from flows import model_flow
from flows.demo import demo_parameters
from taoflow.datasets import write_sample_data

PLANTED = "planted-S3CR3T-7f1c2a"


def _files_containing(root: Path, needle: str) -> list[str]:
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and needle.encode() in path.read_bytes():
            hits.append(str(path))
    return hits


def test_encryption_key_never_written_or_shown(tmp_path, prefect_api, monkeypatch):
    monkeypatch.setenv("TAO_ENCRYPTION_KEY", PLANTED)
    write_sample_data("rtdetr", tmp_path / "data")
    params = demo_parameters("rtdetr", tmp_path / "data", str(tmp_path / "store"),
                             actions=["train", "evaluate", "export"])
    flow_fn, _ = model_flow("rtdetr")
    summary = flow_fn(params)
    assert {r["status"] for r in summary["results"].values()} == {"SUCCESS"}

    train_dir = Path(summary["results"]["train"]["results_uri"])
    log = (train_dir / "logs" / "train.log").read_text()
    assert "encryption_key" not in yaml.safe_load((train_dir / "spec.yaml").read_text())
    assert _files_containing(tmp_path, PLANTED) == []
    assert PLANTED not in str(summary)

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
        logs = client.read_logs()
    assert artifacts and all(PLANTED not in str(a.data) + str(a.description) for a in artifacts)
    assert all(PLANTED not in entry.message for entry in logs)
    assert PLANTED not in log
    assert "encryption_key=****" in log, "the key reached TAO's argv, masked in the log"
