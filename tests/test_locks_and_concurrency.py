"""Store leases: one holder at a time on a local store and on a real S3 API (moto's server, conditional
PUTs); a lease that is not renewed lapses after exactly one lease; a killed holder blocks nobody for long;
two flows in one process with the same inputs train once."""

from __future__ import annotations

import contextvars
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from flows import model_flow
from flows.demo import demo_parameters
from taoflow.datasets import write_sample_data
from taoflow.errors import UserError
from taoflow.leases import LocalObject, S3Object, StoreLease, lease_seconds_from_env, versioned_object
from taoflow.store import ArtifactStore

REPO = Path(__file__).resolve().parents[1]


class FakeClock:
    """The waiter's monotonic clock, stepped by the test (no sleeping, no timing margins)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _lease(store: ArtifactStore, holder: str, **kw) -> StoreLease:
    # Long real leases: the holders' renewal threads never tick during a test unless the test renews.
    kw.setdefault("lease_seconds", 600)
    return StoreLease(store, store.join(store.root, "control", "leases", "m", "k.json"), holder=holder, **kw)


def test_conditional_writes_refuse_the_loser(any_store_root):
    """The compare-and-swap every lease relies on, against the real backend (S3: If-None-Match / If-Match)."""
    store = ArtifactStore(any_store_root)
    obj = versioned_object(store, store.join(store.root, "control", "cas.json"))
    assert isinstance(obj, S3Object if any_store_root.startswith("s3://") else LocalObject)
    assert obj.read() is None
    first = obj.create(b"one")
    assert first is not None and obj.create(b"two") is None, "create only when absent"
    second = obj.replace(b"three", first)
    assert second is not None and second != first
    assert obj.replace(b"four", first) is None, "a stale version is refused"
    assert obj.read() == (b"three", second)


def test_concurrent_creates_have_one_winner(any_store_root):
    store = ArtifactStore(any_store_root)
    leases = [_lease(store, f"h{i}") for i in range(8)]
    barrier = threading.Barrier(len(leases))
    won: list[str] = []

    def contend(lease: StoreLease) -> None:
        barrier.wait()
        if lease.try_acquire():
            won.append(lease.holder)

    threads = [threading.Thread(target=contend, args=(lease,)) for lease in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1, won
    assert leases[0].current()["holder"] == won[0]
    for lease in leases:
        lease.release()


def test_one_holder_until_released(any_store_root):
    store = ArtifactStore(any_store_root)
    a, b = _lease(store, "a"), _lease(store, "b")
    assert a.try_acquire() and not b.try_acquire()
    assert a.current()["state"] == "held" and a.current()["holder"] == "a"
    a.release()
    assert a.current()["state"] == "released"
    assert b.try_acquire() and b.current()["holder"] == "b"
    b.release()


def test_a_lease_not_renewed_lapses_after_exactly_one_lease(any_store_root):
    """Waiters judge a lease by their own clock: unchanged for a whole lease since first seen → lapsed."""
    store = ArtifactStore(any_store_root)
    clock = FakeClock()
    holder = _lease(store, "holder", lease_seconds=600)
    waiter = _lease(store, "waiter", lease_seconds=600, clock=clock)
    assert holder.try_acquire()
    assert not waiter.try_acquire()  # first look: the lease runs from now
    clock.now += 599.0
    assert not waiter.try_acquire()
    assert holder.renew(), "a live holder renews"
    clock.now += 1.0
    assert not waiter.try_acquire(), "a renewal restarts the lease (from the waiter's first look at it)"
    clock.now += 599.9
    assert not waiter.try_acquire()
    clock.now += 0.1
    assert waiter.try_acquire(), "unchanged for one whole lease: lapsed"
    assert waiter.current()["took_over_from"] == "holder"
    assert not holder.renew() and holder.lost.is_set(), "the old holder learns it lost the lease"
    holder.release()
    assert waiter.current()["holder"] == "waiter", "a lost holder's release changes nothing"
    waiter.release()


def test_of_two_waiters_on_a_lapsed_lease_one_wins(any_store_root):
    store = ArtifactStore(any_store_root)
    clock = FakeClock()
    dead = _lease(store, "dead", lease_seconds=600)
    assert dead.try_acquire()
    dead._stop.set()  # the holder stops renewing, as a killed process would
    b, c = _lease(store, "b", clock=clock), _lease(store, "c", clock=clock)
    assert not b.try_acquire() and not c.try_acquire()
    clock.now += 600
    assert b.try_acquire()
    assert not c.try_acquire(), "c's takeover names a version b already replaced"
    b.release()


def test_lease_length_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("TAOFLOW_LOCK_LEASE_SECONDS", "12.5")
    assert lease_seconds_from_env() == 12.5
    monkeypatch.delenv("TAOFLOW_LOCK_LEASE_SECONDS")
    assert lease_seconds_from_env() == 30.0
    monkeypatch.setenv("TAOFLOW_LOCK_LEASE_SECONDS", "soon")
    with pytest.raises(UserError, match="TAOFLOW_LOCK_LEASE_SECONDS"):
        lease_seconds_from_env()


HOLDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from taoflow.leases import StoreLease
    from taoflow.store import ArtifactStore
    store = ArtifactStore(sys.argv[2])
    lease = StoreLease(store, sys.argv[3], lease_seconds=float(sys.argv[4]), holder="doomed-controller")
    assert lease.try_acquire()
    print("held", flush=True)
    time.sleep(600)
""")


def test_lease_of_a_killed_holder_lapses(any_store_root):
    """A holder process renews while it lives (seen as new versions), and after SIGKILL the next waiter
    takes the lease over; `acquire` returning at all is the proof (the bound is tested with a stepped clock
    above, so no timing margin is asserted here)."""
    store = ArtifactStore(any_store_root)
    uri = store.join(store.root, "control", "leases", "m", "killed.json")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(REPO), store.root, uri, "1.5"],
                              stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        assert holder.stdout.readline().strip() == "held"
        obj = versioned_object(store, uri)
        seen = {obj.read()[1]}
        while len(seen) < 3:  # two renewals observed: the live holder keeps its lease
            current = obj.read()[1]
            seen.add(current)
        waiter = StoreLease(store, uri, lease_seconds=1.5, holder="next-controller")
        assert not waiter.try_acquire()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    waiter.acquire(timeout=120)
    assert waiter.current()["holder"] == "next-controller"
    assert waiter.current()["took_over_from"] == "doomed-controller"
    waiter.release()


def test_two_concurrent_flows_with_the_same_inputs_train_once(tmp_path, prefect_api):
    write_sample_data("rtdetr", tmp_path / "data")
    params = demo_parameters(
        "rtdetr", tmp_path / "data", str(tmp_path / "store"), actions=["train"],
        overrides={"train": {"train.num_epochs": 3}}, automl_policy="off",
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
    assert sorted(o["results"]["train"]["cached"] for o in outcomes) == [False, True]
