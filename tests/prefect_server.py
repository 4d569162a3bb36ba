"""One real `prefect server start` on loopback, shared by the whole test session.

Much faster than Prefect's test harness (see docs/prefect-notes.md): the server starts once
(~10 s), and each flow test only pays for its own API calls.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrefectServer:
    def __init__(self, scheduler: bool = False, server_env: dict[str, str] | None = None) -> None:
        self.scheduler = scheduler  # the session's server runs without; a schedule test starts its own
        self.server_env = dict(server_env or {})
        self.home = Path(tempfile.mkdtemp(prefix="taoflow-prefect-"))
        self.port = _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self.process: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        return {
            "PREFECT_HOME": str(self.home),
            "PREFECT_API_URL": self.api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_SERVER_UI_ENABLED": "false",
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }

    def start(self, timeout: float = 300.0) -> None:
        env = {**os.environ, **self.env(), **self.server_env}
        env.pop("PREFECT_API_URL", None)  # the server itself must not point at an API
        log = open(self.home / "server.log", "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
             "--port", str(self.port), *([] if self.scheduler else ["--no-scheduler"]), "--no-late-runs"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"prefect server exited: {(self.home / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.api_url + "/health", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"prefect server did not become healthy in {timeout:.0f} s; log: {self.home / 'server.log'}")

    def stop(self) -> None:
        """Stop the server's whole process group (SIGTERM, then SIGKILL): nothing of it outlives the session."""
        if self.process is None:
            return
        stop_group(self.process)


def stop_group(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM a process group started with start_new_session, SIGKILL it after `grace`, reap the leader."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(grace)
            if not _group_alive(process.pid):
                break
        except subprocess.TimeoutExpired:
            continue
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
