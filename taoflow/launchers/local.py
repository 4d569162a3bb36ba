"""LocalLauncher: run one ActionRun as a local process — real TAO when its entry point is installed, else the
emulator — and `python -m taoflow.launchers.local RUN_JSON`, which does the same inside a Kubernetes pod or a
work-pool worker and stores `result.json` beside the results.

What it takes care of, so the tasks above it never do:
- argv lists only; secrets never reach argv or a file: a `secret_overrides` key is written into the spec as
  `${oc.env:VAR}` (resolved by TAO's OmegaConf loader) and VAR reaches the process by environment
  (taoflow/launchers/secrets.py); the value is still masked in every log line;
- inputs staged from the store (remote URIs downloaded, archives extracted safely when the skill needs a
  directory); remote results (s3://) run in a local work folder and checkpoints are uploaded as they appear;
- its own process group (`start_new_session`), so cancel and timeout reach every child (SIGTERM, then SIGKILL
  after a grace period) — Prefect's task timeout does not (prefect-notes.md);
- a pid file holding the run key: submitting a run whose results folder already has a live process attaches
  to it instead of starting TAO twice;
- the ActionResult: status from the exit code and status.json's last line, failure class and remedy from the
  skill's error patterns, KPIs final/best, products, checkpoint manifest, GPU-seconds.

Split by concept: staging (launchers/staging.py), supervision (this file), result reading
(launchers/results.py), the in-pod runner (launchers/pod.py; `main` here keeps `-m taoflow.launchers.local`).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from taoflow.dotted import delete_dotted, set_dotted
from taoflow.errors import UserError
from taoflow.launchers.base import Event, Finished, LogLine
from taoflow.launchers.results import PID_FILE, SPEC_FILE, local_result, node_rank
from taoflow.launchers.staging import (
    is_remote,
    local_of,
    localise_results,
    pull_history,
    results_folder_name,
    retire_stale_outputs,
    stage_inputs,
    store_for,
)
from taoflow.layout import candidate_folders
from taoflow.processes import alive as _alive
from taoflow.runs import ActionResult, ActionRun
from taoflow.secrets import env_reference, secret_environment
from taoflow.skill import Action, Skill, load_skill
from taoflow.status import LineTailer, StatusReader, StatusTailer, status_paths
from taoflow.storage_errors import is_transient

MASK = "****"
# Uploaded to a remote store while the action runs: checkpoints (a lost pod loses at most one interval) and
# status.json (progress for whoever follows the run from the store: the Kubernetes and work-pool launchers).
LIVE_UPLOAD_GLOB = ("*.pth", "*.pt", "*.ckpt", "status.json")
LOG_TAIL_LINES = 4000
STORE_OUTAGE_SECONDS = float(os.environ.get("TAOFLOW_STORE_OUTAGE_SECONDS", "600"))


def taoflow_home() -> Path:
    return Path(os.environ.get("TAOFLOW_HOME") or Path.home() / ".taoflow")


# --------------------------------------------------------------------------------------- entry point

def tao_installed(argv: list[str]) -> bool:
    """Whether the skill's TAO entry point exists here (`python -m pkg…` needs the package importable)."""
    if not argv:
        return False
    if Path(argv[0]).name.startswith("python") and len(argv) > 2 and argv[1] == "-m":
        return importlib.util.find_spec(argv[2].split(".")[0]) is not None
    return shutil.which(argv[0]) is not None


def build_argv(skill: Skill, action: Action, run: ActionRun, spec_path: Path) -> tuple[list[str], bool]:
    """(argv, emulated). The emulator when asked (`emulate=True`) or when TAO is not installed."""
    real = [str(spec_path) if a == "{spec}" else a for a in action.argv]
    if run.emulate is not True and tao_installed(action.argv):
        return real, False
    if run.emulate is False:
        raise UserError(f"{skill.name} {run.action}: TAO's entry point {action.argv[0]!r} is not installed here "
                        "and emulate is false; install TAO or allow the emulator")
    return [sys.executable, "-m", "taoflow.emulator", skill.name, action.tao_action, "-e", str(spec_path)], True


# --------------------------------------------------------------------------------------- handle

@dataclass
class LocalHandle:
    run: ActionRun
    results_dir: Path
    workdir: Path
    log_path: Path
    emulated: bool
    pid: int
    proc: subprocess.Popen | None = None
    attached: bool = False
    started: float = field(default_factory=time.time)
    secrets: list[str] = field(default_factory=list)
    events_q: queue.Queue[Event] = field(default_factory=queue.Queue)
    log_tail: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    reader: StatusReader = field(default_factory=StatusReader)
    cancel_requested: bool = False
    timed_out: bool = False
    term_sent_at: float | None = None
    done: threading.Event = field(default_factory=threading.Event)
    result_value: ActionResult | None = None
    uploaded: dict[str, tuple[int, float]] = field(default_factory=dict)
    store_failing_since: float | None = None
    threads: list[threading.Thread] = field(default_factory=list)


class LocalLauncher:
    """The Launcher protocol for a local process (see the module docstring)."""

    name = "local"

    def __init__(self, grace_seconds: float = 10.0, poll_seconds: float = 0.2, **_: Any):
        self.grace_seconds = grace_seconds
        self.poll_seconds = poll_seconds

    # ------------------------------------------------------------------ submit
    def submit(self, run: ActionRun) -> LocalHandle:
        skill = load_skill(run.model)
        action = skill.action(run.action)
        remote = is_remote(run.results_uri)
        workdir = taoflow_home() / "work" / run.model / run.run_key / run.action
        # Remote results run in a local folder of the same name, so TAO's `<results_dir>/<action>/` lands in it.
        results_dir = workdir / "results" / results_folder_name(run.results_uri) if remote \
            else local_of(run.results_uri)
        results_dir.mkdir(parents=True, exist_ok=True)

        attached = self._attach(run, results_dir, workdir)
        if attached is not None:
            return attached
        if remote:
            pull_history(run, results_dir)

        spec = copy.deepcopy(run.spec)
        if remote:
            spec = localise_results(run, spec, results_dir)
        spec = stage_inputs(run, spec, action, workdir)
        retired = retire_stale_outputs(run, spec, action, results_dir)
        secret_env = secret_environment(run)
        for key, var in run.secret_overrides.items():
            delete_dotted(spec, key)
            if var in secret_env:
                set_dotted(spec, key, env_reference(var))  # the name, never the value
        spec_path = results_dir / SPEC_FILE
        spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))

        argv, emulated = build_argv(skill, action, run, spec_path)
        secrets = list(secret_env.values())
        env = {**os.environ, **run.env, **secret_env}
        env.setdefault("PYTHONUNBUFFERED", "1")

        rank = node_rank()
        log_path = results_dir / "logs" / (f"{run.action}.log" if rank == 0 else f"{run.action}.rank{rank}.log")
        log_path.parent.mkdir(parents=True, exist_ok=True)
        status_tailers = _status_tailers(action, results_dir)
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env=env, cwd=str(results_dir),
        )
        handle = LocalHandle(run=run, results_dir=results_dir, workdir=workdir, log_path=log_path,
                             emulated=emulated, pid=proc.pid, proc=proc, secrets=secrets)
        self._write_pid(handle)
        header = (f"==== taoflow local launcher: {run.model} {run.action} run {run.run_key} pid {proc.pid} "
                  f"({'EMULATED' if emulated else 'TAO'}) argv: {self._mask(handle, ' '.join(argv))}")
        self._append_log(handle, header)
        for moved in retired:  # in the log and on the event stream: the user sees why a file was renamed
            self._append_log(handle, f"==== taoflow: {moved}")
            handle.events_q.put(LogLine(f"taoflow: {moved}"))
        reader = threading.Thread(target=self._read_output, args=(handle,), daemon=True)
        monitor = threading.Thread(target=self._monitor, args=(handle, status_tailers), daemon=True)
        handle.threads = [reader, monitor]
        reader.start()
        monitor.start()
        return handle

    def _attach(self, run: ActionRun, results_dir: Path, workdir: Path) -> LocalHandle | None:
        pid_file = results_dir / PID_FILE
        try:
            info = json.loads(pid_file.read_text())
        except (OSError, ValueError):
            return None
        pid = int(info.get("pid", 0))
        if info.get("run_key") != run.run_key or not _alive(pid):
            return None
        handle = LocalHandle(run=run, results_dir=results_dir, workdir=workdir,
                             log_path=results_dir / "logs" / f"{run.action}.log", emulated=bool(info.get("emulated")),
                             pid=pid, attached=True, started=float(info.get("started", time.time())))
        tailers = _status_tailers(load_skill(run.model).action(run.action), results_dir)
        monitor = threading.Thread(target=self._monitor, args=(handle, tailers), daemon=True)
        handle.threads = [monitor]
        monitor.start()
        return handle

    def _write_pid(self, handle: LocalHandle) -> None:
        info = {"pid": handle.pid, "run_key": handle.run.run_key, "started": handle.started,
                "emulated": handle.emulated, "host": os.uname().nodename}
        tmp = handle.results_dir / (PID_FILE + ".tmp")
        tmp.write_text(json.dumps(info))
        os.replace(tmp, handle.results_dir / PID_FILE)

    # ------------------------------------------------------------------ streaming
    def _mask(self, handle: LocalHandle, text: str) -> str:
        for secret in handle.secrets:
            text = text.replace(secret, MASK)
        return text

    def _append_log(self, handle: LocalHandle, line: str) -> None:
        with open(handle.log_path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def _read_output(self, handle: LocalHandle) -> None:
        assert handle.proc is not None and handle.proc.stdout is not None
        with open(handle.log_path, "a", encoding="utf-8") as log:
            for raw in iter(handle.proc.stdout.readline, b""):
                line = self._mask(handle, raw.decode("utf-8", "replace").rstrip("\n"))
                log.write(line + "\n")
                log.flush()
                self._remember(handle, line)
                handle.events_q.put(LogLine(line))
        handle.proc.stdout.close()

    def _remember(self, handle: LocalHandle, line: str) -> None:
        handle.log_tail.append(line)
        if len(handle.log_tail) > LOG_TAIL_LINES:
            del handle.log_tail[: len(handle.log_tail) - LOG_TAIL_LINES]

    def _monitor(self, handle: LocalHandle, tailers: list[StatusTailer]) -> None:
        log_tailer = LineTailer.from_end(handle.log_path) if handle.attached else None
        exit_code: int | None = None
        try:
            while True:
                exit_code = self._exit_code(handle)
                for tailer in tailers:
                    for record in tailer.poll():
                        self._status_record(handle, record)
                for event in handle.reader.tick():
                    handle.events_q.put(event)
                if log_tailer is not None:
                    for line in log_tailer.poll():
                        self._remember(handle, line)
                        handle.events_q.put(LogLine(line))
                if is_remote(handle.run.results_uri):
                    self._upload_live_files_or_wait(handle)
                self._enforce_deadlines(handle)
                if exit_code is not None or (handle.attached and not _alive(handle.pid)):
                    break
                time.sleep(self.poll_seconds)
            for thread in handle.threads:
                if thread is not threading.current_thread():
                    thread.join(timeout=30)
            for tailer in tailers:
                for record in tailer.flush():
                    self._status_record(handle, record)
            for event in handle.reader.close():  # the last epoch's progress
                handle.events_q.put(event)
            if log_tailer is not None:
                for line in log_tailer.flush():
                    self._remember(handle, line)
                    handle.events_q.put(LogLine(line))
            result = local_result(handle, exit_code, lambda text: self._mask(handle, text))
        except Exception as exc:
            # Nobody would record what TAO does from here on: stop it (its checkpoints stay; the retry resumes).
            self._stop_process(handle)
            result = ActionResult(model=handle.run.model, action=handle.run.action, run_key=handle.run.run_key,
                                  status="FAILURE", results_uri=handle.run.results_uri, failure_class="infra",
                                  remedy="The launcher failed while following the run, so it stopped TAO; the "
                                  "action is retried from the newest checkpoint.",
                                  message=f"launcher error: {exc}", emulated=handle.emulated)
        handle.result_value = result
        handle.events_q.put(Finished(result.status, result.message or "", result.failure_class, result.remedy))
        handle.done.set()

    def _status_record(self, handle: LocalHandle, record: dict[str, Any]) -> None:
        handle.records.append(record)
        for event in handle.reader.feed(record):
            handle.events_q.put(event)

    def _exit_code(self, handle: LocalHandle) -> int | None:
        if handle.proc is not None:
            return handle.proc.poll()
        return None

    def _enforce_deadlines(self, handle: LocalHandle) -> None:
        now = time.time()
        timeout = handle.run.timeout_seconds
        if timeout and not handle.timed_out and now - handle.started > timeout:
            handle.timed_out = True
            self._signal(handle, signal.SIGTERM)
        if handle.term_sent_at is not None and now - handle.term_sent_at > self.grace_seconds:
            self._signal(handle, signal.SIGKILL)

    def _signal(self, handle: LocalHandle, sig: int) -> None:
        if sig == signal.SIGTERM and handle.term_sent_at is None:
            handle.term_sent_at = time.time()
        try:
            os.killpg(handle.pid, sig)  # the process leads its own session/group
        except (ProcessLookupError, PermissionError):
            pass

    def _upload_live_files_or_wait(self, handle: LocalHandle) -> None:
        """Live uploads while the store answers; while it does not (a transient failure), files stay local and
        go up at the next poll that succeeds — for at most STORE_OUTAGE_SECONDS, then the run is failed (infra)."""
        try:
            self._upload_live_files(handle)
            handle.store_failing_since = None
        except Exception as exc:
            if not is_transient(exc):
                raise
            now = time.time()
            if handle.store_failing_since is None:
                handle.store_failing_since = now
                self._note(handle, f"taoflow: the store does not answer ({exc}); files stay local and are "
                                   "uploaded when it does")
            elif now - handle.store_failing_since > STORE_OUTAGE_SECONDS:
                raise RuntimeError(f"the store did not answer for {STORE_OUTAGE_SECONDS:g} s ({exc})") from exc

    def _note(self, handle: LocalHandle, line: str) -> None:
        self._append_log(handle, line)
        self._remember(handle, line)
        handle.events_q.put(LogLine(line))

    def _stop_process(self, handle: LocalHandle) -> None:
        """SIGTERM TAO's process group, SIGKILL after the grace period; returns once it is gone."""
        def running() -> bool:
            return handle.proc.poll() is None if handle.proc is not None else _alive(handle.pid)

        if not running():
            return
        self._signal(handle, signal.SIGTERM)
        deadline = time.time() + self.grace_seconds
        while running() and time.time() < deadline:
            time.sleep(0.1)
        if running():
            self._signal(handle, signal.SIGKILL)
            if handle.proc is not None:
                handle.proc.wait()

    def _upload_live_files(self, handle: LocalHandle) -> None:
        store = store_for(handle.run.results_uri)
        for pattern in LIVE_UPLOAD_GLOB:  # at any depth: real TAO nests some under `<action>/`
            for path in handle.results_dir.rglob(pattern):
                rel = path.relative_to(handle.results_dir).as_posix()
                if path.name.startswith(".") or path.is_symlink() or rel.startswith("logs/"):
                    continue
                stat = path.stat()
                key = (stat.st_size, stat.st_mtime)
                if handle.uploaded.get(rel) != key:
                    store.upload_file(path, store.join(handle.run.results_uri, rel))
                    handle.uploaded[rel] = key

    # ------------------------------------------------------------------ protocol
    def events(self, handle: LocalHandle) -> Iterator[Event]:
        while True:
            event = handle.events_q.get()
            yield event
            if isinstance(event, Finished):
                return

    def cancel(self, handle: LocalHandle) -> None:
        handle.cancel_requested = True
        if not handle.done.is_set():
            self._signal(handle, signal.SIGTERM)

    def result(self, handle: LocalHandle) -> ActionResult:
        handle.done.wait()
        assert handle.result_value is not None
        return handle.result_value


def _status_tailers(action: Action, results_dir: Path) -> list[StatusTailer]:
    """Tailers of every place TAO may write this action's status.json (see taoflow/layout.py)."""
    folders = candidate_folders(action.image.value, action.tao_action)
    return [StatusTailer.from_end(p) for p in status_paths(results_dir, *folders)]


def main(argv: list[str] | None = None) -> int:
    """`python -m taoflow.launchers.local RUN_JSON`: the in-pod runner (taoflow/launchers/pod.py)."""
    from taoflow.launchers.pod import main as pod_main

    return pod_main(argv)


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["LocalHandle", "LocalLauncher", "build_argv", "main"]
