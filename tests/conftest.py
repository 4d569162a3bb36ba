"""Shared fixtures. `prefect_api` starts one real `prefect server start` on loopback for the session
(only when a test asks for it) and points Prefect at it with heartbeats off."""

from __future__ import annotations

import os

import pytest

from tests.prefect_server import PrefectServer

pytest_plugins = ["tests.s3server"]

os.environ.setdefault("TAOFLOW_EMULATOR_EPOCH_SECONDS", "0")
os.environ.setdefault("TAOFLOW_LOCK_LEASE_SECONDS", "5")
# Every test that talks to Prefect uses the shared loopback server (`prefect_api`); one that forgot would
# otherwise start an embedded server of its own, slowly and silently.
os.environ.setdefault("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "false")


@pytest.fixture(scope="session")
def prefect_server():
    server = PrefectServer()
    server.start()
    yield server
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=5)  # ship the last log batch while the server is still there
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
