"""Helpers that lay out TAO results folders (checkpoints, links, status.json) in any ArtifactStore.

Trees are written to a local folder first, then uploaded with `ArtifactStore.upload_dir`, so local and S3
stores receive exactly the same layout (latest links stay links locally, become copies on S3, as a
launcher's upload would make them)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from taoflow.store import ArtifactStore


def status_text(records: list[dict]) -> str:
    """status.json as TAO writes it: a STARTED line, one RUNNING line per record, a final SUCCESS line.
    Each record gives `epoch` (0-based), optionally `step`, `kpi` and `graphical`; kpi dicts are made
    sticky like TAO's (a record without `kpi` repeats the previous one)."""
    lines = [{"date": "11/23/2026", "time": "9:5:1", "status": "STARTED", "verbosity": "INFO",
              "message": "Starting training"}]
    kpi: dict = {}
    graphical: dict = {}
    max_epoch = max((r["epoch"] for r in records), default=0)
    for r in records:
        kpi = r.get("kpi", kpi)
        graphical = r.get("graphical", graphical)
        lines.append({"date": "11/23/2026", "time": "9:6:1", "status": "RUNNING", "verbosity": "INFO",
                      "message": "Training loop in progress", "epoch": r["epoch"], "max_epoch": max_epoch,
                      "step": r.get("step", 0), "kpi": dict(kpi), "graphical": dict(graphical)})
    lines.append({"date": "11/23/2026", "time": "9:9:9", "status": "SUCCESS", "verbosity": "INFO",
                  "message": "train action completed successfully", "kpi": dict(kpi)})
    return "\n".join(json.dumps(line) for line in lines) + "\n"


def put_results(
    store: ArtifactStore,
    results_uri: str,
    workdir: Path,
    files: dict[str, bytes | str],
    links: dict[str, str] | None = None,
) -> None:
    """Write `files` (relative path → content) and `links` (name → relative target) into `results_uri`."""
    workdir.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = workdir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    for name, target in (links or {}).items():
        link = workdir / name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, link)
    store.upload_dir(workdir, results_uri)


CKPT = b"torch-weights" * 8  # a non-empty checkpoint body
