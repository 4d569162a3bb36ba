"""A lease-based lock manager for Prefect's SERIALIZABLE cache transactions.

Prefect's FileSystemLockManager writes locks without an expiration, so a controller killed while holding
one blocks every later run with the same cache key forever (see docs/prefect-notes.md).
Here every lock is a lease: it expires `lease_seconds` after its last renewal, and a daemon thread in the
holding process renews it while the lock is held. A live holder keeps its lock however long the action
runs; a dead holder's lock lapses within one lease, and the next run takes over.
"""

from __future__ import annotations

import json
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prefect.locking.filesystem import FileSystemLockManager


class LeaseLockManager(FileSystemLockManager):
    def __init__(self, lock_files_directory: Path, lease_seconds: float = 30.0) -> None:
        super().__init__(Path(lock_files_directory))
        self.lease_seconds = float(lease_seconds)
        self._renewers: dict[str, threading.Event] = {}

    def acquire_lock(self, key, holder, acquire_timeout=None, hold_timeout=None) -> bool:
        acquired = super().acquire_lock(key, holder, acquire_timeout, hold_timeout or self.lease_seconds)
        if acquired:
            self._start_renewing(key, holder)
        return acquired

    async def aacquire_lock(self, key, holder, acquire_timeout=None, hold_timeout=None) -> bool:
        acquired = await super().aacquire_lock(
            key, holder, acquire_timeout, hold_timeout or self.lease_seconds
        )
        if acquired:
            self._start_renewing(key, holder)
        return acquired

    def release_lock(self, key: str, holder: str) -> None:
        self._stop_renewing(key)
        super().release_lock(key, holder)

    def _start_renewing(self, key: str, holder: str) -> None:
        self._stop_renewing(key)
        stop = threading.Event()
        self._renewers[key] = stop
        thread = threading.Thread(
            target=self._renew_until_stopped, args=(key, holder, stop), name=f"lease-{key[:12]}", daemon=True
        )
        thread.start()

    def _stop_renewing(self, key: str) -> None:
        stop = self._renewers.pop(key, None)
        if stop is not None:
            stop.set()

    def _renew_until_stopped(self, key: str, holder: str, stop: threading.Event) -> None:
        while not stop.wait(self.lease_seconds / 3):
            path = self._lock_path_for_key(key)
            try:
                current = json.loads(path.read_bytes())
            except (FileNotFoundError, ValueError):
                return
            if current.get("holder") != holder:
                return
            expiration = datetime.now(UTC) + timedelta(seconds=self.lease_seconds)
            tmp = path.with_suffix(f".renew-{os.getpid()}")
            tmp.write_text(json.dumps({"holder": holder, "expiration": str(expiration)}))
            os.replace(tmp, path)
            info = self._locks.get(key)
            if info is not None:
                info["expiration"] = expiration
