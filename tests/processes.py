"""Processes the tests start, found and stopped so no test leaves one behind: by a marker in their environment
(a test session's, or a test's), or as a process and everything it started, even children in sessions of
their own (Prefect's flow-run processes, the local launcher's TAO process groups)."""

from __future__ import annotations

import os
import signal
import subprocess
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
        while time.monotonic() < deadline and any(alive(pid) for pid, _ in processes):
            time.sleep(0.1)


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        pid = int(stat.parent.name)
        ppid = int(text[text.rfind(")") + 2:].split()[1])
        tree.setdefault(ppid, []).append(pid)
    return tree


def descendants(pid: int) -> list[int]:
    tree, found, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return state[state.rfind(")") + 2] != "Z"


def stop_tree(process: subprocess.Popen, timeout: float = 30, first: int = signal.SIGTERM) -> list[int]:
    """Signal (`first`: SIGTERM) the process and all its descendants, wait, SIGKILL what is left; returns pids
    still alive afterwards (none expected)."""
    pids = [process.pid, *descendants(process.pid)]
    for pid in pids:
        try:
            os.kill(pid, first)
        except ProcessLookupError:
            pass
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        pass
    pids += [p for p in descendants(process.pid) if p not in pids]
    for pid in pids:
        if alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    if process.poll() is None:
        process.wait(10)
    return [pid for pid in pids if alive(pid)]
