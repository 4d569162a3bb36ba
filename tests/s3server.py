"""A real S3 API on loopback for tests: moto's threaded server (not its in-process mocks), reached through
s3fs/botocore over HTTP exactly as production S3 would be.

Import the fixtures in a test module: `from tests.s3server import s3_root, s3_server  # noqa: F401`.
- `s3_server` (session): starts `moto.server.ThreadedMotoServer` on 127.0.0.1 and a free port, creates the
  bucket `taoflow-test`, yields its endpoint URL, stops the server at the end.
- `s3_root` (function): points the standard AWS environment at that server (fake credentials, region,
  `AWS_ENDPOINT_URL`) and yields a fresh `s3://taoflow-test/<unique prefix>` root.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest

BUCKET = "taoflow-test"
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MotoS3:
    """moto's S3 server on loopback; usable outside pytest (the resolver benchmark uses it).

    `process=True` runs it as a separate `python -m moto.server` process (its request log goes to
    `self.log_path`), so a client being measured does not share the server's interpreter and GIL."""

    def __init__(self, *, process: bool = False) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.process = process
        self.log_path: str | None = None
        self._proc: subprocess.Popen | None = None
        self._server = None
        if not process:
            from moto.server import ThreadedMotoServer

            self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)

    def start(self, timeout: float = 60.0) -> None:
        if self._server is not None:
            logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
            self._server.start()
            return
        fd, self.log_path = tempfile.mkstemp(prefix="moto-s3-", suffix=".log")
        with os.fdopen(fd, "wb") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self._proc.returncode}; see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"moto server did not listen on {self.endpoint} within {timeout:.0f} s")

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
        if self.log_path and os.path.exists(self.log_path):
            os.unlink(self.log_path)

    def env(self) -> dict[str, str]:
        return {**FAKE_AWS_ENV, "AWS_ENDPOINT_URL": self.endpoint}

    def create_bucket(self, name: str) -> None:
        import boto3

        client = boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id="testing", aws_secret_access_key="testing",
        )
        client.create_bucket(Bucket=name)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[MotoS3]:
    server = MotoS3()
    server.start()
    try:
        server.create_bucket(BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_root(s3_server: MotoS3, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    # Keep a developer's ~/.aws out of the tests.
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
    yield f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["local", "s3"])
def any_store_root(request: pytest.FixtureRequest, tmp_path) -> str:
    """The same test against a local root and an `s3://` root on the loopback moto server."""
    if request.param == "local":
        return str(tmp_path / "store")
    return request.getfixturevalue("s3_root")
