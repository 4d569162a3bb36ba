"""DockerLauncher: one ActionRun as a container on a single GPU box, through the docker SDK (imported lazily,
so the engine imports without it).

The container runs the same pod runner as Kubernetes — `python -m taoflow.launchers.local /run/taoflow/run.json`
in a TAO image that contains tao-flows (infra/docker/) — so staging, checkpoint uploads and result.json are
identical everywhere. Around it:
- GPUs as a device request (`--gpus N`), `/dev/shm` sized by `shm_size`, labels (model, action, run key);
- it runs as the caller's UID:GID, so results written to the bind-mounted store belong to the user, not root;
- a local store is bind-mounted read-write at the same path (the spec's paths stay valid), local dataset paths
  named in the spec read-only at the same paths, plus any `mounts` given;
- the container is named from `run_key` (as the Kubernetes Job is): a running or successful container with that
  name is attached to, a failed one is removed and started again (the flow's retry, resuming from checkpoints);
- secret values (store keys, the encryption key variable) are passed from the caller's environment as container
  environment, never written into run.json, and only what the run names is passed;
- cancel stops with a grace period (SIGTERM, then SIGKILL) and kills if it is still running.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taoflow.errors import UserError
from taoflow.k8s import (
    SECRET_ENV_NAMES,
    KubernetesProfile,
    image_for,
    is_remote,
    job_name,
    run_document,
    run_labels,
)
from taoflow.launchers.base import Event, Finished, result_after_events
from taoflow.launchers.logstream import drain_lines, pump_lines
from taoflow.launchers.remote import remove_stale_result, store_status_events
from taoflow.layout import candidate_folders
from taoflow.runs import ActionResult, ActionRun
from taoflow.skill import Skill, load_skill
from taoflow.status import StatusReader, classify_failure, final_and_best, run_outcome

RUN_DIR = "/run/taoflow"
CONTAINER_HOME = "/tmp/taoflow"  # writable for any UID (the container runs as the caller)
STORE_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL",
             "AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_DEFAULT_REGION")


@dataclass
class DockerHandle:
    run: ActionRun
    name: str
    container: Any
    attached: bool = False
    cancelled: bool = False
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    log_tail: list[str] = field(default_factory=list)
    follower: threading.Thread | None = None
    status_offsets: dict[str, int] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    reader: StatusReader = field(default_factory=StatusReader)
    started: float = field(default_factory=time.time)
    result_value: ActionResult | None = None


def container_name(run: ActionRun) -> str:
    return job_name(run)


class DockerLauncher:
    """The Launcher protocol on the local docker daemon (see the module docstring)."""

    name = "docker"

    def __init__(self, *, client: Any = None, images: dict[str, str] | None = None, image_tag: str | None = None,
                 shm_size: str = "16g", mounts: list[str] | None = None, user: str | None = None,
                 store: str | None = None, grace_seconds: int = 30, poll_seconds: float = 1.0,
                 env: dict[str, str] | None = None, network: str | None = None, **_: Any):
        self._client = client
        self.images = dict(images or {})
        self.image_tag = image_tag
        self.shm_size = shm_size
        self.mounts = list(mounts or [])
        self.user = user or f"{os.getuid()}:{os.getgid()}"
        self.store = store
        self.grace_seconds = grace_seconds
        self.poll_seconds = poll_seconds
        self.env = dict(env or {})
        self.network = network

    # ------------------------------------------------------------------ helpers
    def client(self) -> Any:
        if self._client is None:
            import docker

            try:
                self._client = docker.from_env()
            except docker.errors.DockerException as exc:
                raise UserError(f"cannot reach the docker daemon ({exc}); start docker or use --launcher local") from None
        return self._client

    def _store(self, run: ActionRun):
        from taoflow.store import ArtifactStore

        return ArtifactStore(self._store_root(run))

    def _store_root(self, run: ActionRun) -> str:
        if self.store:
            return self.store
        uri = run.results_uri
        return uri.split("/runs/", 1)[0] if "/runs/" in uri else uri.rsplit("/", 1)[0]

    def image(self, run: ActionRun, skill: Skill) -> str:
        return image_for(run, skill, KubernetesProfile(images=self.images, image_tag=self.image_tag))

    def environment(self, run: ActionRun, skill: Skill) -> dict[str, str]:
        """Plain settings, then the secrets the run names (store keys, secret_overrides), from the caller's env."""
        env = {"PYTHONUNBUFFERED": "1", "TAOFLOW_HOME": CONTAINER_HOME, "HOME": "/tmp",
               "TAOFLOW_STORE": self._store_root(run), "TAOFLOW_RUN_KEY": run.run_key,
               "TAOFLOW_LAUNCH": skill.launch}
        env.update({k: v for k, v in run.env.items() if k not in SECRET_ENV_NAMES})
        env.update(self.env)
        names = list(STORE_ENV) + list(run.secret_overrides.values())
        for name in names:
            value = run.env.get(name) if name in run.env else os.environ.get(name)
            if value:
                env[name] = value
        missing = [v for v in run.secret_overrides.values() if not env.get(v)]
        if missing:
            raise UserError(f"{run.model} {run.action} needs the secret environment variable(s) "
                            f"{', '.join(missing)} (for {', '.join(run.secret_overrides)}); export it first")
        return env

    def volumes(self, run: ActionRun, run_dir: Path) -> dict[str, dict[str, str]]:
        """Bind mounts: run.json (ro), a local store (rw), local paths the spec reads (ro), extra `mounts`."""
        volumes: dict[str, dict[str, str]] = {str(run_dir): {"bind": RUN_DIR, "mode": "ro"}}
        root = self._store_root(run)
        rw: list[str] = []
        if not is_remote(root):
            root = os.path.abspath(root.removeprefix("file://"))
            Path(root).mkdir(parents=True, exist_ok=True)
            rw.append(root)
        ro = [p for p in _local_paths([run.spec, list(run.stage.values())]) if os.path.exists(p)]
        ro += [os.path.abspath(m) for m in self.mounts]
        for path in rw:
            volumes[path] = {"bind": path, "mode": "rw"}
        for path in sorted(set(ro)):
            if any(path == p or path.startswith(p.rstrip("/") + "/") for p in volumes if p != str(run_dir)):
                continue  # already inside a mounted folder
            volumes[path] = {"bind": path, "mode": "ro"}
        return volumes

    # ------------------------------------------------------------------ submit
    def submit(self, run: ActionRun) -> DockerHandle:
        import docker

        skill = load_skill(run.model)
        client = self.client()
        name = container_name(run)
        try:
            existing = client.containers.get(name)
        except docker.errors.NotFound:
            existing = None
        if existing is not None:
            state = (existing.attrs.get("State") or {})
            if existing.status in ("created", "running", "restarting", "paused") or \
                    (existing.status == "exited" and state.get("ExitCode") == 0):
                return DockerHandle(run=run, name=name, container=existing, attached=True)
            existing.remove(force=True)  # a failed attempt: this submission is the retry

        remove_stale_result(self._store(run), run.results_uri)
        run_dir = _home() / "docker" / name
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "run.json").write_text(json.dumps(run_document(run), indent=2, sort_keys=True, default=str))
        gpus = run.gpus if skill.action(run.action).gpu else 0
        image = self.image(run, skill)
        kwargs: dict[str, Any] = {
            "command": ["python", "-m", "taoflow.launchers.local", f"{RUN_DIR}/run.json"],
            "name": name,
            "detach": True,
            "labels": run_labels(run),
            "environment": self.environment(run, skill),
            "volumes": self.volumes(run, run_dir),
            "shm_size": self.shm_size,
            "user": self.user,
            "working_dir": "/tmp",
        }
        if gpus:
            kwargs["device_requests"] = [docker.types.DeviceRequest(count=gpus, capabilities=[["gpu"]])]
        if self.network:
            kwargs["network"] = self.network
        try:
            container = client.containers.run(image, **kwargs)
        except docker.errors.ImageNotFound as exc:
            raise UserError(f"docker image {image} not found ({exc}); build it from infra/docker/ or pull it "
                            "(nvcr.io needs `docker login nvcr.io`)") from exc
        except docker.errors.APIError as exc:
            if "Conflict" in str(exc) or getattr(exc, "status_code", None) == 409:
                return DockerHandle(run=run, name=name, container=client.containers.get(name), attached=True)
            if "capabilities" in str(exc) and "gpu" in str(exc):
                raise UserError(f"docker cannot give the container GPUs ({exc}); install the NVIDIA Container "
                                "Toolkit or run with --gpus 0") from exc
            raise
        return DockerHandle(run=run, name=name, container=container)

    # ------------------------------------------------------------------ follow
    def _follow(self, handle: DockerHandle) -> None:
        try:
            pump_lines(handle.container.logs(stream=True, follow=True, stdout=True, stderr=True), handle.lines)
        except Exception as exc:
            handle.lines.put(f"taoflow: log stream of {handle.name} ended: {exc}")

    def _drain(self, handle: DockerHandle) -> Iterator[Event]:
        yield from drain_lines(handle.lines, handle.log_tail)

    def events(self, handle: DockerHandle) -> Iterator[Event]:
        if handle.result_value is not None:
            r = handle.result_value
            yield Finished(r.status, r.message or "", r.failure_class, r.remedy)
            return
        skill = load_skill(handle.run.model)
        action = skill.action(handle.run.action)
        folders = candidate_folders(action.image.value, action.tao_action)
        store = self._store(handle.run)
        if handle.follower is None:
            handle.follower = threading.Thread(target=self._follow, args=(handle,), daemon=True)
            handle.follower.start()
        while True:
            handle.container.reload()
            running = handle.container.status in ("created", "running", "restarting", "paused")
            yield from self._drain(handle)
            yield from store_status_events(store, handle.run.results_uri, folders, handle.status_offsets,
                                           handle.records, handle.reader)
            if not running or handle.cancelled:
                break
            time.sleep(self.poll_seconds)
        exit_code = int(handle.container.wait().get("StatusCode", -1))
        handle.follower.join(timeout=10)
        yield from self._drain(handle)
        yield from store_status_events(store, handle.run.results_uri, folders, handle.status_offsets,
                                       handle.records, handle.reader)
        yield from handle.reader.close()
        result = self._finish(handle, skill, exit_code)
        handle.result_value = result
        yield Finished(result.status, result.message or "", result.failure_class, result.remedy)

    def _finish(self, handle: DockerHandle, skill: Skill, exit_code: int) -> ActionResult:
        from taoflow.manifest import build_manifest

        run = handle.run
        base = {"model": run.model, "action": run.action, "run_key": run.run_key, "results_uri": run.results_uri}
        if handle.cancelled:
            return ActionResult(**base, status="CANCELLED", message="cancelled", exit_code=exit_code)
        store = self._store(run)
        stored = store.read_result(run.results_uri)
        if stored is not None and stored.run_key == run.run_key:
            return stored
        state = handle.container.attrs.get("State") or {}
        metric, direction = skill.monitoring.metric, skill.monitoring.direction
        try:
            manifest = build_manifest(store, run.results_uri, metric=metric, direction=direction).to_dict()
        except Exception:
            manifest = None
        final, best = final_and_best(handle.records, metric, direction)
        common = {"manifest": manifest, "kpis_final": final, "kpis_best": best, "exit_code": exit_code}
        if run_outcome(handle.records, exit_code) == "SUCCESS":
            return ActionResult(**base, **common, status="SUCCESS", message="result.json missing; exit code 0")
        if state.get("OOMKilled"):
            return ActionResult(**base, **common, status="FAILURE", failure_class="infra",
                                message=f"{handle.name}: OOMKilled (exit code {exit_code})",
                                remedy="The container ran out of host memory and was killed; retried from the "
                                "newest checkpoint. Lower dataset workers or batch size if it repeats.")
        info = classify_failure("\n".join(handle.log_tail), exit_code, skill)
        last = next((line for line in reversed(handle.log_tail) if line.strip()), "")
        return ActionResult(**base, **common, status="FAILURE", failure_class=info.failure_class,
                            remedy=info.remedy, message=info.message or last or f"exit code {exit_code}")

    # ------------------------------------------------------------------ protocol
    def cancel(self, handle: DockerHandle) -> None:
        """SIGTERM, SIGKILL after `grace_seconds` (docker stop), then kill if it still runs."""
        import docker

        handle.cancelled = True
        try:
            handle.container.stop(timeout=self.grace_seconds)
            handle.container.reload()
            if handle.container.status == "running":
                handle.container.kill()
        except docker.errors.NotFound:
            pass

    def result(self, handle: DockerHandle) -> ActionResult:
        return result_after_events(self, handle)


def _home() -> Path:
    return Path(os.environ.get("TAOFLOW_HOME") or Path.home() / ".taoflow")


def _local_paths(values: Any) -> list[str]:
    """Absolute local paths among the strings of a nested value (the spec's dataset and checkpoint paths)."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif isinstance(value, str) and value.startswith("/") and "\n" not in value:
            found.append(os.path.normpath(value))

    walk(values)
    return found


__all__ = ["DockerHandle", "DockerLauncher", "container_name"]
