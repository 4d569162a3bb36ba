"""What the promotion step adds to a pipeline run whose actions are all answered from the cache.

Runs the RT-DETR pipeline (train → evaluate → export → gen_trt_engine → trt_evaluate) on the emulator with
zero-second epochs against one `prefect server start` on loopback (heartbeats off), once to fill the store,
then times cached reruns:
- without `promote`;
- with `promote` to a fresh name (the first model: no champion to evaluate);
- with `promote` against a champion (another cached version): the champion's evaluate on the same eval data
  is a cached `run_action`, then the decision, the registry write, the artifact and the event.
Prints the median wall time of each kind of run, and the promote task run's own duration as the Prefect server
recorded it (start to end, the nested champion evaluate included), which is what the step adds and is not
blurred by the flow-run noise of a busy machine and a SQLite-backed server (prefect-notes: 503 retries under
back-to-back runs). `--s3` puts the store (results, cache and registry) on moto's S3 server in its own process.

    python benchmarks/promotion.py [--repeat 5] [--s3]
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

ACTIONS = ["train", "evaluate", "export", "gen_trt_engine", "trt_evaluate"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--s3", action="store_true", help="Store on moto's S3 server (separate process).")
    args = parser.parse_args()

    server = PrefectServer()
    server.start()
    os.environ.update(server.env())
    s3 = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            store = str(Path(tmp) / "store")
            if args.s3:
                from tests.s3server import MotoS3

                s3 = MotoS3(process=True)
                s3.start()
                s3.create_bucket("promotion-bench")
                os.environ.update(s3.env())
                store = "s3://promotion-bench/store"
            _measure(Path(tmp), store, args.repeat)
    finally:
        if s3 is not None:
            s3.stop()
        server.stop()


def _measure(work: Path, store: str, repeat: int) -> None:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from flows import model_flow
    from flows.demo import demo_parameters
    from taoflow.datasets import write_sample_data

    write_sample_data("rtdetr", work / "data")
    flow_fn, _ = model_flow("rtdetr")

    def params(epochs: int, promote: str | None):
        return demo_parameters("rtdetr", work / "data", store, actions=ACTIONS,
                               overrides={"train": {"train.num_epochs": epochs}},
                               promotion={"name": promote} if promote else {}, automl_policy="off")

    def timed(parameters) -> tuple[float, dict]:
        t0 = time.perf_counter()
        state = flow_fn(parameters, return_state=True)
        seconds = time.perf_counter() - t0
        summary = state.result()
        if parameters.promotion.name:
            steps.append(_promote_seconds(state.state_details.flow_run_id))
        return seconds, summary

    steps: list[float] = []
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        first, _ = timed(params(2, None))
        timed(params(3, None))  # the challenger's pipeline, cached from here on
        plain, fresh, against, fresh_step, against_step = [], [], [], [], []
        for i in range(repeat):
            plain.append(timed(params(3, None))[0])
            fresh.append(timed(params(3, f"fresh-{i}"))[0])
            fresh_step.append(steps[-1])
            timed(params(2, f"vs-{i}"))  # the champion of vs-i
            seconds, summary = timed(params(3, f"vs-{i}"))
            assert summary["promotion"]["decision"]["champion"], summary["promotion"]
            against.append(seconds)
            against_step.append(steps[-1])
    med = statistics.median
    print(f"store {store}; first (uncached) run {first:.2f} s; medians of {repeat} (min..max):")
    for label, runs, step in (("cached pipeline, no promotion", plain, None),
                              ("+ promote, first model for the name", fresh, fresh_step),
                              ("+ promote against a champion", against, against_step)):
        line = f"  {label:38s} flow {med(runs):6.2f} s ({min(runs):.2f}..{max(runs):.2f})"
        if step:
            line += f"; promote task {med(step):5.2f} s ({min(step):.2f}..{max(step):.2f})"
        print(line)


def _promote_seconds(flow_run_id) -> float:
    """Start to end of the flow run's `promote` task run, read back from the server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        for _ in range(100):
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            promote = [r for r in runs if r.task_key.startswith("promote") or r.name.startswith("promote")]
            if promote and promote[0].end_time and promote[0].start_time:
                return (promote[0].end_time - promote[0].start_time).total_seconds()
            time.sleep(0.1)  # task-run states reach the API through its event pipeline, a moment later
    raise RuntimeError("the promote task run never reported its end")


if __name__ == "__main__":
    main()
