"""Create-if-absent writes: the one primitive that makes concurrent promotions safe without a lock.

A registry event is written to `events/<seq>.json` only if that object does not exist yet, so of two writers
that read the same history, exactly one gets sequence number N and the other learns it lost, re-reads and
decides again. Nothing is held while deciding, so a killed process leaves nothing behind that blocks others.

- Local store: the content goes to a temp file in the same folder, is fsynced, then hard-linked to the final
  name; `link` fails if the name exists, and readers only ever see a complete file. (A filesystem without
  hard links falls back to `O_CREAT | O_EXCL` on the final name.)
- S3: one PUT with `If-None-Match: *` (s3fs `pipe_file(mode="create")`). S3 answers 412 Precondition Failed
  when the key exists and 409 ConditionalRequestConflict when another conditional write to the key is in
  flight (AWS S3 user guide, "conditional writes"); both mean "someone else wrote first". An endpoint that
  silently ignores the header would let two writers both win, so before the first exclusive write to a
  bucket the process checks once that a second conditional PUT to a probe key is refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
import uuid

from taoflow.errors import UserError
from taoflow.store import ArtifactStore, write_temp_beside

_verified: set[tuple[str, str]] = set()
_verified_lock = threading.Lock()


class ConditionalWritesUnsupported(UserError):
    """The S3 endpoint accepted an overwrite it was told to refuse."""


def _s3_path(uri: str) -> str:
    return uri.split("://", 1)[1].strip("/") if "://" in uri else uri.strip("/")


def _is_conflict(exc: BaseException) -> bool:
    """A 409 ConditionalRequestConflict (s3fs wraps it as a plain OSError)."""
    cause = exc.__cause__
    response = getattr(cause, "response", None) or {}
    code = (response.get("Error") or {}).get("Code")
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return code == "ConditionalRequestConflict" or status == 409


def _create_local(path: str, data: bytes) -> bool:
    tmp = write_temp_beside(path, data)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        return _create_excl(path, data)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return True


def _create_excl(path: str, data: bytes) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return True


def _put_if_absent(store: ArtifactStore, path: str, data: bytes) -> bool:
    try:
        store.fs.pipe_file(path, data, mode="create")
    except FileExistsError:
        return False
    except OSError as exc:
        if _is_conflict(exc):
            return False
        raise
    finally:
        store.fs.invalidate_cache(path)
    return True


def ensure_conditional_writes(store: ArtifactStore) -> None:
    """Once per process and bucket: a second `If-None-Match: *` PUT to a fresh probe key must be refused."""
    if store.is_local:
        return
    bucket = _s3_path(store.root).split("/", 1)[0]
    endpoint = str((getattr(store.fs, "client_kwargs", None) or {}).get("endpoint_url") or "aws")
    with _verified_lock:
        if (endpoint, bucket) in _verified:
            return
    probe = _s3_path(store.join(store.root, "models", ".probes", uuid.uuid4().hex))
    try:
        if not _put_if_absent(store, probe, b"1"):
            raise ConditionalWritesUnsupported(f"s3://{probe} already exists; retry")
        refused = not _put_if_absent(store, probe, b"2")
    finally:
        try:
            store.fs.rm_file(probe)
        except FileNotFoundError:
            pass
    if not refused:
        raise ConditionalWritesUnsupported(
            f"the S3 endpoint {endpoint} of bucket {bucket} ignored 'If-None-Match: *' (it overwrote an object "
            "it was told not to); the model registry needs conditional writes to keep concurrent promotions "
            "safe: use AWS S3 or an S3 server that supports them"
        )
    with _verified_lock:
        _verified.add((endpoint, bucket))


def create_exclusive(store: ArtifactStore, uri: str, data: bytes) -> bool:
    """Write `data` to `uri` only if nothing is there. True: this call created it; False: it existed."""
    if store.is_local:
        local = store.local_path(uri)
        assert local is not None
        return _create_local(str(local), data)
    ensure_conditional_writes(store)
    return _put_if_absent(store, _s3_path(uri), data)
