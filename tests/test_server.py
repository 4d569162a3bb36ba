"""The local Prefect server the commands share (flows/server.py), run for real: `taoflow` commands started
together use one server; killing any number of them, SIGKILL included, leaves at most one per home; later
commands reuse it; `taoflow server stop` leaves none. A user's PREFECT_API_URL is used and nothing starts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows import server
from taoflow.datasets import write_sample_data
from taoflow.errors import UserError

TAOFLOW = str(Path(sys.executable).parent / "taoflow")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(TAOFLOW_HOME=str(home), TAOFLOW_EMULATOR_EPOCH_SECONDS="0.2")
    return env


def _wait_for(condition, what: str, timeout: float = 600.0) -> None:
    """Poll for an event (a file appearing, a process exiting); the deadline only stops a hung test."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.2)


def test_killed_commands_leave_at_most_one_server_and_later_ones_reuse_it(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("TAOFLOW_HOME", str(home))
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    write_sample_data("rtdetr", tmp_path / "data")
    argv = [TAOFLOW, "run", "rtdetr", "--data", f"train={tmp_path / 'data' / 'train'}", "--data",
            f"eval={tmp_path / 'data' / 'eval'}", "--set", "dataset.num_classes=5", "--store", str(tmp_path / "store"),
            "--emulate", "--set", "train.train.num_epochs=50", "--automl", "off"]
    commands = [subprocess.Popen(argv, env=_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 stdin=subprocess.DEVNULL) for _ in range(4)]
    try:
        # Kill two as soon as one of them has started a server (it may not answer yet), the rest once it answers.
        _wait_for(lambda: server.read_state() is not None, "a command to start the server")
        commands[0].send_signal(signal.SIGKILL)
        commands[1].send_signal(signal.SIGTERM)
        _wait_for(lambda: server.healthy(server.read_state().url), "the server to answer")
        commands[2].send_signal(signal.SIGKILL)
        commands[3].send_signal(signal.SIGINT)
        for command in commands:
            command.wait(120)
        running = server.server_processes(home / "prefect")
        assert len(running) == 1, running

        pid = running[0][0]
        started = subprocess.run([TAOFLOW, "server", "start"], env=_env(home), capture_output=True, text=True,
                                 timeout=600)
        assert started.returncode == 0, started.stderr
        assert [p for p, _ in server.server_processes(home / "prefect")] == [pid], "reused, not started again"
        status = subprocess.run([TAOFLOW, "server", "status"], env=_env(home), capture_output=True, text=True,
                                timeout=120)
        assert f"pid {pid}" in status.stdout and str(home / "prefect" / "server.log") in status.stdout
    finally:
        for command in commands:
            if command.poll() is None:
                command.kill()
                command.wait(30)
        stopped = subprocess.run([TAOFLOW, "server", "stop"], env=_env(home), capture_output=True, text=True,
                                 timeout=120)
    assert stopped.returncode == 0, stopped.stderr
    assert server.server_processes(home / "prefect") == []


def test_a_user_prefect_api_url_is_used_and_nothing_is_started(tmp_path, monkeypatch, prefect_api):
    monkeypatch.setenv("TAOFLOW_HOME", str(tmp_path / "home"))
    assert server.ensure_server() == prefect_api
    assert not (tmp_path / "home" / "prefect" / "server.json").exists()
    assert server.server_processes(tmp_path / "home" / "prefect") == []


def test_an_unreachable_prefect_api_url_is_a_clear_error(monkeypatch, tmp_path):
    from tests.s3server import free_port

    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    with pytest.raises(UserError, match="does not answer; start that server or unset PREFECT_API_URL"):
        server.ensure_server()


def test_a_server_that_dies_while_starting_is_reported_with_its_log(monkeypatch, tmp_path):
    monkeypatch.setenv("TAOFLOW_HOME", str(tmp_path))
    server.server_home().mkdir(parents=True)
    server.log_path().write_text("boot\nsqlite3.OperationalError: unable to open database file\n")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    state = server.ServerState(pid=dead.pid, port=9, started=time.time())
    with pytest.raises(UserError) as err:
        server.wait_until_healthy(state, timeout=60)
    assert str(server.log_path()) in str(err.value) and "unable to open database file" in str(err.value)


def test_a_big_server_log_is_rotated_when_a_server_starts(tmp_path, monkeypatch):
    """Only the rotation step (no server is started): a log over the limit becomes server.log.1, replacing an
    older one; a small log is left where it is."""
    from flows import server

    monkeypatch.setenv("TAOFLOW_HOME", str(tmp_path))
    server.server_home().mkdir(parents=True)
    log = server.log_path()
    log.write_bytes(b"x" * 10)
    server.rotate_log(limit=100)
    assert log.read_bytes() == b"x" * 10
    log.with_name("server.log.1").write_bytes(b"old")
    log.write_bytes(b"y" * 101)
    server.rotate_log(limit=100)
    assert not log.exists() and log.with_name("server.log.1").read_bytes() == b"y" * 101
    server.rotate_log(limit=100)  # nothing to rotate: no error
