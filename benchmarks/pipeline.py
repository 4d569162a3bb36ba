"""Orchestration overhead of the pipelines, and the time of a fully cached rerun.

Runs each model's full pipeline on the emulator with zero-second epochs against one `prefect server start`
on loopback (heartbeats off), so the time measured is tao-flows + Prefect + process starts, not training.
Targets: under 1.5 s per action; under 10 s for a fully cached rtdetr rerun. Train runs directly
(`--automl-policy off`, the default here) so the figures are per action; `--automl-policy on` measures the
pipelines as a run without `--automl` runs them, train an AutoML sweep of the default budget.

    python benchmarks/pipeline.py [--models rtdetr,centerpose,...] [--repeat 1] [--automl-policy on|off]
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="rtdetr,centerpose,action_recognition,sparse4d,nvpanoptix3d")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--automl-policy", choices=["on", "off"], default="off")
    args = parser.parse_args()

    server = PrefectServer()
    started = time.perf_counter()
    server.start()
    print(f"prefect server ready in {time.perf_counter() - started:.1f} s")
    os.environ.update(server.env())
    try:
        _measure(args.models.split(","), args.repeat, args.automl_policy)
    finally:
        server.stop()


def _measure(models: list[str], repeat: int, policy: str) -> None:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows import model_flow
    from flows.demo import demo_parameters
    from taoflow.datasets import write_sample_data

    print(f"{'model':20s} {'actions':>7s} {'first run s':>12s} {'per action s':>13s} {'cached rerun s':>15s}")
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        for model in models:
            firsts, cached = [], []
            actions = 0
            for _ in range(repeat):
                work = Path(tempfile.mkdtemp(prefix=f"bench-{model}-"))
                write_sample_data(model, work / "data")
                params = demo_parameters(model, work / "data", str(work / "store"), automl_policy=policy)
                flow_fn, _ = model_flow(model)
                t0 = time.perf_counter()
                summary = flow_fn(params)
                firsts.append(time.perf_counter() - t0)
                actions = len(summary["results"])
                t0 = time.perf_counter()
                flow_fn(params)
                cached.append(time.perf_counter() - t0)
            first = statistics.median(firsts)
            print(f"{model:20s} {actions:7d} {first:12.2f} {first / actions:13.2f} {statistics.median(cached):15.2f}")


if __name__ == "__main__":
    main()
