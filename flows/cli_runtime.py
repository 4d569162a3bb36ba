"""How `taoflow run`, `tune` and `demo` run a flow in this process: against the shared local Prefect server
(flows/server.py), with Prefect's console logging kept out of the terminal (the live board speaks there;
Prefect's records still reach the server, and the ones at WARNING and above also go to a log file), and with
every failure of the run turned into one `error:` block instead of Prefect's tracebacks.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from rich.console import Console

from flows.server import claim_server, log_path, taoflow_home, use_server, wait_until_healthy
from taoflow.errors import UserError
from taoflow.storage_errors import storage_problem

T = TypeVar("T")


class RunFailed(UserError):
    """The pipeline ran and an action failed: printed like a user error, exit code 1."""

    exit_code = 1


def command_log() -> Path:
    path = taoflow_home() / "logs" / "taoflow.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return Path(os.devnull)  # an unwritable home was already reported by the server manager
    return path


def start_prefect(console: Console, flow_module: str | None = None) -> str:
    """Find or start the Prefect server and point this process at it. Prefect's import (seconds on a busy
    machine) runs in a thread meanwhile, so a first start pays for the slower of the two only."""
    stderr = Console(stderr=True, soft_wrap=True)

    def tell(message: str) -> None:
        stderr.print(message, style="dim", markup=False, highlight=False)

    # The server's URL must be in the environment before Prefect reads its settings (at import).
    state_or_url = claim_server(tell)
    if isinstance(state_or_url, str):
        use_server(state_or_url)
        return state_or_url
    use_server(state_or_url.url)
    loader = threading.Thread(target=_import_quietly, args=(flow_module or "prefect",), daemon=True)
    loader.start()
    wait_until_healthy(state_or_url, on_wait=tell)
    loader.join()
    return state_or_url.url


def _import_quietly(module: str) -> None:
    try:
        importlib.import_module(module)
    except Exception:
        pass  # imported again in the main thread, where its error is reported


_quieted = False


def quiet_prefect_console() -> None:
    """Drop Prefect's records from the terminal's handlers; send WARNING and above to the command log."""
    global _quieted
    if _quieted:
        return
    _quieted = True
    import prefect

    package = str(Path(prefect.__file__).parent)

    def not_prefect(record: logging.LogRecord) -> bool:  # by logger name, or by module (e.g. "EventsWorker")
        return not (record.name.startswith("prefect") or record.pathname.startswith(package))

    for name in ("", "prefect._internal"):
        for handler in logging.getLogger(name).handlers:
            if type(handler).__module__.startswith("prefect."):  # Prefect's console handlers, nobody else's
                handler.addFilter(not_prefect)
    file_handler = logging.FileHandler(command_log(), encoding="utf-8")
    file_handler.setLevel(logging.WARNING)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(file_handler)
    logging.getLogger("prefect._internal").addHandler(file_handler)


def run_guarded(fn: Callable[[], T]) -> T:
    """Run a flow; turn its failure into a UserError (or RunFailed) with one message, never a traceback.
    Unexpected errors are written, with their traceback, to the command log the message names."""
    try:
        with _cli_settings():
            return fn()
    except UserError:
        raise
    except KeyboardInterrupt:
        raise UserError("interrupted: the running action was cancelled; checkpoints already written are kept "
                        "and the next run resumes from them") from None
    except Exception as exc:
        raise describe_failure(exc) from None


def _cli_settings():
    """Flow-run heartbeats off unless the user set them: only a server-side automation reads them, and a
    synchronous flow run pays about a second joining the heartbeat thread (docs/prefect-notes.md)."""
    import contextlib

    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    if "PREFECT_FLOWS_HEARTBEAT_FREQUENCY" in os.environ:
        return contextlib.nullcontext()
    return temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})


def describe_failure(exc: BaseException) -> UserError:
    name = type(exc).__name__
    text = str(exc).strip()
    if name in ("ActionFailed", "InfraFailure"):  # tasks.run_action: the message carries remedy and log
        first, *rest = text.splitlines() or [name]
        return RunFailed(first, [line.replace("Remedy: ", "remedy: ").replace("Log: ", "log: ") for line in rest])
    if _is_storage_failure(exc):
        filename = getattr(exc, "filename", None)
        problem = storage_problem(exc, str(filename) if filename else "the store", "storage", write=True)
        if problem is not None:
            return RunFailed(problem)
    if _is_api_failure(exc):
        return RunFailed(f"lost the Prefect server ({name}: {text.splitlines()[0] if text else ''})",
                         [f"`taoflow server status` shows it; its log is {log_path()}"])
    log = command_log()
    with open(log, "a", encoding="utf-8") as fh:
        fh.write("".join(traceback.format_exception(exc)))
    return RunFailed(f"the run failed: {name}: {text.splitlines()[0] if text else ''}",
                     [f"details and traceback: {log}"])


def _is_storage_failure(exc: BaseException) -> bool:
    """A file operation that failed (it names its file) or an S3 client error."""
    if isinstance(exc, OSError) and exc.filename:
        return True
    return any(cls.__module__.startswith(("botocore", "s3fs", "aiobotocore")) for cls in type(exc).__mro__)


def _is_api_failure(exc: BaseException) -> bool:
    module = type(exc).__module__
    return module.startswith(("httpx", "httpcore")) or type(exc).__name__ in (
        "PrefectHTTPStatusError", "ObjectNotFound")
