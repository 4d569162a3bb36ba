"""KubernetesLauncher: one ActionRun as a Kubernetes Job (Indexed Job + headless Service when multi-node).

The objects are `taoflow.k8s.build_run_objects`, so `--dry-run` shows exactly what is submitted. The
`kubernetes` client is imported lazily: the engine imports without it.

- submit: the Job is named from `run_key`. If it exists and is running or done, the launcher attaches to it
  (the same run submitted twice runs once); if it exists and *failed*, it is deleted and created again —
  that is a retry, and the pod resumes from the newest checkpoint in the store. The ConfigMap (run.json)
  and the Service are owned by the Job (ownerReferences), so the Job's TTL or deletion removes them too.
- events: pod logs streamed as LogLine (other ranks prefixed `[node N]`), status.json lines from the store
  as StatusRecord/EpochProgress, pod problems worth knowing (unschedulable) as LogLine, then Finished.
- cancel: deletes the Job with foreground propagation (its pods go first), the Service and the ConfigMap.
- result: `result.json` the pod runner wrote to the store when there is one, else a result built from the
  pod and Job status, classified:
  * infra (retried from the newest checkpoint): eviction, preemption, node loss (DisruptionTarget
    condition, pod reason Evicted/NodeLost/…), a pod deleted under a running Job, OOMKilled / exit 137,
    and DeadlineExceeded — `activeDeadlineSeconds` is the run's timeout, treated like the local launcher's
    timeout: each retry resumes from the newest checkpoint, so progress accumulates and the flow's retry
    count bounds the total (raise the deadline if one attempt can never finish);
  * program (not retried): the image cannot be pulled (ErrImagePull / ImagePullBackOff / InvalidImageName —
    the message names the image), the container cannot be configured (missing Secret or key);
  * otherwise TAO's own failure, classified from the pod log by the skill's error patterns.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from taoflow.errors import UserError
from taoflow.k8s import (
    CONTAINER_NAME,
    LABEL_PREFIX,
    KubernetesProfile,
    build_run_objects,
    image_for,
    is_remote,
    job_name,
    profile_from_options,
    resolved_shape,
    run_labels,
    selector,
)
from taoflow.launchers.base import Event, Finished, LogLine, result_after_events
from taoflow.launchers.logstream import drain_lines, pump_lines
from taoflow.launchers.podstate import (
    INFRA_REMEDY,
    PodFailure,
    _container_started,
    _pod_index,
    classify_pod,
    container_exit_code,
    job_state,
)
from taoflow.launchers.remote import remove_stale_result, store_status_events
from taoflow.layout import candidate_folders
from taoflow.runs import ActionResult, ActionRun
from taoflow.skill import Skill, load_skill
from taoflow.status import StatusReader, classify_failure, final_and_best


@dataclass
class KubernetesHandle:
    run: ActionRun
    job_name: str
    namespace: str
    attached: bool = False
    uid: str | None = None
    cancelled: bool = False
    started: float = field(default_factory=time.time)
    log_tail: list[str] = field(default_factory=list)
    seen_pods: set[str] = field(default_factory=set)
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    followers: dict[str, threading.Thread] = field(default_factory=dict)
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    status_offsets: dict[str, int] = field(default_factory=dict)
    records: list[dict[str, Any]] = field(default_factory=list)
    reader: StatusReader = field(default_factory=StatusReader)
    notices: set[str] = field(default_factory=set)
    failure: PodFailure | None = None
    job_failure_reason: str | None = None
    exit_code: int | None = None
    result_value: ActionResult | None = None
    done: threading.Event = field(default_factory=threading.Event)


def _last_line(lines: list[str]) -> str:
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


# ------------------------------------------------------------------------------------ launcher

class KubernetesLauncher:
    """The Launcher protocol on a Kubernetes cluster (see the module docstring)."""

    name = "kubernetes"

    def __init__(self, profile: KubernetesProfile | dict[str, Any] | None = None, *, api_client: Any = None,
                 kubeconfig: str | None = None, context: str | None = None, poll_seconds: float = 2.0,
                 delete_timeout: float = 120.0, **profile_fields: Any):
        if isinstance(profile, KubernetesProfile):
            self.profile = profile_from_options({**profile.model_dump(), **profile_fields})
        else:
            self.profile = profile_from_options({**(profile or {}), **profile_fields})
        self.poll_seconds = poll_seconds
        self.delete_timeout = delete_timeout
        self._api_client = api_client
        self._kubeconfig = kubeconfig
        self._context = context
        self._apis: tuple[Any, Any] | None = None

    # ------------------------------------------------------------------ client
    def _client(self) -> tuple[Any, Any]:
        """(CoreV1Api, BatchV1Api), loading in-cluster config, else the kubeconfig, on first use."""
        if self._apis is None:
            from kubernetes import client, config

            api_client = self._api_client
            if api_client is None:
                try:
                    config.load_incluster_config()
                    api_client = client.ApiClient()
                except config.ConfigException:
                    api_client = config.new_client_from_config(config_file=self._kubeconfig,
                                                               context=self._context)
            self._api_client = api_client
            self._apis = (client.CoreV1Api(api_client), client.BatchV1Api(api_client))
        return self._apis

    def _plain(self, obj: Any) -> dict[str, Any]:
        self._client()
        return self._api_client.sanitize_for_serialization(obj)

    @staticmethod
    def _status(exc: Exception) -> int | None:
        return getattr(exc, "status", None)

    # ------------------------------------------------------------------ submit
    def submit(self, run: ActionRun) -> KubernetesHandle:
        from kubernetes.client.exceptions import ApiException

        skill = load_skill(run.model)
        profile = self.profile
        if not is_remote(run.results_uri) and not profile.store_pvc:
            raise UserError(
                f"the kubernetes launcher needs results on a store the pods can reach: results_uri "
                f"{run.results_uri!r} is a local path. Use an s3:// store (--store / TAOFLOW_STORE) or set the "
                "kubernetes profile's store_pvc to a PersistentVolumeClaim holding that path.")
        _core, batch = self._client()
        ns = profile.namespace
        objects = build_run_objects(run, skill, profile)
        job = next(o for o in objects if o["kind"] == "Job")
        name = job["metadata"]["name"]
        handle = KubernetesHandle(run=run, job_name=name, namespace=ns)

        existing = self._read_job(name)
        if existing is not None:
            owner_key = ((existing.get("metadata") or {}).get("labels") or {}).get(f"{LABEL_PREFIX}/run-key")
            if owner_key != run_labels(run)[f"{LABEL_PREFIX}/run-key"]:
                raise UserError(f"a Job named {name} already exists in namespace {ns} but belongs to run key "
                                f"{owner_key!r}, not {run.run_key!r}; delete it or use another namespace")
            state, _, _ = job_state(existing)
            if state == "Failed":
                self._delete_job_and_wait(name)  # a retry of a failed attempt: run it again
            else:
                handle.attached = True
                handle.uid = (existing.get("metadata") or {}).get("uid")
                return handle
        self._remove_stale_result(run)
        try:
            created = self._plain(batch.create_namespaced_job(ns, job))
        except ApiException as exc:
            if self._status(exc) != 409:
                raise
            handle.attached = True  # someone created it between our read and create
            handle.uid = ((self._read_job(name) or {}).get("metadata") or {}).get("uid")
            return handle
        handle.uid = (created.get("metadata") or {}).get("uid")
        owner = [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": handle.uid,
                  "blockOwnerDeletion": False}] if handle.uid else []
        try:
            for obj in objects:
                if obj["kind"] == "Job":
                    continue
                obj = {**obj, "metadata": {**obj["metadata"], **({"ownerReferences": owner} if owner else {})}}
                self._create_or_replace(obj)
        except Exception:
            self._delete_job(name)  # a Job whose run.json is missing would wait forever
            raise
        return handle

    def _create_or_replace(self, obj: dict[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException

        core, _ = self._client()
        ns, name = self.profile.namespace, obj["metadata"]["name"]
        create = {"ConfigMap": core.create_namespaced_config_map, "Service": core.create_namespaced_service}
        replace = {"ConfigMap": core.replace_namespaced_config_map}
        try:
            create[obj["kind"]](ns, obj)
        except ApiException as exc:
            if self._status(exc) != 409:
                raise
            if obj["kind"] in replace:  # run.json of an earlier attempt (another resume path)
                replace[obj["kind"]](name, ns, obj)

    def _read_job(self, name: str) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        _, batch = self._client()
        try:
            return self._plain(batch.read_namespaced_job(name, self.profile.namespace))
        except ApiException as exc:
            if self._status(exc) == 404:
                return None
            raise

    def _delete_job(self, name: str) -> None:
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        _, batch = self._client()
        try:
            batch.delete_namespaced_job(name, self.profile.namespace,
                                        body=client.V1DeleteOptions(propagation_policy="Foreground"))
        except ApiException as exc:
            if self._status(exc) != 404:
                raise

    def _delete_job_and_wait(self, name: str) -> None:
        self._delete_job(name)
        deadline = time.monotonic() + self.delete_timeout
        while self._read_job(name) is not None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"Job {name} was not deleted within {self.delete_timeout:g} s")
            time.sleep(self.poll_seconds)

    def _remove_stale_result(self, run: ActionRun) -> None:
        remove_stale_result(self._store(run), run.results_uri)

    def _store(self, run: ActionRun):
        from taoflow.store import ArtifactStore

        root = self.profile.store or (run.results_uri.split("/runs/", 1)[0] if "/runs/" in run.results_uri
                                      else None)
        return ArtifactStore(root)

    # ------------------------------------------------------------------ follow
    def events(self, handle: KubernetesHandle) -> Iterator[Event]:
        """Polls pods, the Job and status.json until the Job ends; logs stream from follower threads."""
        if handle.result_value is not None:
            yield Finished(handle.result_value.status, handle.result_value.message or "",
                           handle.result_value.failure_class, handle.result_value.remedy)
            return
        skill = load_skill(handle.run.model)
        image = image_for(handle.run, skill, self.profile)
        while True:
            job = self._read_job(handle.job_name)
            pods = self._list_pods(handle)
            yield from self._pod_events(handle, pods, image)
            yield from self._drain(handle)
            yield from self._status_events(handle, skill)
            done = handle.cancelled or job is None or job_state(job)[0] is not None or handle.failure is not None
            if done:
                break
            time.sleep(self.poll_seconds)
        if job is not None:
            state, reason, message = job_state(job)
            handle.job_failure_reason = reason if state == "Failed" else None
            if reason == "DeadlineExceeded" and handle.failure is None:
                handle.failure = PodFailure(
                    "infra", "The Job ran past activeDeadlineSeconds (the run's timeout) and was stopped; "
                    + INFRA_REMEDY + " Raise timeout_seconds / active_deadline_seconds if one attempt needs longer.",
                    f"DeadlineExceeded: {message}".rstrip(": "))
            if state == "Failed" and handle.failure is None and handle.exit_code is None and not handle.cancelled:
                handle.failure = PodFailure("infra", "The Job's pod went away before its container ended (pod "
                                            "deleted, node drained or lost); " + INFRA_REMEDY,
                                            f"Job {handle.job_name} failed ({reason}): its pod was deleted or lost "
                                            "before the container ended")
        elif not handle.cancelled and handle.failure is None:
            handle.failure = PodFailure("infra", "The Job was deleted while it ran (not by this launcher); "
                                        + INFRA_REMEDY, f"Job {handle.job_name} disappeared")
        if handle.failure is not None and handle.failure.failure_class == "program" and job is not None \
                and job_state(job)[0] is None:
            self._delete_job(handle.job_name)  # an image that cannot be pulled never starts: stop waiting
        for thread in handle.followers.values():
            thread.join(timeout=10)
        yield from self._drain(handle)
        yield from self._status_events(handle, skill)
        yield from handle.reader.close()
        result = self._finish(handle, skill)
        handle.result_value = result
        handle.done.set()
        yield Finished(result.status, result.message or "", result.failure_class, result.remedy)

    def _list_pods(self, handle: KubernetesHandle) -> list[dict[str, Any]]:
        core, _ = self._client()
        pods = core.list_namespaced_pod(handle.namespace, label_selector=selector(handle.run))
        return [self._plain(p) for p in pods.items]

    def _pod_events(self, handle: KubernetesHandle, pods: list[dict[str, Any]], image: str) -> Iterator[Event]:
        current = {}
        for pod in pods:
            name = pod["metadata"]["name"]
            current[name] = pod
            handle.seen_pods.add(name)
            code = container_exit_code(pod)
            if code is not None and (handle.exit_code in (None, 0) or (code != 0 and _pod_index(pod) == 0)):
                handle.exit_code = code  # the first failing rank's code, rank 0's when it failed too
            failure = classify_pod(pod, image, self.profile.secret_name)
            if failure is not None and handle.failure is None and not handle.cancelled:
                handle.failure = failure
            if name not in handle.followers and _container_started(pod):
                thread = threading.Thread(target=self._follow_log, args=(handle, name, _pod_index(pod)),
                                          daemon=True)
                handle.followers[name] = thread
                thread.start()
            for cond in (pod.get("status") or {}).get("conditions") or []:
                if cond.get("type") == "PodScheduled" and cond.get("status") == "False" and cond.get("reason"):
                    notice = f"taoflow: pod {name} is pending: {cond['reason']}: {cond.get('message', '')}"
                    if notice not in handle.notices:
                        handle.notices.add(notice)
                        yield LogLine(notice.rstrip(": "))
        vanished = set(handle.pods) - set(current)
        for name in vanished:
            old = handle.pods[name]
            phase = (old.get("status") or {}).get("phase")
            if phase not in ("Succeeded", "Failed") and handle.failure is None and not handle.cancelled:
                handle.failure = PodFailure("infra", "The pod was deleted while it ran (node drained or lost); "
                                            + INFRA_REMEDY, f"{name} deleted during phase {phase}")
        handle.pods = current

    def _follow_log(self, handle: KubernetesHandle, pod: str, index: int) -> None:
        """Streams one pod's log (follow=true) into the handle's queue until the container ends."""
        core, _ = self._client()
        prefix = f"[node {index}] " if index else ""
        try:
            resp = core.read_namespaced_pod_log(pod, handle.namespace, container=CONTAINER_NAME, follow=True,
                                                _preload_content=False)
            # read1: whatever has arrived, so a line never waits for a full buffer
            pump_lines(iter(lambda: resp.read1(65536), b""), handle.lines, prefix)
            resp.release_conn()
        except Exception as exc:
            handle.lines.put(f"taoflow: log stream of {pod} ended: {exc}")

    def _drain(self, handle: KubernetesHandle) -> Iterator[Event]:
        yield from drain_lines(handle.lines, handle.log_tail)

    def _status_events(self, handle: KubernetesHandle, skill: Skill) -> Iterator[Event]:
        action = skill.action(handle.run.action)
        yield from store_status_events(self._store(handle.run), handle.run.results_uri,
                                       candidate_folders(action.image.value, action.tao_action),
                                       handle.status_offsets, handle.records, handle.reader)

    # ------------------------------------------------------------------ result
    def _finish(self, handle: KubernetesHandle, skill: Skill) -> ActionResult:
        from taoflow.manifest import build_manifest

        run = handle.run
        store = self._store(run)
        base = {"model": run.model, "action": run.action, "run_key": run.run_key, "results_uri": run.results_uri}
        if handle.cancelled:
            return ActionResult(**base, status="CANCELLED", message="cancelled")
        stored = store.read_result(run.results_uri)
        if stored is not None and stored.run_key == run.run_key and handle.failure is None:
            return stored
        metric, direction = skill.monitoring.metric, skill.monitoring.direction
        try:
            manifest = build_manifest(store, run.results_uri, metric=metric, direction=direction).to_dict()
        except Exception:
            manifest = None
        final, best = final_and_best(handle.records, metric, direction)
        gpus, _nodes = resolved_shape(run, skill, self.profile)
        gpu_seconds = round(self._pod_seconds(handle) * gpus, 3)
        common = {"manifest": manifest, "kpis_final": final, "kpis_best": best, "gpu_seconds": gpu_seconds,
                      "exit_code": handle.exit_code}
        if handle.failure is not None:
            f = handle.failure
            return ActionResult(**base, **common, status="FAILURE", failure_class=f.failure_class,
                                remedy=f.remedy, message=f.message)
        if stored is not None:
            return stored
        if handle.job_failure_reason is None and handle.exit_code in (0, None):
            return ActionResult(**base, **common, status="SUCCESS",
                                message="result.json missing; status from the Job")
        info = classify_failure("\n".join(handle.log_tail), handle.exit_code, skill)
        return ActionResult(**base, **common, status="FAILURE", failure_class=info.failure_class,
                            remedy=info.remedy, message=info.message or _last_line(handle.log_tail)
                            or f"Job failed ({handle.job_failure_reason})")

    @staticmethod
    def _pod_seconds(handle: KubernetesHandle) -> float:
        from datetime import datetime

        total = 0.0
        for pod in handle.pods.values():
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                term = (cs.get("state") or {}).get("terminated") or {}
                try:
                    start = datetime.fromisoformat(str(term["startedAt"]))
                    end = datetime.fromisoformat(str(term["finishedAt"]))
                except (KeyError, ValueError):
                    continue
                total += max((end - start).total_seconds(), 0.0)
        return total

    # ------------------------------------------------------------------ protocol
    def cancel(self, handle: KubernetesHandle) -> None:
        """Deletes the Job (foreground: its pods first), then the Service and the ConfigMap."""
        from kubernetes.client.exceptions import ApiException

        handle.cancelled = True
        core, _ = self._client()
        self._delete_job(handle.job_name)
        for delete in (core.delete_namespaced_service, core.delete_namespaced_config_map):
            try:
                delete(handle.job_name, handle.namespace)
            except ApiException as exc:
                if self._status(exc) != 404:
                    raise

    def result(self, handle: KubernetesHandle) -> ActionResult:
        return result_after_events(self, handle)


__all__ = ["KubernetesHandle", "KubernetesLauncher", "PodFailure", "classify_pod", "job_name", "job_state",
           "remove_stale_result", "store_status_events"]
