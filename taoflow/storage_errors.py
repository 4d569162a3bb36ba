"""Storage failures in words a user can act on, and which of them are worth retrying.

s3fs and botocore report a missing credential, a wrong endpoint or a denied request as exceptions whose text
names neither the URI nor what to do. `storage_problem` turns them (and a read-only or full local folder)
into one line naming the thing (`dataset 'train'`, `artifact store`), its URI and the remedy; `is_transient`
says which failures a retry with backoff may cure (the endpoint unreachable for a moment, S3 throttling or
5xx answers) — those are infrastructure failures during a run, never user errors.
"""

from __future__ import annotations

import errno
import os

CREDENTIALS_HINT = ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (plus AWS_SESSION_TOKEN for temporary "
                    "credentials), or AWS_PROFILE naming a profile in ~/.aws/credentials")
TRANSIENT_CODES = {"SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling",
                   "ThrottlingException", "RequestTimeTooSkewed", "500", "502", "503", "504"}


def endpoint() -> str:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3 (the default)"


def _credential_source() -> str:
    key = os.environ.get("AWS_ACCESS_KEY_ID")
    if key:
        return f"AWS_ACCESS_KEY_ID={key[:4]}…{key[-4:]}" if len(key) > 8 else "AWS_ACCESS_KEY_ID"
    if os.environ.get("AWS_PROFILE"):
        return f"profile {os.environ['AWS_PROFILE']}"
    return "the default credential chain"


def _botocore_kind(exc: BaseException) -> str | None:
    """'credentials' | 'endpoint' | 'client:<Code>' for botocore's exceptions, without importing botocore."""
    for cls in type(exc).__mro__:
        if cls.__module__.startswith("botocore"):
            if cls.__name__ in ("NoCredentialsError", "PartialCredentialsError", "ProfileNotFound",
                                "CredentialRetrievalError", "NoAuthTokenError"):
                return "credentials"
            if cls.__name__ in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
                                "ConnectionClosedError", "ProxyConnectionError", "SSLError"):
                return "endpoint"
            if cls.__name__ == "ClientError":
                code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
                return f"client:{code}"
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def storage_problem(exc: BaseException, uri: str, role: str, *, write: bool = False,
                    choose: str = "--store, $TAOFLOW_STORE") -> str | None:
    """One line for a storage failure of `uri` (used as `role`), or None when `exc` is not one. `choose` says
    how to pick another local folder."""
    remote = "://" in uri and not uri.startswith("file://")
    bucket = uri.split("://", 1)[1].split("/", 1)[0] if remote else ""
    for err in _chain(exc):
        kind = _botocore_kind(err)
        text = str(err)
        if kind == "credentials":
            return f"{role} at {uri}: no S3 credentials were found ({text}); {CREDENTIALS_HINT}"
        if kind == "endpoint":
            return (f"{role} at {uri}: cannot reach the S3 endpoint {endpoint()} ({text}); check AWS_ENDPOINT_URL "
                    "(or AWS_ENDPOINT_URL_S3) and that the endpoint is up and reachable from here")
        if kind in ("client:InvalidAccessKeyId", "client:SignatureDoesNotMatch", "client:ExpiredToken",
                    "client:InvalidToken"):
            return (f"{role} at {uri}: the S3 credentials were refused ({kind.split(':')[1]}, "
                    f"{_credential_source()}); check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN "
                    "or the profile's keys")
        if kind == "client:NoSuchBucket" or (remote and isinstance(err, FileNotFoundError)
                                             and "bucket" in text.lower()):
            return (f"{role} at {uri}: the bucket '{bucket}' does not exist at {endpoint()}; create it, or fix the "
                    "bucket name (and AWS_ENDPOINT_URL if the bucket lives elsewhere)")
        if kind in ("client:AccessDenied", "client:403", "client:AllAccessDisabled") or (
                remote and isinstance(err, PermissionError)):
            need = "s3:ListBucket, s3:GetObject, s3:PutObject and s3:DeleteObject" if write else \
                "s3:ListBucket and s3:GetObject"
            return (f"{role} at {uri}: access denied for {_credential_source()}; grant it {need} on "
                    f"arn:aws:s3:::{bucket} and its objects, or use credentials that have them")
        if not remote and isinstance(err, OSError) and err.errno is not None:
            where = err.filename or uri
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                return (f"{role} at {uri}: the disk is full ({os.strerror(err.errno)}) at {where}; free space there "
                        f"or choose another folder ({choose})")
            verb = "write to" if write else "read"
            return (f"{role} at {uri}: cannot {verb} {where} ({os.strerror(err.errno)}); choose a folder you can "
                    f"{'write' if write else 'read'} ({choose}) or fix its permissions")
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether a retry with backoff may cure the failure (the service, not the request, is at fault)."""
    for err in _chain(exc):
        kind = _botocore_kind(err)
        if kind == "endpoint":
            return True
        if kind and kind.startswith("client:") and kind.split(":", 1)[1] in TRANSIENT_CODES:
            return True
        if type(err).__module__.startswith(("aiohttp", "urllib3")) or isinstance(
                err, (ConnectionError, TimeoutError)):
            return True
    return False
