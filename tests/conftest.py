"""Shared fixtures. `prefect_api` starts one real `prefect server start` on loopback for the session
(only when a test asks for it) and points Prefect at it with heartbeats off.

Every process the session starts carries TAOFLOW_TEST_SESSION in its environment; at the end, any that is
still alive (a server, a worker, a TAO process a test forgot) is killed with its process group and named,
and a session that passed fails: teardown never leaves a process behind, and never hides a test's result
(a teardown failure is reported as its own error, the tests' outcomes stand)."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.prefect_server import PrefectServer
from tests.processes import kill_marked, marked_processes

pytest_plugins = ["tests.s3server"]

SESSION_MARK = "TAOFLOW_TEST_SESSION"
os.environ[SESSION_MARK] = uuid.uuid4().hex
# The tests never write to the user's ~/.taoflow (command logs, work folders, a local Prefect server).
os.environ["TAOFLOW_HOME"] = tempfile.mkdtemp(prefix="taoflow-test-home-")
os.environ.setdefault("TAOFLOW_EMULATOR_EPOCH_SECONDS", "0")
os.environ.setdefault("TAOFLOW_LOCK_LEASE_SECONDS", "5")
# Every test that talks to Prefect uses the shared loopback server (`prefect_api`); one that forgot would
# otherwise start an embedded server of its own, slowly and silently.
os.environ.setdefault("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "false")


@pytest.fixture(scope="session")
def prefect_server():
    server = PrefectServer()
    server.start()
    try:
        yield server
    finally:
        try:
            from prefect.logging.handlers import APILogWorker

            APILogWorker.drain_all(timeout=5)  # ship the last log batch while the server is still there
        finally:
            server.stop()


@pytest.fixture()
def prefect_api(prefect_server, monkeypatch):
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        PREFECT_HOME,
        PREFECT_LOGGING_LEVEL,
        temporary_settings,
    )

    for name, value in prefect_server.env().items():
        monkeypatch.setenv(name, value)
    with temporary_settings(
        {
            PREFECT_API_URL: prefect_server.api_url,
            PREFECT_HOME: str(prefect_server.home),
            PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None,
            PREFECT_LOGGING_LEVEL: "WARNING",
        }
    ):
        yield prefect_server.api_url


def pytest_sessionfinish(session, exitstatus):
    """No process of this session survives it; a leftover fails a session that otherwise passed."""
    leftovers = marked_processes(SESSION_MARK, os.environ[SESSION_MARK])
    if not leftovers:
        shutil.rmtree(os.environ["TAOFLOW_HOME"], ignore_errors=True)
        return
    kill_marked(leftovers)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"  pid {pid}: {argv}" for pid, argv in leftovers]
    message = "processes left behind by the tests (now killed):\n" + "\n".join(lines)
    if reporter is not None:
        reporter.write_line(message, red=True)
    if session.exitstatus == 0:
        session.exitstatus = 1


@pytest.fixture(scope="module")
def rtdetr_data(tmp_path_factory) -> Path:
    """RT-DETR's sample data (train and eval), written once per test module."""
    from taoflow.datasets import write_sample_data

    root = tmp_path_factory.mktemp("rtdetr-data")
    write_sample_data("rtdetr", root)
    return root
