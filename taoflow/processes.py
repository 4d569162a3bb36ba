"""Whether a process is alive (shared by the local launcher and the local Prefect server's manager)."""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """True for a running process (one of another user too); a zombie or a missing pid is dead."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True
