"""LocalLauncher: run one ActionRun as a local process — real TAO when its entry point is installed, else the
emulator — and `python -m taoflow.launchers.local RUN_JSON`, which does the same inside a Kubernetes pod or a
work-pool worker and stores `result.json` beside the results.

What it takes care of, so the tasks above it never do:
- argv lists only; secrets never reach argv or a file: a `secret_overrides` key is written into the spec as
  `${oc.env:VAR}` (resolved by TAO's OmegaConf loader) and VAR reaches the process by environment; the value
  is still masked in every log line;
- inputs staged from the store (remote URIs downloaded, archives extracted safely when the skill needs a
  directory); remote results (s3://) run in a local work folder and checkpoints are uploaded as they appear;
- its own process group (`start_new_session`), so cancel and timeout reach every child (SIGTERM, then SIGKILL
  after a grace period) — Prefect's task timeout does not (prefect-notes.md);
- a pid file holding the run key: submitting a run whose results folder already has a live process attaches
  to it instead of starting TAO twice;
- the ActionResult: status from the exit code and status.json's last line, failure class and remedy from the
  skill's error patterns, KPIs final/best, products, checkpoint manifest, GPU-seconds.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import queue
import re
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

from taoflow.dotted import delete_dotted, get_dotted, set_dotted
from taoflow.errors import UserError
from taoflow.launchers.base import Event, Finished, LogLine
from taoflow.processes import alive as _alive
from taoflow.runs import ActionResult, ActionRun
from taoflow.skill import Action, Skill, load_skill
from taoflow.status import (
    STATUS_FILE,
    LineTailer,
    StatusTailer,
    classify_failure,
    events_for,
    final_and_best,
    read_status,
    status_paths,
    terminal_status,
)
from taoflow.storage_errors import is_transient

PID_FILE = ".taoflow_run.json"
SPEC_FILE = "spec.yaml"
MASK = "****"
# Uploaded to a remote store while the action runs: checkpoints (a lost pod loses at most one interval) and
# status.json (progress for whoever follows the run from the store: the Kubernetes and work-pool launchers).
LIVE_UPLOAD_GLOB = ("*.pth", "*.pt", "*.ckpt", "status.json")
LOG_TAIL_LINES = 4000
STORE_OUTAGE_SECONDS = float(os.environ.get("TAOFLOW_STORE_OUTAGE_SECONDS", "600"))


def taoflow_home() -> Path:
    return Path(os.environ.get("TAOFLOW_HOME") or Path.home() / ".taoflow")


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def local_of(uri: str) -> Path:
    return Path(uri.removeprefix("file://")).absolute()


def _store_for(uri: str):
    from taoflow.store import ArtifactStore

    if is_remote(uri):
        scheme, rest = uri.split("://", 1)
        return ArtifactStore(f"{scheme}://{rest.split('/', 1)[0]}")
    return ArtifactStore(str(local_of(uri).parent))


def _map_strings(value: Any, fn) -> Any:
    if isinstance(value, dict):
        return {k: _map_strings(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_strings(v, fn) for v in value]
    return fn(value) if isinstance(value, str) else value


# --------------------------------------------------------------------------------------- secrets

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def env_reference(var: str) -> str:
    """An OmegaConf env interpolation: TAO's Hydra loader resolves it from the process environment when the
    key is read (OmegaConf's built-in `oc.env` resolver; tests/test_secrets.py checks it with OmegaConf), so
    the secret never appears in the spec file or on the command line (which every local user can read in `ps`)."""
    if not ENV_NAME.match(var):
        raise UserError(f"{var!r} is not an environment variable name (secret variables must match "
                        f"{ENV_NAME.pattern})")
    return "${oc.env:" + var + "}"


def secret_environment(run: ActionRun) -> dict[str, str]:
    """The secret variables the run names (`secret_overrides`), with their values, from the run's env or
    this process's; a variable that is not set is left out (TAO's key then keeps its default)."""
    out = {}
    for var in run.secret_overrides.values():
        value = run.env.get(var) if var in run.env else os.environ.get(var)
        if value:
            out[var] = value
    return out


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
        results_dir = workdir / "results" if remote else local_of(run.results_uri)
        results_dir.mkdir(parents=True, exist_ok=True)

        attached = self._attach(run, results_dir, workdir)
        if attached is not None:
            return attached
        if remote:
            self._pull_history(run, results_dir)

        spec = copy.deepcopy(run.spec)
        if remote:
            spec = self._localise_results(run, spec, results_dir)
        spec = self._stage(run, spec, action, workdir)
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
        status_tailers = [StatusTailer.from_end(p) for p in status_paths(results_dir, action.tao_action)]
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
        tao_action = load_skill(run.model).action(run.action).tao_action
        tailers = [StatusTailer.from_end(p) for p in status_paths(results_dir, tao_action)]
        monitor = threading.Thread(target=self._monitor, args=(handle, tailers), daemon=True)
        handle.threads = [monitor]
        monitor.start()
        return handle

    def _localise_results(self, run: ActionRun, spec: dict[str, Any], results_dir: Path) -> dict[str, Any]:
        """Paths inside the remote results folder become paths in the local one; the files among them that
        already exist remotely (the run's own checkpoint to resume from) are downloaded to that place."""
        prefix = run.results_uri.rstrip("/")
        store = _store_for(run.results_uri)

        def localise(value: str) -> str:
            if value != prefix and not value.startswith(prefix + "/"):
                return value
            local = Path(str(results_dir) + value[len(prefix):])
            if value != prefix and not local.exists() and store.exists(value):
                store.download(value, local)
            return str(local)

        return _map_strings(spec, localise)

    def _pull_history(self, run: ActionRun, results_dir: Path) -> None:
        """A retry on a fresh machine continues the results already in the store: TAO appends to status.json
        (the KPI history of earlier attempts) and the emulator's fired-faults record must survive too."""
        store = _store_for(run.results_uri)
        for name in (STATUS_FILE, ".emulator_faults_fired"):
            if not (results_dir / name).exists():
                try:
                    store.download(store.join(run.results_uri, name), results_dir / name)
                except FileNotFoundError:
                    pass

    def _write_pid(self, handle: LocalHandle) -> None:
        info = {"pid": handle.pid, "run_key": handle.run.run_key, "started": handle.started,
                "emulated": handle.emulated, "host": os.uname().nodename}
        tmp = handle.results_dir / (PID_FILE + ".tmp")
        tmp.write_text(json.dumps(info))
        os.replace(tmp, handle.results_dir / PID_FILE)

    # ------------------------------------------------------------------ staging
    def _stage(self, run: ActionRun, spec: dict[str, Any], action: Action, workdir: Path) -> dict[str, Any]:
        inputs = workdir / "inputs"
        for local, uri in run.stage.items():
            dest = Path(local) if os.path.isabs(local) else workdir / local
            if local in run.extract:
                self._extract_uri(uri, dest, inputs)
            elif not dest.exists():
                _store_for(uri).download(uri, dest)
        cache: dict[str, str] = {}

        def fetch(value: str) -> str:
            if not is_remote(value):
                return value
            if value not in cache:
                dest = inputs / hashlib.sha1(value.encode()).hexdigest()[:12] / Path(value.rstrip("/")).name
                if not dest.exists():
                    try:
                        _store_for(value).download(value, dest)
                    except FileNotFoundError:
                        return value  # an output path or a file TAO creates; TAO reports it if it must exist
                cache[value] = str(dest)
            return cache[value]

        for ds in action.data_sources:
            if ds.extract_from:
                self._extract_source(spec, ds, inputs)
        return _map_strings(spec, fetch)

    def _extract_source(self, spec: dict[str, Any], ds: Any, inputs: Path) -> None:
        """A directory the skill says TAO needs but the dataset holds as an archive: extract it (safely)."""
        value = get_dotted(spec, ds.key)
        values = value if isinstance(value, list) else [value]
        out = []
        for item in values:
            if not isinstance(item, str):
                out.append(item)
                continue
            if not is_remote(item) and Path(item).is_dir():
                out.append(item)
                continue
            root = item[: -len(ds.path)].rstrip("/") if ds.path and item.rstrip("/").endswith(ds.path) else \
                item.rsplit("/", 1)[0]
            archive_uri = f"{root}/{ds.extract_from}"
            target = inputs / "extracted" / hashlib.sha1(archive_uri.encode()).hexdigest()[:12]
            self._extract_uri(archive_uri, target, inputs)
            inner = target / ds.path if ds.path and (target / ds.path).is_dir() else target
            out.append(str(inner))
        set_dotted(spec, ds.key, out if isinstance(value, list) else out[0])

    def _extract_uri(self, uri: str, target: Path, inputs: Path) -> None:
        from taoflow.archive import safe_extract

        marker = target / ".taoflow_extracted"
        if marker.exists():
            return
        if is_remote(uri):
            archive = inputs / "archives" / hashlib.sha1(uri.encode()).hexdigest()[:12] / Path(uri).name
            if not archive.exists():
                _store_for(uri).download(uri, archive)
        else:
            archive = local_of(uri)
            if not archive.is_file():
                raise UserError(f"cannot stage {uri}: the archive does not exist (and neither does the folder "
                                "that would be extracted from it)")
        safe_extract(archive, target)
        marker.write_text(uri)

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
            if log_tailer is not None:
                for line in log_tailer.flush():
                    self._remember(handle, line)
                    handle.events_q.put(LogLine(line))
            result = self._finish(handle, exit_code)
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
        for event in events_for(record):
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
        store = _store_for(handle.run.results_uri)
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

    # ------------------------------------------------------------------ result
    def _finish(self, handle: LocalHandle, exit_code: int | None) -> ActionResult:
        from taoflow.manifest import build_manifest

        run = handle.run
        skill = load_skill(run.model)
        ended = time.time()
        remote = is_remote(run.results_uri)
        tao_action = skill.action(run.action).tao_action
        all_records = [r for p in status_paths(handle.results_dir, tao_action) for r in read_status(p)]
        last = terminal_status(handle.records)
        if handle.attached and last is None:
            last = terminal_status(all_records)
        if handle.attached and exit_code is None:
            exit_code = 0 if last == "SUCCESS" else None
        if exit_code == 0 and last in (None, "SUCCESS"):
            status, failure = "SUCCESS", None
        elif handle.cancel_requested and not handle.timed_out:
            status, failure = "CANCELLED", None
        else:
            status = "FAILURE"
            failure = classify_failure("\n".join(handle.log_tail), exit_code, skill)
        try:
            (handle.results_dir / PID_FILE).unlink()
        except FileNotFoundError:
            pass
        if remote:
            store = _store_for(run.results_uri)
            if node_rank() == 0:
                store.upload_dir(handle.results_dir, run.results_uri)
            else:  # only rank 0 writes results in TAO; other nodes contribute their log
                rel = handle.log_path.relative_to(handle.results_dir).as_posix()
                store.upload_file(handle.log_path, store.join(run.results_uri, rel))
        else:
            store = _store_for(run.results_uri)
        metric, direction = skill.monitoring.metric, skill.monitoring.direction
        manifest = build_manifest(store, run.results_uri, metric=metric, direction=direction).to_dict()
        final, best = final_and_best(all_records, metric, direction)
        epochs = {r["epoch"] for r in handle.records if r.get("status") == "RUNNING" and isinstance(r.get("epoch"), int)}
        message = None
        if failure is not None:
            message = failure.message
            if handle.timed_out:
                message = f"timed out after {run.timeout_seconds:g} s; {message}".rstrip("; ")
        elif status == "CANCELLED":
            message = "cancelled"
        return ActionResult(
            model=run.model, action=run.action, run_key=run.run_key, status=status, results_uri=run.results_uri,
            manifest=manifest, kpis_final=final, kpis_best=best,
            products=self._products(handle), gpu_seconds=round((ended - handle.started) * max(run.gpus, 0)
                                                               * max(run.nodes, 1), 3),
            epochs_run=len(epochs),
            failure_class=("infra" if handle.timed_out else failure.failure_class) if failure else None,
            remedy=(("The run exceeded its timeout; it is retried from the newest checkpoint. Raise "
                     "timeout_seconds if the action needs longer.") if handle.timed_out else failure.remedy)
            if failure else None,
            message=self._mask(handle, message) if message else None,
            exit_code=_shell_code(exit_code), emulated=handle.emulated,
        )

    def _products(self, handle: LocalHandle) -> dict[str, str]:
        root = handle.results_dir

        def uri(path: Path) -> str:
            rel = path.relative_to(root).as_posix()
            return handle.run.results_uri.rstrip("/") + "/" + rel

        found: dict[str, str] = {}
        for kind, patterns in (("onnx", ["*.onnx"]), ("engine", ["*.engine", "*.trt", "*.plan"]),
                               ("cal_cache", ["cal*.bin", "*.cache", "*.tensorfile"]),
                               ("metrics", ["evaluation_results.json"]), ("annotations", ["annotations.pkl"]),
                               ("anchor", ["anchor_init.npy"]), ("quantized", ["quantized_model*.pth"])):
            for pattern in patterns:
                hits = sorted(p for p in root.rglob(pattern) if not p.name.startswith("."))
                if hits:
                    found[kind] = uri(hits[0])
                    break
        checkpoints = sorted(root.rglob("model_epoch_*_step_*.pth"), key=lambda p: (p.name, str(p)))
        if checkpoints:
            found["checkpoint"] = uri(checkpoints[-1])  # the newest: names sort by zero-padded epoch
        for kind, path in (("log", handle.log_path), ("status", root / STATUS_FILE), ("spec", root / SPEC_FILE)):
            if path.exists():
                found[kind] = uri(path)
        return found

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


def node_rank() -> int:
    """This node's rank in a multi-node run (TAO's NODE_RANK convention; 0 when single-node)."""
    try:
        return int(os.environ.get("NODE_RANK") or 0)
    except ValueError:
        return 0


def _shell_code(code: int | None) -> int | None:
    """Popen's -N (killed by signal N) as a shell/Kubernetes exit code 128+N."""
    return 128 - code if code is not None and code < 0 else code


# --------------------------------------------------------------------------------------- pod / worker entry

def run_from_json(source: str) -> int:
    """Run the ActionRun in `source` (a JSON file path, `-` for stdin, or inline JSON) here; store result.json
    next to the results; return TAO's exit code (128+N when killed by signal N)."""
    if source == "-":
        text = sys.stdin.read()
    elif source.lstrip().startswith("{"):
        text = source
    else:
        text = Path(source).read_text()
    run = ActionRun(**json.loads(text))
    launcher = LocalLauncher()
    handle = launcher.submit(run)

    def forward(signum: int, frame: Any) -> None:  # pod deletion / worker shutdown reaches TAO's group
        launcher.cancel(handle)

    signal.signal(signal.SIGTERM, forward)
    for event in launcher.events(handle):
        if isinstance(event, LogLine):
            print(event.text, flush=True)
    result = launcher.result(handle)
    if node_rank() == 0:  # one result per run: rank 0's (it is the node that writes TAO's results)
        _store_for(run.results_uri).write_result(run.results_uri, result)
    print(f"taoflow: {run.model} {run.action} {result.status}"
          + (f" ({result.failure_class}): {result.message}" if not result.ok else ""), flush=True)
    if result.ok:
        return 0
    return result.exit_code if result.exit_code not in (None, 0) else 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m taoflow.launchers.local RUN_JSON  (a file, '-' for stdin, or inline JSON)",
              file=sys.stderr)
        return 2
    try:
        return run_from_json(args[0])
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["LocalHandle", "LocalLauncher", "build_argv", "run_from_json"]
