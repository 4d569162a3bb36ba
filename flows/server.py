"""The local Prefect server the `taoflow` commands share: started once, reused, stopped on request.

Prefect's embedded ("ephemeral") server costs 5–16 s per command, can time out on a busy machine, and is
left running (reparented to init) whenever the command that started it is killed. Instead, `taoflow run`,
`tune` and `demo` use one `prefect server start` on loopback per taoflow home:

- its Prefect home is `$TAOFLOW_HOME/prefect` (SQLite database, `server.log`, `server.json` with its pid,
  port and URL); it runs in its own session, so it outlives the command that started it on purpose; a
  start rotates a log over 20 MB to `server.log.1`;
- a file lock serialises starting: however many commands start at once, and whichever of them are killed
  (SIGKILL included), at most one server runs per home — a command that finds a live server (from
  `server.json`, or by the marker every server process carries in its environment) reuses it;
- it keeps running between commands (a documented service, not a leftover): `taoflow server status` shows
  it, its URL (API and UI) and its log; `taoflow server stop` stops it.

When `PREFECT_API_URL` is set, that server is used and nothing is started here. This module does not import
Prefect (it runs before the first Prefect import, which reads these settings).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from taoflow.errors import UserError
from taoflow.processes import alive as _alive

MARKER = "TAOFLOW_PREFECT_SERVER_HOME"  # set in every managed server's environment: finds it without server.json
START_TIMEOUT = float(os.environ.get("TAOFLOW_SERVER_START_TIMEOUT", "300"))
STOP_GRACE = 15.0
LOG_LIMIT = 20 * 1024 * 1024  # server.log is rotated at a start once it is bigger (rotate_log)


def taoflow_home() -> Path:
    return Path(os.environ.get("TAOFLOW_HOME") or Path.home() / ".taoflow")


def server_home() -> Path:
    return taoflow_home() / "prefect"


def log_path() -> Path:
    return server_home() / "server.log"


@dataclass
class ServerState:
    pid: int
    port: int
    started: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"


def _state_path() -> Path:
    return server_home() / "server.json"


def read_state() -> ServerState | None:
    try:
        data = json.loads(_state_path().read_text())
        return ServerState(pid=int(data["pid"]), port=int(data["port"]), started=float(data["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_state(state: ServerState) -> None:
    tmp = _state_path().with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state)))
    os.replace(tmp, _state_path())


def is_server(pid: int, home: Path | None = None) -> bool:
    """Whether `pid` is a live managed server of `home` (a recycled pid is not)."""
    return any(p == pid for p, _ in server_processes(home, pids=[pid]))


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(api_url.rstrip("/") + "/health", timeout=timeout) as resp:
            return resp.status == 200
    except (OSError, ValueError):
        return False


def server_processes(home: Path | None = None, pids: list[int] | None = None) -> list[tuple[int, int | None]]:
    """(pid, port) of every live process that is a managed server of `home` (by the environment marker)."""
    home = (home or server_home()).resolve()
    found = []
    proc = Path("/proc")
    entries = [proc / str(p) for p in pids] if pids is not None else (proc.iterdir() if proc.is_dir() else [])
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"{MARKER}={home}".encode() not in environ or not _alive(int(entry.name)):
            continue
        port = None
        if b"--port" in argv:
            with contextlib.suppress(IndexError, ValueError):
                port = int(argv[argv.index(b"--port") + 1])
        found.append((int(entry.name), port))
    return found


@contextlib.contextmanager
def _start_lock(on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Held while a command looks for, or starts, the server; the kernel releases it if the holder dies."""
    server_home().mkdir(parents=True, exist_ok=True)
    with open(server_home() / "server.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait("waiting for another taoflow command that is starting the local Prefect server…")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}  # the server must not point at one
    env.update({
        "PREFECT_HOME": str(server_home()),
        MARKER: str(server_home().resolve()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "false",
    })
    return env


def rotate_log(limit: int = LOG_LIMIT) -> None:
    """Keep the server's log bounded across starts: a log over `limit` bytes becomes `server.log.1` (the one
    before it is dropped), so a server restarted for months does not fill the disk with its history."""
    path = log_path()
    with contextlib.suppress(FileNotFoundError):
        if path.stat().st_size > limit:
            path.replace(path.with_name(path.name + ".1"))


def _start() -> ServerState:
    port = _free_port()
    rotate_log()
    log = open(log_path(), "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=_server_env(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True, cwd=str(server_home()),
    )
    log.close()
    state = ServerState(pid=proc.pid, port=port, started=time.time())
    _write_state(state)
    return state


def wait_until_healthy(state: ServerState, on_wait: Callable[[str], None] | None = None,
                       timeout: float = START_TIMEOUT) -> None:
    """Wait for the server to answer; a UserError with its log's path when it exits or never answers."""
    deadline = time.monotonic() + timeout
    told = False
    while time.monotonic() < deadline:
        if healthy(state.url):
            return
        if not _alive(state.pid):
            raise UserError(f"the local Prefect server exited while starting; its log is {log_path()}",
                            _log_tail())
        if not told and on_wait is not None:
            on_wait(f"starting the local Prefect server ({state.url}; the first start takes up to a minute)…")
            told = True
        time.sleep(0.3)
    raise UserError(
        f"the local Prefect server did not answer within {timeout:.0f} s (pid {state.pid}, {state.url}); it is "
        f"left running and the next command reuses it once it answers. Its log: {log_path()}. On a very busy "
        "machine raise TAOFLOW_SERVER_START_TIMEOUT, or point PREFECT_API_URL at a running server.")


def _log_tail(lines: int = 8) -> list[str]:
    try:
        return log_path().read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def claim_server(on_wait: Callable[[str], None] | None = None) -> ServerState | str:
    """The user's `PREFECT_API_URL` (checked), else the managed server's state — found running, adopted, or
    just started (it may still be booting: `wait_until_healthy`)."""
    external = os.environ.get("PREFECT_API_URL")
    if external:
        if not healthy(external, timeout=10):
            raise UserError(f"the Prefect API at PREFECT_API_URL={external} does not answer; start that server "
                            "or unset PREFECT_API_URL to let taoflow run a local one")
        return external
    try:
        server_home().mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the local Prefect server's home {server_home()} ({exc.strerror}); set "
                        "TAOFLOW_HOME to a folder you can write, or PREFECT_API_URL to a running server") from None
    with _start_lock(on_wait):
        state = read_state()
        if state is None or not is_server(state.pid):
            adopted = [(pid, port) for pid, port in server_processes() if port]
            if adopted:  # a server whose starter was killed before it wrote server.json
                state = ServerState(pid=adopted[0][0], port=adopted[0][1], started=time.time())
                _write_state(state)
            else:
                state = _start()
    return state


def ensure_server(on_wait: Callable[[str], None] | None = None, timeout: float = START_TIMEOUT) -> str:
    """The API URL to use, once it answers (see claim_server)."""
    state = claim_server(on_wait)
    if isinstance(state, str):
        return state
    wait_until_healthy(state, on_wait, timeout)
    return state.url


def use_server(api_url: str) -> None:
    """Point this process's Prefect client at `api_url` (before Prefect is imported)."""
    os.environ["PREFECT_API_URL"] = api_url
    if api_url == (read_state() or ServerState(0, 0, 0)).url:
        os.environ.setdefault("PREFECT_HOME", str(server_home()))
    # Never fall back to an embedded server of this process: it would be orphaned if the command is killed.
    os.environ["PREFECT_SERVER_ALLOW_EPHEMERAL_MODE"] = "false"


def stop_server() -> list[int]:
    """Stop every managed server of this home (its process group: SIGTERM, then SIGKILL); returns the pids."""
    with _start_lock():
        pids = {pid for pid, _ in server_processes()}
        state = read_state()
        if state is not None and is_server(state.pid):
            pids.add(state.pid)
        for pid in pids:
            _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in pids:
            if _alive(pid):
                _signal_group(pid, signal.SIGKILL)
        with contextlib.suppress(FileNotFoundError):
            _state_path().unlink()
    return sorted(pids)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(os.getpgid(pid), sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def status_lines() -> list[str]:
    """What `taoflow server status` prints."""
    external = os.environ.get("PREFECT_API_URL")
    lines = []
    if external:
        lines.append(f"PREFECT_API_URL is set: taoflow uses {external} "
                     f"({'answering' if healthy(external) else 'NOT answering'}) and starts no server")
    state = read_state()
    running = server_processes()
    if state is not None and is_server(state.pid):
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(state.started))
        lines.append(f"local Prefect server: running, pid {state.pid}, since {since}, "
                     f"{'healthy' if healthy(state.url) else 'not answering yet'}")
        lines.append(f"  API {state.url}   UI {state.url.removesuffix('/api')}")
    elif running:
        lines.append(f"local Prefect server: running, pid {running[0][0]} (port {running[0][1]})")
    else:
        lines.append("local Prefect server: not running (the next `taoflow run`, `tune` or `demo` starts it)")
    lines.append(f"  home {server_home()}")
    lines.append(f"  log  {log_path()}")
    return lines
