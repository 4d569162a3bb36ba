"""Resolver scale: build a checkpoint manifest and resolve `parent_model` over 10,000 files on S3.

Starts moto's S3 server on 127.0.0.1, uploads one TAO train results folder of 10,000 objects laid out as TAO
6.x lays it out (step-interval checkpoints over many epochs, a latest copy, TensorBoard events, partial
uploads, and a status.json of TAO's lines: string KPIs on epoch-less metric lines), then times, through s3fs
exactly as production would reach S3:

- `build_manifest` (one recursive listing + one read of status.json),
- `parent_model` best-by-metric (rebuilds the manifest: the resolver never trusts a stale one),
- `resume_model`,

and counts the HTTP requests the S3 server saw for each (target: under 5 s, one listing pass — a handful
of paginated ListObjectsV2 calls, not a request per file). Usage: `python benchmarks/resolver.py`.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from taoflow import resolver
from taoflow.manifest import build_manifest
from taoflow.skill import load_skill
from taoflow.store import ArtifactStore
from tests.s3server import MotoS3

TOTAL_FILES = 10_000
EPOCHS = 300
CHECKPOINTS_PER_EPOCH = 20
STEPS_PER_EPOCH = 400
REPEATS = 3


class RequestCounter:
    """Counts the requests in moto's request log since the last `mark()`
    (`"GET /bucket?list-type=2... HTTP/1.1" 200` lines)."""

    def __init__(self, log_path: str) -> None:
        self.log_path = log_path
        self.offset = 0

    def mark(self) -> None:
        self.offset = os.path.getsize(self.log_path)

    def counts(self) -> Counter[str]:
        found: Counter[str] = Counter()
        with open(self.log_path, "rb") as fh:
            fh.seek(self.offset)
            for raw in fh:
                line = raw.decode("utf-8", "replace")
                if '"' not in line or "HTTP/1.1" not in line:
                    continue
                method, _, target = line.split('"')[1].partition(" ")
                found["LIST" if method == "GET" and "list-type=2" in target else method] += 1
        return found


def mAP(epoch: int) -> float:
    """A plausible learning curve with noise and a peak before the end (so best != latest)."""
    return round(0.72 - 0.5 * (0.985 ** epoch) - 0.00002 * max(0, epoch - 210) ** 2 + 0.004 * ((epoch * 7) % 5), 5)


def layout() -> dict[str, bytes]:
    """A train folder as TAO 6.x writes it (docs/tao-contract.md): step-interval checkpoints at the folder's
    root (`checkpoint_interval_unit: step`, only the last of each epoch holding a validated state), the latest
    link uploaded as a copy, a status.json with TAO's three lines per epoch (string val_mAP50 on the epoch-less
    "Eval metrics generated." line), experiment.yaml, TensorBoard events, partial uploads."""
    body = b"\0" * 64
    files: dict[str, bytes] = {}
    for epoch in range(EPOCHS):
        for i in range(CHECKPOINTS_PER_EPOCH):
            step = epoch * STEPS_PER_EPOCH + (i + 1) * STEPS_PER_EPOCH // CHECKPOINTS_PER_EPOCH
            files[f"model_epoch_{epoch:03d}_step_{step:05d}.pth"] = body
    files["centerpose_model_latest.pth"] = body
    files[f"model_epoch_{EPOCHS:03d}_step_{(EPOCHS + 1) * STEPS_PER_EPOCH:05d}.pth.partial"] = body
    files["model_epoch_299_step_99999.pth"] = b""  # a zero-byte upload: never a candidate
    files["experiment.yaml"] = b"results_dir: /results/train\n"
    files["logs/train.log"] = b"Epoch 0 ...\n"
    lines = [{"date": "11/23/2026", "time": "10:1:1", "status": "STARTED", "verbosity": "INFO",
              "message": "Starting Centerpose train."},
             {"date": "11/23/2026", "time": "10:1:1", "status": "STARTED", "verbosity": "INFO",
              "message": "Starting Training Loop."}]
    kpi: dict = {}
    for epoch in range(EPOCHS):
        kpi = {"val_3DIoU": str(mAP(epoch)), "val_2DMPE": str(0.1 - mAP(epoch) / 10)}
        lines.append({"date": "11/23/2026", "time": "10:1:1", "status": "RUNNING", "verbosity": "INFO",
                      "message": "Eval metrics generated.", "kpi": kpi})
        lines.append({"epoch": epoch, "step": (epoch + 1) * STEPS_PER_EPOCH, "max_epoch": EPOCHS - 1,
                      "max_step": EPOCHS * STEPS_PER_EPOCH, "time_per_epoch": "0:01:01.250000",
                      "time_per_step": "0:00:00.153125", "eta": "1:00:00", "date": "11/23/2026", "time": "10:1:1",
                      "status": "RUNNING", "verbosity": "INFO", "message": "Training loop in progress", "kpi": kpi})
        kpi = {"train_loss": 5.0 / (1 + epoch)}
        lines.append({"date": "11/23/2026", "time": "10:1:1", "status": "RUNNING", "verbosity": "INFO",
                      "message": "Train metrics generated.", "kpi": kpi})
    for message in ("Training loop complete.", "Train finished successfully."):
        lines.append({"date": "11/23/2026", "time": "10:1:1", "status": "RUNNING", "verbosity": "INFO",
                      "message": message, "kpi": kpi})
    files["status.json"] = ("\n".join(json.dumps(line) for line in lines) + "\n").encode()
    i = 0
    while len(files) < TOTAL_FILES:
        files[f"lightning_logs/version_1/events.out.tfevents.{i:05d}.host"] = body
        i += 1
    return files


def timed(fn, counter: RequestCounter) -> tuple[float, float, Counter[str], object]:
    """Wall seconds, this process's CPU seconds (the client's own work: the server is another process),
    the S3 requests made, and the value."""
    counter.mark()
    time.sleep(0.05)  # let the server flush earlier log lines
    cpu, start = time.process_time(), time.perf_counter()
    value = fn()
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    time.sleep(0.3)  # let the server write this call's log lines
    return wall, cpu, counter.counts(), value


def main() -> None:
    server = MotoS3(process=True)
    server.start()
    try:
        server.create_bucket("taoflow-bench")
        os.environ.update(server.env())
        store = ArtifactStore("s3://taoflow-bench/store")
        results = store.results_uri("centerpose", "bench0000000000000000", "train")
        files = layout()
        print(f"S3 server: moto {server.endpoint}; results folder {results}")
        print(f"uploading {len(files)} objects ({sum(len(b) for b in files.values()) / 1e6:.1f} MB) ...")
        start = time.perf_counter()
        store.fs.pipe({f"{results[len('s3://'):]}/{rel}": data for rel, data in files.items()}, batch_size=64)
        upload = time.perf_counter() - start
        print(f"upload: {upload:.1f} s ({len(files) / upload:.0f} objects/s, concurrent PUTs via s3fs.pipe)")

        counter = RequestCounter(server.log_path)
        skill = load_skill("centerpose")
        import boto3

        client = boto3.client("s3", endpoint_url=server.endpoint)
        prefix = results[len("s3://taoflow-bench/"):] + "/"

        def raw_listing() -> int:
            pages = client.get_paginator("list_objects_v2").paginate(Bucket="taoflow-bench", Prefix=prefix)
            return sum(len(page.get("Contents", [])) for page in pages)

        rows, floors = [], []
        for _ in range(REPEATS):
            floors.append(timed(raw_listing, counter)[0])
            t_manifest, c_manifest, req_manifest, manifest = timed(
                lambda: build_manifest(store, results, metric="val_3DIoU", direction="maximize"), counter)
            t_parent, c_parent, req_parent, choice = timed(
                lambda: resolver.choose_parent(store, results, skill=skill, parent_action="train"), counter)
            t_resume, c_resume, req_resume, resume = timed(lambda: resolver.resume_model(store, results), counter)
            rows.append(((t_manifest, c_manifest), (t_parent, c_parent), (t_resume, c_resume)))
        print(f"manifest: {manifest.files_seen} files listed, {len(manifest.entries)} entries, "
              f"{len(manifest.kpis_by_epoch)} epochs with KPIs")
        print(f"requests per build_manifest: {dict(req_manifest)}; per parent_model: {dict(req_parent)}; "
              f"per resume_model: {dict(req_resume)}")
        for label, column in (("build_manifest", 0), ("parent_model (best val_3DIoU)", 1), ("resume_model", 2)):
            walls = [r[column][0] for r in rows]
            cpus = [r[column][1] for r in rows]
            print(f"{label:32s} median {statistics.median(walls):.2f} s wall, "
                  f"{statistics.median(cpus):.2f} s client CPU  (wall runs: {', '.join(f'{v:.2f}' for v in walls)})")
        print(f"{'raw boto3 ListObjectsV2 pages':32s} median {statistics.median(floors):.2f} s wall "
              f"(the server's own cost of listing 10,000 keys)")
        print(f"parent_model chose {choice.entry.path} (val_3DIoU {choice.entry.metric_value}); "
              f"{len(choice.rejected)} other entries rejected with reasons")
        print(f"resume_model chose {resume.rsplit('/', 1)[-1]}")
        medians = [statistics.median(r[c][0] for r in rows) for c in (0, 1)]
        print(f"target < 5 s (median wall) for manifest and for parent_model: "
              f"{'MET' if max(medians) < 5 else 'MISSED'} ({medians[0]:.2f} s, {medians[1]:.2f} s)")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
