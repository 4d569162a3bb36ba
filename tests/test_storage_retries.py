"""Transient storage failures during a run are infrastructure failures: the store retries them with backoff
(here against a real moto S3 server that is down, then comes back), refusals are not retried, and a
launcher that can no longer follow its TAO process stops it rather than leave it training unrecorded."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from taoflow.launchers.local import LocalLauncher
from taoflow.planner import PipelineRequest, PlannedStep, RunContext, prepare_run
from taoflow.skill import load_skill
from taoflow.storage_errors import is_transient
from taoflow.store import ArtifactStore
from tests.s3server import FAKE_AWS_ENV, free_port


class MotoProcess:
    """moto's S3 server as a process on a fixed port, so it can be stopped and started again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 300
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert self.proc.poll() is None and time.monotonic() < deadline, "moto did not start"
                time.sleep(0.1)
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket="flaky")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)


@pytest.fixture
def moto(monkeypatch):
    server = MotoProcess()
    for name, value in {**FAKE_AWS_ENV, "AWS_ENDPOINT_URL": server.endpoint, "AWS_CONFIG_FILE": os.devnull,
                        "AWS_SHARED_CREDENTIALS_FILE": os.devnull}.items():
        monkeypatch.setenv(name, value)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    try:
        yield server
    finally:
        server.stop()
        s3fs.S3FileSystem.clear_instance_cache()


def test_a_write_while_s3_is_down_is_retried_until_it_is_back(moto):
    retries: list[tuple[int, float]] = []

    def on_retry(exc: BaseException, attempt: int, delay: float) -> None:
        assert is_transient(exc)
        retries.append((attempt, delay))
        if attempt == 2:
            moto.start()  # the outage ends while the store waits

    store = ArtifactStore("s3://flaky/tao", retries=4, on_retry=on_retry)
    store.write_text_atomic("s3://flaky/tao/result.json", "{}")
    assert [a for a, _ in retries] == [1, 2] and retries[1][1] == 2 * retries[0][1], "exponential backoff"
    assert store.read_text("s3://flaky/tao/result.json") == "{}"


def test_an_outage_longer_than_the_retries_is_raised_as_transient(moto):
    store = ArtifactStore("s3://flaky/tao", retries=1, on_retry=lambda *_: None)
    with pytest.raises(Exception) as err:
        store.write_text_atomic("s3://flaky/tao/x", "x")
    assert is_transient(err.value)  # run_action's retry condition counts it as an infrastructure failure


def test_a_missing_bucket_is_not_retried(moto):
    moto.start()
    calls = []
    store = ArtifactStore("s3://no-such-bucket/tao", retries=3, on_retry=lambda *a: calls.append(a))
    with pytest.raises(FileNotFoundError):
        store.write_text_atomic("s3://no-such-bucket/tao/x", "x")
    assert calls == []


def test_a_launcher_that_cannot_follow_its_process_stops_it(tmp_path, monkeypatch):
    """The monitor fails at TAO's first status line (an error injected in the launcher itself); the emulator
    is then in a 600 s epoch, so only the launcher's stop can end it."""
    from taoflow.datasets import write_sample_data

    monkeypatch.setenv("TAOFLOW_EMULATOR_EPOCH_SECONDS", "600")
    monkeypatch.setenv("TAOFLOW_HOME", str(tmp_path / "home"))
    write_sample_data("rtdetr", tmp_path / "data")
    skill = load_skill("rtdetr")
    request = PipelineRequest(model="rtdetr", data={"train": str(tmp_path / "data" / "train"),
                                                    "eval": str(tmp_path / "data" / "eval")},
                              overrides={"*": {"dataset.num_classes": 5}, "train": {"train.num_epochs": 2}},
                              store=str(tmp_path / "store"), emulate=True)
    run = prepare_run(RunContext(skill, request, ArtifactStore(request.store), {}), PlannedStep("train"))

    def broken(self, handle, record):
        raise RuntimeError("lost track of the status file")

    monkeypatch.setattr(LocalLauncher, "_status_record", broken)
    launcher = LocalLauncher(grace_seconds=5)
    handle = launcher.submit(run)
    result = launcher.result(handle)
    assert result.status == "FAILURE" and result.failure_class == "infra"
    assert "launcher error: lost track of the status file" in result.message
    assert handle.proc.returncode is not None and handle.proc.returncode != 0, "stopped, not finished"
