"""Two controllers with the same run key run the action once; a killed controller's lock lapses."""

from __future__ import annotations

import contextvars
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from flows import model_flow
from flows.demo import demo_parameters
from taoflow.datasets import write_sample_data
from tasks.locks import LeaseLockManager


def test_lock_of_a_killed_holder_lapses_within_one_lease(tmp_path):
    locks = tmp_path / "locks"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r})
            from pathlib import Path
            from tasks.locks import LeaseLockManager
            LeaseLockManager(Path({str(locks)!r}), lease_seconds=1.5).acquire_lock("k", holder="dead-controller")
            print("held", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    manager = LeaseLockManager(locks, lease_seconds=1.5)
    time.sleep(2.0)
    assert manager.is_locked("k"), "a live holder keeps renewing its lease"
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    started = time.monotonic()
    assert manager.acquire_lock("k", holder="next-controller", acquire_timeout=10)
    assert time.monotonic() - started < 5
    manager.release_lock("k", holder="next-controller")
    assert not manager.is_locked("k")


def test_two_concurrent_flows_with_the_same_inputs_train_once(tmp_path, prefect_api):
    write_sample_data("rtdetr", tmp_path / "data")
    params = demo_parameters(
        "rtdetr", tmp_path / "data", str(tmp_path / "store"), actions=["train"],
        overrides={"train": {"train.num_epochs": 3}},
    )
    flow_fn, _ = model_flow("rtdetr")
    outcomes: list = []
    # Each thread carries this test's Prefect settings (a context variable) to the flow it runs.
    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(lambda: outcomes.append(flow_fn(params)),))
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert len(outcomes) == 2
    uris = {o["results"]["train"]["results_uri"] for o in outcomes}
    assert len(uris) == 1
    records = [json.loads(line) for line in (Path(uris.pop()) / "status.json").read_text().splitlines()]
    assert sum(1 for r in records if r.get("message") == "Starting Training Loop.") == 1, "train ran exactly once"
