"""One real `prefect server start` on loopback, shared by the whole test session.

Much faster than Prefect's test harness (see shared/reference/prefect-notes.md): the server starts once
(~10 s), and each flow test only pays for its own API calls.
"""

from __future__ import annotations

import os
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

    def start(self, timeout: float = 90.0) -> None:
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
                raise RuntimeError(f"prefect server exited: {(self.home / 'server.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.api_url + "/health", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("prefect server did not become healthy in time")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
