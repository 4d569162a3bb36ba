"""Finding and killing the processes a test session (or a test) started, by a marker in their environment."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def marked_processes(name: str, value: str) -> list[tuple[int, str]]:
    """(pid, command line) of live processes, other than this one, whose environment has NAME=VALUE."""
    needle = f"{name}={value}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
            argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if state != "Z":
            found.append((int(entry.name), argv))
    return found


def kill_marked(processes: list[tuple[int, str]], grace: float = 5.0) -> None:
    """SIGTERM each process's group (or the process), SIGKILL what is still there after `grace`."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid, _ in processes:
            try:
                group = os.getpgid(pid)
                if group == os.getpgrp():  # our own group: the process alone, never ourselves
                    os.kill(pid, sig)
                else:
                    os.killpg(group, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(pid) for pid, _ in processes):
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False
    return state != "Z"
