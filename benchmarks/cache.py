"""What the honest, shared cache costs: a verified lookup, a store lease, and a fully cached rerun, on a
local store and on S3 (moto's server as its own process on loopback, reached through s3fs as in production).

Prints, per store: the first run of the rtdetr pipeline on the emulator (zero-second epochs), its fully
cached rerun (every step answered from the store: one result.json read + one listing per step, no launch,
no lease), the median verified lookup per step, and the median lease acquire + release.

    python benchmarks/cache.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["TAOFLOW_EMULATOR_EPOCH_SECONDS"] = "0"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "ERROR")

from tests.prefect_server import PrefectServer
from tests.s3server import BUCKET, MotoS3


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    server, s3 = PrefectServer(), MotoS3(process=True)
    server.start()
    s3.start()
    os.environ.update(server.env())
    os.environ.update(s3.env())
    os.environ["AWS_CONFIG_FILE"] = os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    try:
        s3.create_bucket(BUCKET)
        print(f"{'store':6s} {'first run s':>11s} {'cached rerun s':>14s} {'lookup/step ms':>14s} "
              f"{'lease ms':>9s}")
        work = Path(tempfile.mkdtemp(prefix="bench-cache-"))
        _measure("local", str(work / "store"), work, args.repeat)
        _measure("s3", f"s3://{BUCKET}/bench", work, args.repeat)
    finally:
        s3.stop()
        server.stop()


def _measure(label: str, root: str, work: Path, repeat: int) -> None:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows import model_flow
    from flows.demo import demo_parameters
    from taoflow.cache import lookup
    from taoflow.datasets import write_sample_data
    from taoflow.leases import StoreLease
    from taoflow.runs import ActionRun
    from taoflow.store import ArtifactStore

    data = work / "data"
    if not data.exists():
        write_sample_data("rtdetr", data)
    params = demo_parameters("rtdetr", data, root, automl_policy="off")  # the cache of direct steps
    flow_fn, _ = model_flow("rtdetr")
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        t0 = time.perf_counter()
        summary = flow_fn(params)
        first = time.perf_counter() - t0
        reruns = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            again = flow_fn(params)
            reruns.append(time.perf_counter() - t0)
            assert all(r["cached"] for r in again["results"].values()), "a rerun launched something"

    store = ArtifactStore(root)
    lookups, leases = [], []
    for res in summary["results"].values():
        run = ActionRun(model="rtdetr", action=res["action"], spec={}, image="", run_key=res["run_key"],
                        results_uri=res["results_uri"], emulate=True)
        for _ in range(repeat):
            t0 = time.perf_counter()
            assert lookup(store, run, emulated=True).result is not None
            lookups.append(time.perf_counter() - t0)
    for i in range(repeat):
        lease = StoreLease(store, store.join(store.root, "control", "leases", "bench", f"{i}.json"), lease_seconds=30)
        t0 = time.perf_counter()
        assert lease.try_acquire()
        lease.release()
        leases.append(time.perf_counter() - t0)
    print(f"{label:6s} {first:11.2f} {statistics.median(reruns):14.2f} "
          f"{1000 * statistics.median(lookups):14.1f} {1000 * statistics.median(leases):9.1f}")


if __name__ == "__main__":
    main()
