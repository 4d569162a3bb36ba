"""Exactly-once GPU steps across controllers (issue 13.6): two controller processes that share only an S3
store (moto's server on loopback) — separate HOME, TAOFLOW_HOME and PREFECT_HOME, and each its own Prefect
server — run the same pipeline at once. Each step runs once; a controller SIGKILLed while holding a step's
lease blocks the other for at most one lease, after which the other runs the step itself.

Every wait is on an event (a line a controller prints, a lease record in the store, a process exit),
never on a timing margin; the timeouts only bound a hung test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from taoflow.cache import lease_uri
from taoflow.datasets import write_sample_data
from taoflow.leases import StoreLease
from taoflow.planner import PlannedStep, RunContext, prepare_run
from taoflow.skill import load_skill
from taoflow.store import ArtifactStore
from tests.pipeline_controller import controller_params
from tests.prefect_server import PrefectServer

REPO = Path(__file__).resolve().parents[1]
MODEL = "rtdetr"
ACTIONS = ["train", "evaluate", "export"]
LEASE_SECONDS = "3"
TIMEOUT = 600.0


@pytest.fixture(scope="module")
def own_prefect_server():
    """A second Prefect server, so the two controllers share no Prefect state either."""
    server = PrefectServer()
    server.start()
    yield server
    server.stop()


class Controller:
    """One `python -m tests.pipeline_controller` process; its output lines are kept and can be awaited."""

    def __init__(self, name: str, tmp: Path, api_url: str, store: str, data: str, epoch_seconds: str):
        base = tmp / name
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "TAOFLOW_"))}
        env.update({
            "HOME": str(base / "home"), "TAOFLOW_HOME": str(base / "taoflow"),
            "PREFECT_HOME": str(base / "prefect"), "PREFECT_API_URL": api_url,
            "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "false", "PREFECT_LOGGING_LEVEL": "INFO",
            "TAOFLOW_LOCK_LEASE_SECONDS": LEASE_SECONDS, "TAOFLOW_EMULATOR_EPOCH_SECONDS": epoch_seconds,
            "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1",
        })
        for folder in ("home", "taoflow", "prefect"):
            (base / folder).mkdir(parents=True)
        self.name = name
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.pipeline_controller", MODEL, store, data, ",".join(ACTIONS), "3"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        self.proc.wait()
        with self._changed:
            self._changed.notify_all()

    def wait_for_line(self, text: str) -> str:
        deadline = time.monotonic() + TIMEOUT
        with self._changed:
            while True:
                found = [line for line in self.lines if text in line]
                if found:
                    return found[0]
                if self.proc.poll() is not None:
                    pytest.fail(f"controller {self.name} exited before printing {text!r}:\n{self.output()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"controller {self.name} never printed {text!r}:\n{self.output()}")
                self._changed.wait(1.0)

    def summary(self) -> dict:
        """Wait for the controller to finish; its SUMMARY line."""
        try:
            self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"controller {self.name} did not finish:\n{self.output()}")
        self.reader.join(TIMEOUT)  # every line it printed has been read
        assert self.proc.returncode == 0, f"controller {self.name} failed:\n{self.output()}"
        line = next(line for line in self.lines if line.startswith("SUMMARY "))
        return json.loads(line.removeprefix("SUMMARY "))

    def output(self) -> str:
        return "\n".join(self.lines[-80:])

    def kill(self) -> None:
        """SIGKILL the controller and everything it started (the emulator runs in its own session), as
        when its pod dies."""
        for pid in [self.proc.pid, *_descendants(self.proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@pytest.fixture
def shared_store(s3_root, tmp_path):
    """An S3 store with the sample data in it: the only thing the controllers share."""
    write_sample_data(MODEL, tmp_path / "data")
    store = ArtifactStore(s3_root)
    data = store.join(s3_root, "data")
    store.upload_dir(tmp_path / "data", data)
    return store, data


def _train_lease(store: ArtifactStore, data: str) -> StoreLease:
    """The train step's lease, from the run key every controller computes for the same parameters."""
    request = controller_params(MODEL, store.root, data, ACTIONS, 3).to_request(MODEL)
    run = prepare_run(RunContext(load_skill(MODEL), request, store, {}), PlannedStep("train"))
    return StoreLease(store, lease_uri(store, run), lease_seconds=600, holder="test-gate")


def _started_lines(store: ArtifactStore, results_uri: str) -> int:
    count = 0
    for entry in store.list_files(results_uri, include_dirs=False):
        if entry.path.rsplit("/", 1)[-1] == "status.json":
            records = [json.loads(x) for x in store.read_text(entry.uri).splitlines() if x.strip()]
            # One run, one "Starting <Name> <mode>." line (train also writes "Starting Training Loop.").
            count += sum(1 for r in records
                         if r.get("status") == "STARTED" and r.get("message") != "Starting Training Loop.")
    return count


def test_two_controllers_on_one_s3_store_run_each_step_once(shared_store, tmp_path, prefect_api,
                                                            own_prefect_server):
    store, data = shared_store
    gate = _train_lease(store, data)
    assert gate.try_acquire()  # both controllers reach train while the test holds its lease
    controllers = [
        Controller("a", tmp_path, prefect_api, store.root, data, epoch_seconds="0"),
        Controller("b", tmp_path, own_prefect_server.api_url, store.root, data, epoch_seconds="0"),
    ]
    try:
        for controller in controllers:
            controller.wait_for_line("waiting for test-gate")
        gate.release()  # now they race for train, then for every later step
        summaries = [c.summary() for c in controllers]
    finally:
        for controller in controllers:
            if controller.proc.poll() is None:
                controller.kill()

    a, b = (s["results"] for s in summaries)
    assert set(a) == set(b) == set(ACTIONS)
    for step in ACTIONS:
        assert a[step]["status"] == b[step]["status"] == "SUCCESS"
        assert a[step]["results_uri"] == b[step]["results_uri"]
        assert sorted([a[step]["cached"], b[step]["cached"]]) == [False, True], step
        assert _started_lines(store, a[step]["results_uri"]) == 1, f"{step} ran more than once"
    leases = store.list_files(store.join(store.root, "control", "leases"), include_dirs=False)
    assert len(leases) == len(ACTIONS)
    assert {json.loads(store.read_text(e.uri))["state"] for e in leases} == {"released"}


def test_a_killed_controllers_lease_lapses_and_the_other_runs_the_step(shared_store, tmp_path, prefect_api,
                                                                      own_prefect_server):
    store, data = shared_store
    lease = _train_lease(store, data)
    # Controller a trains with hour-long epochs: it holds the train lease until it is killed.
    a = Controller("a", tmp_path, prefect_api, store.root, data, epoch_seconds="3600")
    b = None
    try:
        while (lease.current() or {}).get("state") != "held":
            if a.proc.poll() is not None:
                pytest.fail(f"controller a exited:\n{a.output()}")
            time.sleep(0.2)
        holder = lease.current()["holder"]
        b = Controller("b", tmp_path, own_prefect_server.api_url, store.root, data, epoch_seconds="0")
        b.wait_for_line(f"waiting for {holder}")
        a.kill()
        summary = b.summary()
    finally:
        for controller in (a, b):
            if controller is not None and controller.proc.poll() is None:
                controller.kill()

    train = summary["results"]["train"]
    assert train["status"] == "SUCCESS" and train["cached"] is False, "b ran train itself"
    record = lease.current()
    assert record["took_over_from"] == holder, "b took the lapsed lease over from the killed controller"
    assert record["state"] == "released"
    assert all(summary["results"][step]["status"] == "SUCCESS" for step in ACTIONS)
