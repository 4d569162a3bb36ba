"""Leases in the artifact store: one holder at a time per key, for every controller that shares the store.

GPU steps must run once however many controllers (pods, machines) run the same pipeline, and the only thing
they all share is the store. A lease is a small JSON object (`<root>/control/leases/<model>/<run_key>.json`)
changed only by compare-and-swap writes:

- S3: `PUT` with `If-None-Match: *` creates it, `PUT` with `If-Match: <ETag>` renews, takes over or releases
  it (S3 conditional writes; moto's server honours the same headers). A write that loses the race is
  refused with 412 and changes nothing.
- A local store: the same compare-and-swap under `flock` of a sidecar `.lock` file.

A holder renews its lease every `lease_seconds / 3` from a daemon thread, however long the action runs.
Waiters never compare clocks across machines: a lease has lapsed when its object has not changed for a full
`lease_seconds` (the holder's own, recorded in the object) of the waiter's monotonic clock. Then the waiter
takes it over with a conditional write, so a killed holder blocks the others for at most one lease plus
one poll, and of two waiters only one wins. Releasing writes a `released` record (again conditionally).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from taoflow.errors import UserError
from taoflow.store import ArtifactStore

log = logging.getLogger(__name__)

DEFAULT_LEASE_SECONDS = 30.0
LEASE_ENV = "TAOFLOW_LOCK_LEASE_SECONDS"
T = TypeVar("T")


def lease_seconds_from_env(default: float = DEFAULT_LEASE_SECONDS) -> float:
    """The lease length: `$TAOFLOW_LOCK_LEASE_SECONDS` (seconds, > 0), else 30 s."""
    raw = os.environ.get(LEASE_ENV)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise UserError(f"{LEASE_ENV}={raw!r} is not a positive number of seconds; unset it for the default "
                        f"({default:g} s)")
    return value


def default_holder() -> str:
    """host:pid:random — unique per lease attempt, readable in the lease object."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# ----------------------------------------------------------------------------------- versioned objects

class VersionedObject(Protocol):
    """One object with compare-and-swap writes. Versions are opaque (S3 ETag, sha256 of a local file)."""

    def read(self) -> tuple[bytes, str] | None: ...

    def create(self, data: bytes) -> str | None:
        """Write if absent; the new version, or None when the object exists."""
        ...

    def replace(self, data: bytes, version: str) -> str | None:
        """Write if the current version is `version`; the new version, or None when it is not."""
        ...


class LocalObject:
    """A file; every write takes an exclusive `flock` on `<file>.lock`, then replaces the file atomically."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.mutex = self.path.with_name(self.path.name + ".lock")

    @staticmethod
    def _version(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.mutex, os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing drops the flock

    def read(self) -> tuple[bytes, str] | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        return data, self._version(data)

    def _write(self, data: bytes) -> str:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix="." + self.path.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        return self._version(data)

    def create(self, data: bytes) -> str | None:
        with self._locked():
            return None if self.path.exists() else self._write(data)

    def replace(self, data: bytes, version: str) -> str | None:
        with self._locked():
            current = self.read()
            if current is None or current[1] != version:
                return None
            return self._write(data)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class S3Object:
    """An S3 object written with conditional PUTs (`If-None-Match: *`, `If-Match: <ETag>`) through s3fs."""

    def __init__(self, fs: Any, uri: str):
        self.fs = fs
        self.bucket, _, self.key = uri.split("://", 1)[-1].partition("/")

    def read(self) -> tuple[bytes, str] | None:
        from fsspec.asyn import sync

        async def get() -> tuple[bytes, str]:
            resp = await self.fs._call_s3("get_object", Bucket=self.bucket, Key=self.key)
            try:
                return await resp["Body"].read(), resp["ETag"]
            finally:
                resp["Body"].close()

        try:
            return sync(self.fs.loop, get)
        except FileNotFoundError:
            return None

    def create(self, data: bytes) -> str | None:
        return self._put(data, {"IfNoneMatch": "*"})

    def replace(self, data: bytes, version: str) -> str | None:
        return self._put(data, {"IfMatch": version})

    def _put(self, data: bytes, condition: dict[str, str]) -> str | None:
        try:
            return self.fs.call_s3("put_object", Bucket=self.bucket, Key=self.key, Body=data, **condition)["ETag"]
        except OSError as exc:
            current = self.read()
            if current is not None and current[0] == data:
                return current[1]  # our write landed; only its response was lost
            if _refused(exc):
                return None
            raise


def _refused(exc: OSError) -> bool:
    """S3 refused a conditional write: 412 (s3fs: FileExistsError for If-None-Match, EINVAL for If-Match),
    404 (If-Match on a deleted object) or 409 ConditionalRequestConflict (a concurrent conditional write won)."""
    return (isinstance(exc, (FileExistsError, FileNotFoundError)) or exc.errno == errno.EINVAL
            or "ConditionalRequestConflict" in str(exc))


def versioned_object(store: ArtifactStore, uri: str) -> VersionedObject:
    local = store.local_path(uri)
    return LocalObject(local) if local is not None else S3Object(store.fs, uri)


# ----------------------------------------------------------------------------------- the lease

class StoreLease:
    """A lease on one key in the store (see the module docstring). Not reentrant; one holder per object.

    `clock` is the waiter's monotonic clock (injectable so tests can step time without sleeping)."""

    def __init__(self, store: ArtifactStore, uri: str, *, lease_seconds: float = DEFAULT_LEASE_SECONDS,
                 holder: str | None = None, info: dict[str, Any] | None = None,
                 clock: Callable[[], float] = time.monotonic, poll_seconds: float | None = None):
        if lease_seconds <= 0:
            raise ValueError("lease_seconds must be positive")
        self.uri = uri
        self.object = versioned_object(store, uri)
        self.lease_seconds = float(lease_seconds)
        self.holder = holder or default_holder()
        self.info = dict(info or {})
        self.clock = clock
        self.poll_seconds = poll_seconds if poll_seconds is not None else min(max(lease_seconds / 6, 0.05), 2.0)
        self.lost = threading.Event()
        self.took_over_from: str | None = None
        self._version: str | None = None
        self._renewals = 0
        self._seen: tuple[str, float] | None = None  # (version of someone else's lease, first seen at)
        self._stop: threading.Event | None = None
        self._renewer: threading.Thread | None = None
        self._guard = threading.Lock()

    # ---------------------------------------------------------------- records
    def _record(self, state: str) -> bytes:
        now = datetime.now(UTC)
        body = {
            "holder": self.holder, "state": state, "lease_seconds": self.lease_seconds,
            "renewals": self._renewals, "written_at": now.isoformat(),
            "nonce": uuid.uuid4().hex, **self.info,
        }
        if self.took_over_from:
            body["took_over_from"] = self.took_over_from
        return json.dumps(body, sort_keys=True).encode()

    @staticmethod
    def _parse(data: bytes) -> dict[str, Any]:
        try:
            record = json.loads(data)
        except ValueError:
            return {}
        return record if isinstance(record, dict) else {}

    def current(self) -> dict[str, Any] | None:
        """The lease object as stored now (None: nobody ever held it)."""
        found = self.object.read()
        return None if found is None else self._parse(found[0])

    @property
    def held(self) -> bool:
        return self._version is not None and not self.lost.is_set()

    # ---------------------------------------------------------------- acquiring
    def try_acquire(self) -> bool:
        """One attempt: take the lease when it is free, released, or lapsed (unchanged for a whole lease
        since this waiter first saw it). Never blocks."""
        if self.held:
            return True
        found = self.object.read()
        if found is None:
            return self._won(lambda: self.object.create(self._record("held")), None)
        data, version = found
        record = self._parse(data)
        if record.get("state") == "released" or not record:
            return self._won(lambda: self.object.replace(self._record("held"), version), None)
        now = self.clock()
        if self._seen is None or self._seen[0] != version:
            self._seen = (version, now)  # a new renewal (or a first look): the lease runs from now
            return False
        unchanged = now - self._seen[1]
        if unchanged < float(record.get("lease_seconds") or self.lease_seconds):
            return False
        previous = str(record.get("holder"))
        won = self._won(lambda: self.object.replace(self._record("held"), version), previous)
        if won:
            log.warning("took over the lease %s of %s, unchanged for %.1f s", self.uri, previous, unchanged)
        return won

    def _won(self, write: Callable[[], str | None], previous_holder: str | None) -> bool:
        self.took_over_from = previous_holder  # recorded in the lease object for whoever looks later
        version = write()
        if version is None:
            self.took_over_from = None
            return False
        self._version = version
        self._seen = None
        self.lost.clear()
        self._start_renewing()
        return True

    def acquire(self, *, done_elsewhere: Callable[[], T | None] | None = None,
                on_wait: Callable[[dict[str, Any]], None] | None = None,
                timeout: float | None = None) -> T | None:
        """Block until the lease is ours (returns None), or until `done_elsewhere()` returns something
        (returned as is: the holder finished the work meanwhile). `on_wait(record)` is called once per
        holder seen. Raises TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else self.clock() + timeout
        announced: str | None = None
        while True:
            if self.try_acquire():
                return None
            if done_elsewhere is not None:
                answer = done_elsewhere()
                if answer is not None:
                    return answer
            record = self.current() or {}
            if on_wait is not None and record.get("holder") != announced:
                announced = record.get("holder")
                on_wait(record)
            if deadline is not None and self.clock() >= deadline:
                raise TimeoutError(f"the lease {self.uri} is held by {record.get('holder')}")
            time.sleep(self.poll_seconds)

    # ---------------------------------------------------------------- renewing and releasing
    def renew(self) -> bool:
        """Extend the lease; False (and `lost` set) when someone else holds it now."""
        with self._guard:
            if self._version is None or self.lost.is_set():
                return False
            self._renewals += 1
            version = self.object.replace(self._record("held"), self._version)
            if version is None:
                self.lost.set()
                log.error("lost the lease %s: another controller took it over", self.uri)
                return False
            self._version = version
            return True

    def _start_renewing(self) -> None:
        self._stop = threading.Event()
        self._renewer = threading.Thread(target=self._renew_until_stopped, args=(self._stop,),
                                         name=f"lease-{Path(self.uri).stem[:12]}", daemon=True)
        self._renewer.start()

    def _renew_until_stopped(self, stop: threading.Event) -> None:
        while not stop.wait(self.lease_seconds / 3):
            try:
                if not self.renew():
                    return
            except Exception as exc:  # a transient store error: the next tick tries again
                log.warning("could not renew the lease %s (%s); retrying", self.uri, exc)

    def release(self) -> None:
        """Stop renewing and mark the lease released (only if it is still ours)."""
        if self._stop is not None:
            self._stop.set()
        if self._renewer is not None and self._renewer is not threading.current_thread():
            self._renewer.join()
        self._stop = self._renewer = None
        with self._guard:
            try:
                if self._version is not None and not self.lost.is_set():
                    self.object.replace(self._record("released"), self._version)
            except OSError as exc:  # the lease then lapses by itself within one lease
                log.warning("could not release the lease %s (%s); it lapses in %.0f s", self.uri, exc,
                            self.lease_seconds)
            finally:
                self._version = None
