"""Stop a process and everything it started, even children in sessions of their own (Prefect's flow-run
processes, the local launcher's TAO process groups), so no test leaves a process behind."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


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


def stop_tree(process: subprocess.Popen, timeout: float = 30) -> list[int]:
    """SIGTERM the process and all its descendants, wait, SIGKILL what is left; returns pids still alive
    afterwards (none expected)."""
    pids = [process.pid, *descendants(process.pid)]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
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
