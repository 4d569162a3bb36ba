"""ArtifactStore: one fsspec root (a local folder or `s3://bucket/prefix`) where every run's results live.

Layout: `<root>/runs/<model>/<run_key>/<action>/` is one run's results folder (the spec's `results_dir`).
Everything above the storage backend (manifest, resolver, tasks) speaks URIs and calls these methods, so it
never branches on local-vs-S3; the few differences (atomic writes, links, listing caches) are handled here:

- Local roots are plain absolute paths (TAO specs need paths); `file://` is accepted and stripped.
- S3 goes through s3fs. Endpoint, region and credentials come from the standard AWS environment or profile
  (`AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`, `AWS_REGION` / `AWS_DEFAULT_REGION`, `AWS_PROFILE`, the
  usual key variables or shared files) and are never written into the store.
- Manifests and result records are written atomically: locally a temp file in the same folder then
  `os.replace`; on S3 a single PUT, which S3 makes visible completely or not at all.
- s3fs caches directory listings; every listing/existence check here invalidates that cache first, so files
  written by another process (the training pod) are seen.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec

from taoflow.runs import ActionResult, canonical_json
from taoflow.storage_errors import is_transient

DEFAULT_ROOT = "./.taoflow"
# Transient S3 failures during a run: retried with backoff 1, 2, 4, 8, 16 s (31 s in all) before they count as
# an infrastructure failure of the action (which the flow retries in turn, resuming).
TRANSIENT_RETRIES = int(os.environ.get("TAOFLOW_STORE_RETRIES", "5"))
RETRY_FIRST_DELAY = 1.0
RETRY_MAX_DELAY = 16.0
RESULT_FILE = "result.json"


@dataclass(frozen=True)
class StoreEntry:
    """One object found by `ArtifactStore.list_files`. `path` is relative to the listed folder (posix).

    `etag` is S3's ETag (None locally); `mtime` is seconds since the epoch (local mtime or S3
    LastModified). `is_link` is True for local symlinks; S3 has no links (None: unknown)."""

    uri: str
    path: str
    size: int
    is_dir: bool
    mtime: float | None = None
    etag: str | None = None
    is_link: bool | None = None

    @property
    def version(self) -> str | None:
        """What changes when the content changes: the ETag where the backend has one, else the mtime."""
        if self.etag:
            return self.etag
        return None if self.mtime is None else f"{self.mtime:.6f}"


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def write_temp_beside(path: str, data: bytes) -> str:
    """`data`, fsynced, in a hidden temp file in `path`'s folder (created if need be), readable as the store's
    other files (mkstemp makes 0600; teammates sharing the store must read it). The caller renames or links
    it to `path`, so readers only ever see a complete file, and removes it if that fails."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def _s3_options() -> dict[str, Any]:
    """s3fs options from the standard AWS environment. s3fs/botocore read credentials themselves; the
    endpoint is passed explicitly so `AWS_ENDPOINT_URL(_S3)` works with every botocore version."""
    client: dict[str, Any] = {}
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if endpoint:
        client["endpoint_url"] = endpoint
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if region:
        client["region_name"] = region
    options: dict[str, Any] = {"client_kwargs": client} if client else {}
    if os.environ.get("AWS_PROFILE") and not os.environ.get("AWS_ACCESS_KEY_ID"):
        options["profile"] = os.environ["AWS_PROFILE"]
    return options


def _to_time(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    return None


class ArtifactStore:
    """The artifact store rooted at `root` (default `$TAOFLOW_STORE`, else `./.taoflow`)."""

    def __init__(self, root: str | os.PathLike[str] | None = None, *, retries: int = TRANSIENT_RETRIES,
                 on_retry: Callable[[BaseException, int, float], None] | None = None):
        self.retries = retries
        self.on_retry = on_retry
        raw = str(root) if root is not None else (os.environ.get("TAOFLOW_STORE") or DEFAULT_ROOT)
        if raw.startswith(("s3://", "s3a://")):
            self.protocol = "s3"
            self.fs = fsspec.filesystem("s3", **_s3_options())
            self.root = "s3://" + raw.split("://", 1)[1].strip("/")
        else:
            self.protocol = "file"
            raw = raw.removeprefix("file://")
            self.fs = fsspec.filesystem("file", auto_mkdir=True)
            self.root = os.path.abspath(os.path.expanduser(raw))

    def __repr__(self) -> str:
        return f"ArtifactStore({self.root!r})"

    @property
    def is_local(self) -> bool:
        return self.protocol == "file"

    # ----------------------------------------------------------------- URIs
    def _path(self, uri: str) -> str:
        """fsspec path of a URI of this store (no protocol; S3: `bucket/key`)."""
        uri = str(uri)
        if self.is_local:
            uri = uri.removeprefix("file://")
            return os.path.abspath(uri)
        if "://" in uri:
            scheme, rest = uri.split("://", 1)
            if scheme not in ("s3", "s3a"):
                raise ValueError(f"{uri!r} is not an S3 URI (the store root is {self.root})")
            uri = rest
        return uri.strip("/")

    def _uri(self, path: str) -> str:
        return path if self.is_local else "s3://" + path.strip("/")

    def join(self, *parts: str) -> str:
        """Join URI parts with `/` (both backends use posix separators)."""
        cleaned = [str(p) for p in parts if str(p) != ""]
        if not cleaned:
            return self.root
        head, rest = cleaned[0].rstrip("/") or "/", [p.strip("/") for p in cleaned[1:]]
        return "/".join([head if head != "/" else ""] + [p for p in rest if p]) or "/"

    def results_uri(self, model: str, run_key: str, action: str) -> str:
        """A run's results folder: `<root>/runs/<model>/<run_key>/<action>`."""
        return self.join(self.root, "runs", model, run_key, action)

    def local_path(self, uri: str) -> Path | None:
        """The local filesystem path of a URI when the store is local, else None (S3)."""
        return Path(self._path(uri)) if self.is_local else None

    def _invalidate(self, path: str) -> None:
        if not self.is_local:
            self.fs.invalidate_cache(path)

    def _io(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call a storage operation; a transient S3 failure (endpoint unreachable for a moment, throttling,
        5xx) is retried with exponential backoff — `retries` times — before it is raised."""
        delay = RETRY_FIRST_DELAY
        for attempt in range(1, self.retries + 2):
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                if self.is_local or attempt > self.retries or not is_transient(exc):
                    raise
                if self.on_retry is not None:
                    self.on_retry(exc, attempt, delay)
                time.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_DELAY)
        raise AssertionError("unreachable")

    # ----------------------------------------------------------------- reads
    def exists(self, uri: str) -> bool:
        path = self._path(uri)
        self._invalidate(path)
        return bool(self._io(self.fs.exists, path))

    def read_bytes(self, uri: str) -> bytes:
        """The object's content; FileNotFoundError when it does not exist."""
        path = self._path(uri)
        self._invalidate(path)
        return self._io(self.fs.cat_file, path)

    def read_text(self, uri: str) -> str:
        return self.read_bytes(uri).decode("utf-8")

    def read_json(self, uri: str) -> Any:
        return json.loads(self.read_text(uri))

    # ----------------------------------------------------------------- atomic writes
    def write_bytes_atomic(self, uri: str, data: bytes) -> None:
        """Write the complete object or nothing: readers never see a half-written manifest or result."""
        path = self._path(uri)
        if self.is_local:
            tmp = write_temp_beside(path, data)
            try:
                os.replace(tmp, path)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
        else:
            self._io(self.fs.pipe_file, path, data)  # one PUT: S3 never exposes a partial object
            self._invalidate(path)

    def write_text_atomic(self, uri: str, text: str) -> None:
        self.write_bytes_atomic(uri, text.encode("utf-8"))

    def write_json_atomic(self, uri: str, value: Any) -> None:
        self.write_text_atomic(uri, json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")

    def remove(self, uri: str) -> None:
        """Delete one object (a missing one is fine)."""
        path = self._path(uri)
        try:
            self.fs.rm_file(path)
        except FileNotFoundError:
            pass
        self._invalidate(path)

    # ----------------------------------------------------------------- results records
    def write_result(self, results_uri: str, result: ActionResult) -> str:
        """Store `result.json` in the results folder (the cache record of the run); returns its URI."""
        uri = self.join(results_uri, RESULT_FILE)
        self.write_json_atomic(uri, result.to_dict())
        return uri

    def read_result(self, results_uri: str) -> ActionResult | None:
        """The stored ActionResult of a results folder, or None when the run has not finished there."""
        try:
            data = self.read_json(self.join(results_uri, RESULT_FILE))
        except FileNotFoundError:
            return None
        return ActionResult.from_dict(data)

    # ----------------------------------------------------------------- listing
    def list_files(self, uri: str, *, include_dirs: bool = True) -> list[StoreEntry]:
        """Everything below `uri` in ONE recursive listing (S3: paginated ListObjectsV2, no request per file).

        Entries are sorted by path; a missing folder lists as empty. Directories are included (S3 infers
        them from key prefixes) unless `include_dirs` is False."""
        base = self._path(uri)
        self._invalidate(base)
        try:
            found = self._io(self.fs.find, base, withdirs=include_dirs, detail=True)
        except FileNotFoundError as exc:
            if not self.is_local and "bucket" in str(exc).lower():
                raise  # a missing bucket is not an empty folder
            return []
        entries = []
        prefix = base.rstrip("/") + "/"
        for name, info in found.items():
            name = name.rstrip("/")
            if not self.is_local:
                name = name.split("://", 1)[-1]
            if name == base.rstrip("/") or not name.startswith(prefix):
                continue
            is_link = bool(info.get("islink")) if self.is_local else None
            is_dir = info.get("type") == "directory" and not is_link
            etag = info.get("ETag") or info.get("etag")
            entries.append(
                StoreEntry(
                    uri=self._uri(name),
                    path=name[len(prefix):],
                    size=int(info.get("size") or 0),
                    is_dir=is_dir,
                    mtime=_to_time(info.get("mtime") or info.get("LastModified")),
                    etag=etag.strip('"') if isinstance(etag, str) else None,
                    is_link=is_link,
                )
            )
        return sorted(entries, key=lambda e: e.path)

    # ----------------------------------------------------------------- transfers
    def upload_file(self, local: str | os.PathLike[str], uri: str) -> str:
        """Copy one local file to `uri` (a local symlink is uploaded as its target's content)."""
        path = self._path(uri)
        if self.is_local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            shutil.copyfile(os.fspath(local), path)
        else:
            self._io(self.fs.put_file, os.fspath(local), path)
            self._invalidate(path)
        return uri

    def upload_dir(self, local: str | os.PathLike[str], uri: str) -> list[str]:
        """Copy a local folder under `uri`; returns the URIs written.

        Symlinks whose target is inside the folder (TAO's `*_latest.pth`) stay symlinks in a local store; on
        S3, which has no links, they are uploaded as copies (the manifest recognises them by name)."""
        src = Path(local)
        lpaths: list[str] = []
        rpaths: list[str] = []
        links: list[tuple[str, str]] = []
        for file in sorted(p for p in src.rglob("*") if p.is_file() or p.is_symlink()):
            rel = file.relative_to(src).as_posix()
            target = self.join(uri, rel)
            if file.is_symlink() and self.is_local:
                resolved = file.resolve()
                if resolved.is_relative_to(src.resolve()):
                    links.append((os.readlink(file), target))
                    continue
            if not file.exists():
                continue  # a dangling link has nothing to upload
            lpaths.append(str(file))
            rpaths.append(self._path(target))
        if self.is_local:
            for lpath, rpath in zip(lpaths, rpaths, strict=True):
                os.makedirs(os.path.dirname(rpath), exist_ok=True)
                shutil.copyfile(lpath, rpath)
            for link_to, target in links:
                dest = self._path(target)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                if os.path.lexists(dest):
                    os.unlink(dest)
                os.symlink(link_to, dest)
        elif lpaths:
            self._io(self.fs.put, lpaths, rpaths)  # s3fs uploads a list concurrently
            self._invalidate(self._path(uri))
        return [self._uri(p) for p in rpaths] + [t for _, t in links]

    def download(self, uri: str, local: str | os.PathLike[str]) -> Path:
        """Copy an object, or every object below a folder URI, to `local`; returns `local`."""
        dest = Path(local)
        path = self._path(uri)
        self._invalidate(path)
        if self._io(self.fs.isfile, path):
            dest.parent.mkdir(parents=True, exist_ok=True)
            self._io(self.fs.get_file, path, str(dest))
            return dest
        files = self.list_files(uri, include_dirs=False)
        if not files and not self._io(self.fs.isdir, path):
            raise FileNotFoundError(uri)
        lpaths = []
        for entry in files:
            target = dest / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            lpaths.append(str(target))
        if files:
            self._io(self.fs.get, [self._path(e.uri) for e in files], lpaths)
        dest.mkdir(parents=True, exist_ok=True)
        return dest

    # ----------------------------------------------------------------- digests
    def digest(self, uri: str) -> str:
        """A content digest for run keys.

        Local: sha256 of the file's bytes (a folder: sha256 over its files' relative paths and digests).
        S3: the ETag and size stand in for the content (an ETag is the MD5 of the content for single-part
        uploads and a hash of part hashes for multipart ones — stable for the same upload, so acceptable
        as a content digest without downloading the object)."""
        path = self._path(uri)
        self._invalidate(path)
        if self._io(self.fs.isfile, path):
            return self._file_digest(path, self.fs.info(path))
        files = self.list_files(uri, include_dirs=False)
        if not files:
            raise FileNotFoundError(uri)
        parts = [(e.path, self._member_digest(e)) for e in files]
        return "sha256:" + hashlib.sha256(canonical_json(parts).encode()).hexdigest()

    def _member_digest(self, entry: StoreEntry) -> str:
        path = self._path(entry.uri)
        if self.is_local and not os.path.exists(path):
            return "dangling-link"  # no content to hash; it still counts by name
        return self._file_digest(path, None, entry)

    def _file_digest(self, path: str, info: dict[str, Any] | None, entry: StoreEntry | None = None) -> str:
        if self.is_local:
            sha = hashlib.sha256()
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    sha.update(block)
            return "sha256:" + sha.hexdigest()
        if entry is not None:
            etag, size = entry.etag, entry.size
        else:
            raw = (info or {}).get("ETag") or ""
            etag, size = raw.strip('"'), (info or {}).get("size")
        return f"etag:{etag}:{size}"
