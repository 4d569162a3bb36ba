"""Model registry cost: promotions, reads and racing writers, on a local store and on S3 (moto's server in its
own process on 127.0.0.1, reached through s3fs as production S3 would be).

Prints, per backend:
- the time of one promotion as the history grows (first event, after 100, after 200): a promotion reads
  the name's marker, lists the events and reads the newest one, checks the champion's files, creates one
  event and rewrites champion.json, so only the listing grows with the history;
- `champion()` (one listing + one read) and `history()` (one read per event) with 200 events;
- 8 threads promoting at once against the same champion: wall time, events written, and how many decisions
  had to be made again after losing the race for a sequence number.

Usage: `python benchmarks/registry.py [--events 200]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from taoflow.promotion import MetricRule
from taoflow.registry import ModelRegistry
from tests.registry_versions import make_version
from tests.s3server import MotoS3

RULE = MetricRule("val_mAP", "maximize")
RACERS = 8


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def measure(root: str, events: int) -> None:
    registry = ModelRegistry(root)
    store = registry.store
    versions = [make_version(store, f"v{i:07d}", 0.30 + i * 0.001) for i in range(events)]
    marks = {1, events // 2, events}
    per_promotion: dict[int, float] = {}
    spent = []
    for i, version in enumerate(versions, start=1):
        seconds, outcome = timed(lambda v=version: registry.promote(v, "prod", rule=RULE))
        assert outcome.promoted and outcome.event.seq == i
        spent.append(seconds)
        if i in marks:
            per_promotion[i] = seconds
    read, _ = timed(lambda: registry.champion("rtdetr", "prod"))
    history_time, history = timed(lambda: registry.history("rtdetr", "prod"))
    assert len(history) == events
    print(f"  promotion: event 1 {per_promotion[1] * 1000:.0f} ms, event {events // 2} "
          f"{per_promotion[events // 2] * 1000:.0f} ms, event {events} {per_promotion[events] * 1000:.0f} ms "
          f"(median {statistics.median(spent) * 1000:.0f} ms)")
    print(f"  champion() with {events} events: {read * 1000:.0f} ms; history(): {history_time * 1000:.0f} ms")

    base = versions[-1]
    racers = [make_version(store, f"r{i:07d}", 0.9 - i * 0.01) for i in range(RACERS)]
    truth = {v.version_id: float(v.kpis_pytorch["test_mAP"]) for v in [base, *racers]}
    barrier = threading.Barrier(RACERS)
    local = threading.local()
    calls: list[str] = []

    def evaluate(champion):
        calls.append(champion.version_id)
        if not getattr(local, "waited", False):
            local.waited = True
            barrier.wait(120)
        return {"test_mAP": truth[champion.version_id]}

    threads = [threading.Thread(target=registry.promote, args=(v, "prod"),
                                kwargs={"rule": RULE, "evaluate_champion": evaluate}) for v in racers]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    written = len(registry.history("rtdetr", "prod")) - events
    champion = registry.champion("rtdetr", "prod")
    print(f"  {RACERS} racing promotions: {wall * 1000:.0f} ms, {written} events written, "
          f"{len(calls) - RACERS} decisions made again after a lost race; champion {champion.version_id}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"local store ({args.events} events)")
        measure(str(Path(tmp) / "store"), args.events)
    server = MotoS3(process=True)
    server.start()
    try:
        server.create_bucket("registry-bench")
        import os

        os.environ.update(server.env())
        print(f"S3 on moto, separate process ({args.events} events)")
        measure("s3://registry-bench/store", args.events)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
