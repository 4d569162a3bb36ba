"""The emulator's rung gate (taoflow/emulator/rungs.py): an emulated trial waits at a gated rung until the
controller acknowledges it, SIGTERM stops it there, a released gate never holds it again — and without the
variables (real TAO ignores them; so does the emulator) nothing waits. Every wait here is for an event: a
status line, a file, a process exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from taoflow.datasets import write_sample_data
from taoflow.emulator.rungs import ACK_ENV, RUNGS_ENV, FileGate
from tests.test_emulator_specs import make_spec

HANG_GUARD = 120  # seconds: only ever reached when the behaviour under test is broken


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rung-data")
    write_sample_data("rtdetr", root)
    return root


def _start(data: Path, results: Path, env_extra: dict[str, str]) -> subprocess.Popen:
    spec = make_spec("rtdetr", "train", data, results, {"num_epochs": 6})
    path = results.parent / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = {**os.environ, "TAOFLOW_EMULATOR_EPOCH_SECONDS": "0", **env_extra}
    return subprocess.Popen([sys.executable, "-m", "taoflow.emulator", "rtdetr", "train", "-e", str(path)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def _epochs(results: Path) -> list[int]:
    path = results / "status.json"
    if not path.exists():
        return []
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    return [x["epoch"] for x in lines if x.get("status") == "RUNNING" and "epoch" in x]


def _until(predicate, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + HANG_GUARD
    while not predicate():
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("the event never came: " + proc.stderr.read().decode()[-1500:])
        time.sleep(0.01)


def test_a_gated_trial_waits_at_its_rung_until_acknowledged(data, tmp_path) -> None:
    results = tmp_path / "results"
    gate = FileGate(results)
    gate.reset()
    proc = _start(data, results, gate.environment([2, 4]))
    # The line of epoch count 2, then its checkpoint (a resume point; RT-DETR: epoch-only names), then it waits.
    _until(lambda: _epochs(results) == [0, 1] and list(results.glob("model_epoch_001.pth")), proc)
    assert proc.poll() is None and _epochs(results) == [0, 1]
    gate.ack(2)
    _until(lambda: _epochs(results) == [0, 1, 2, 3], proc)
    assert proc.poll() is None  # waiting at 4 now
    gate.ack(4)
    assert proc.wait(timeout=HANG_GUARD) == 0
    assert _epochs(results) == list(range(6))


def test_sigterm_stops_a_trial_waiting_at_its_rung(data, tmp_path) -> None:
    results = tmp_path / "results"
    gate = FileGate(results)
    gate.reset()
    proc = _start(data, results, gate.environment([3]))
    _until(lambda: _epochs(results) == [0, 1, 2], proc)
    os.killpg(proc.pid, signal.SIGTERM)  # what LocalLauncher.cancel does when the trial is pruned
    assert proc.wait(timeout=HANG_GUARD) == 143
    assert _epochs(results) == [0, 1, 2]  # nothing trained past the rung


def test_a_released_gate_never_holds_the_trial_and_no_variables_mean_no_gate(data, tmp_path) -> None:
    results = tmp_path / "released"
    gate = FileGate(results)
    gate.reset()
    gate.release()  # an adopted trial: the controller that would decide is gone
    proc = _start(data, results, gate.environment([1, 2, 3]))
    assert proc.wait(timeout=HANG_GUARD) == 0
    assert _epochs(results) == list(range(6))

    plain = tmp_path / "plain"
    proc = _start(data, plain, {RUNGS_ENV: "", ACK_ENV: ""})
    assert proc.wait(timeout=HANG_GUARD) == 0
    assert _epochs(plain) == list(range(6))


def test_a_stale_ack_from_an_earlier_attempt_is_reset(tmp_path) -> None:
    gate = FileGate(tmp_path)
    gate.ack(9)
    gate.reset()
    assert gate.path.read_text() == "0"
