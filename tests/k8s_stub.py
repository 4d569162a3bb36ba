"""A stub Kubernetes API server on loopback for the launcher tests.

No Kubernetes cluster exists on these machines, so this stands in for the API server: a small threaded HTTP
server implementing just the REST endpoints the `kubernetes` Python client calls for the launcher —
create/read/delete Jobs, create/read/replace/delete ConfigMaps and Services, list pods by label selector,
read (and follow) a pod's log — with pods whose states the tests script. It keeps objects as plain dicts,
answers 409 AlreadyExists / 404 NotFound as the real server does, and records every request so tests can
assert what was sent (e.g. the propagationPolicy of a delete).

Scripting: creating a Job creates its pods (one per completion index, Pending, labelled like the real Job
controller does). Tests then call `start_pod`, `log`, `finish_pod`, `evict_pod`, `set_waiting`,
`delete_pod`, `fail_job`; the Job's Complete/Failed condition follows from its pods (backoffLimit 0), as
in Kubernetes. `run_pod` plays kubelet: it runs the pod's real container command as a local process.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

KINDS = {  # URL plural → (kind, apiVersion)
    "jobs": ("Job", "batch/v1"),
    "configmaps": ("ConfigMap", "v1"),
    "services": ("Service", "v1"),
    "pods": ("Pod", "v1"),
}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def _matches(labels: dict[str, str], selector: str | None) -> bool:
    if not selector:
        return True
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


class StubCluster:
    """The stub's state. Every method is thread-safe; `changed` wakes log followers."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (plural, namespace, name)
        self.logs: dict[tuple[str, str], list[str]] = {}  # (namespace, pod) → lines
        self.requests: list[dict[str, Any]] = []
        self.stopping = False
        self.url = ""
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    # ------------------------------------------------------------------ server
    def start(self) -> str:
        cluster = self

        class Handler(_Handler):
            state = cluster

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        with self.changed:
            self.stopping = True  # ends any follow stream
            self.changed.notify_all()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def api_client(self):
        """A real `kubernetes.client.ApiClient` pointed at this stub."""
        from kubernetes import client

        config = client.Configuration()
        config.host = self.url
        return client.ApiClient(config)

    # ------------------------------------------------------------------ objects
    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        with self.lock:
            obj = self.objects.get((plural, namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def names(self, plural: str) -> list[str]:
        with self.lock:
            return sorted(name for (p, _, name) in self.objects if p == plural)

    def pods(self, job: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            pods = [o for (p, _, _), o in self.objects.items() if p == "pods"]
            if job:
                pods = [o for o in pods if o["metadata"]["labels"].get("batch.kubernetes.io/job-name") == job]
            return sorted(pods, key=lambda o: o["metadata"]["name"])

    def pod(self, job: str, index: int = 0) -> dict[str, Any]:
        for pod in self.pods(job):
            if pod["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] == str(index):
                return pod
        raise KeyError(f"no pod {index} of {job}")

    def create(self, plural: str, namespace: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.changed:
            name = body["metadata"]["name"]
            key = (plural, namespace, name)
            if key in self.objects:
                return 409, _status(409, "AlreadyExists", f'{plural} "{name}" already exists')
            obj = copy.deepcopy(body)
            meta = obj.setdefault("metadata", {})
            meta.update({"namespace": namespace, "uid": str(uuid.uuid4()), "creationTimestamp": _now(),
                         "resourceVersion": "1"})
            self.objects[key] = obj
            if plural == "jobs":
                obj["status"] = {"startTime": _now(), "active": 0}
                self._create_pods(obj)
            self.changed.notify_all()
            return 201, copy.deepcopy(obj)

    def replace(self, plural: str, namespace: str, name: str, body: dict[str, Any]) -> tuple[int, dict]:
        with self.changed:
            key = (plural, namespace, name)
            if key not in self.objects:
                return 404, _status(404, "NotFound", f'{plural} "{name}" not found')
            obj = copy.deepcopy(body)
            obj["metadata"].update({k: self.objects[key]["metadata"][k] for k in ("uid", "creationTimestamp")})
            self.objects[key] = obj
            return 200, copy.deepcopy(obj)

    def delete(self, plural: str, namespace: str, name: str, policy: str | None) -> tuple[int, dict]:
        with self.changed:
            key = (plural, namespace, name)
            obj = self.objects.pop(key, None)
            if obj is None:
                return 404, _status(404, "NotFound", f'{plural} "{name}" not found')
            if plural == "jobs" and policy in ("Foreground", "Background"):
                for pod in self.pods(name):
                    self._remove_pod(namespace, pod["metadata"]["name"])
            self.changed.notify_all()
            return 200, obj

    def _create_pods(self, job: dict[str, Any]) -> None:
        spec = job["spec"]
        name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
        for index in range(int(spec.get("parallelism", 1))):
            labels = {**spec["template"]["metadata"].get("labels", {}),
                      "batch.kubernetes.io/job-name": name, "job-name": name,
                      "controller-uid": job["metadata"]["uid"]}
            pod_name = f"{name}-{index}-{uuid.uuid4().hex[:5]}"
            self.objects[("pods", namespace, pod_name)] = {
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": pod_name, "namespace": namespace, "labels": labels,
                             "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
                             "uid": str(uuid.uuid4()), "creationTimestamp": _now()},
                "spec": copy.deepcopy(spec["template"]["spec"]),
                "status": {"phase": "Pending", "conditions": [], "containerStatuses": [
                    {"name": "tao", "image": spec["template"]["spec"]["containers"][0]["image"],
                     "imageID": "", "ready": False, "restartCount": 0,
                     "state": {"waiting": {"reason": "ContainerCreating"}}}]},
            }
            self.logs[(namespace, pod_name)] = []

    def _remove_pod(self, namespace: str, pod_name: str) -> None:
        self.objects.pop(("pods", namespace, pod_name), None)
        self.changed.notify_all()

    # ------------------------------------------------------------------ scripting
    def _edit_pod(self, job: str, index: int):
        pod = self.pod(job, index)
        return self.objects[("pods", pod["metadata"]["namespace"], pod["metadata"]["name"])]

    def start_pod(self, job: str, index: int = 0) -> None:
        with self.changed:
            pod = self._edit_pod(job, index)
            pod["status"].update({"phase": "Running", "startTime": _now()})
            pod["status"]["containerStatuses"][0]["state"] = {"running": {"startedAt": _now()}}
            self._refresh_job(job)
            self.changed.notify_all()

    def log(self, job: str, *lines: str, index: int = 0) -> None:
        with self.changed:
            pod = self._edit_pod(job, index)
            self.logs[(pod["metadata"]["namespace"], pod["metadata"]["name"])].extend(lines)
            self.changed.notify_all()

    def finish_pod(self, job: str, exit_code: int = 0, *, index: int = 0, reason: str | None = None) -> None:
        with self.changed:
            pod = self._edit_pod(job, index)
            started = (pod["status"]["containerStatuses"][0]["state"].get("running") or {}).get("startedAt", _now())
            pod["status"]["phase"] = "Succeeded" if exit_code == 0 else "Failed"
            pod["status"]["containerStatuses"][0]["state"] = {"terminated": {
                "exitCode": exit_code, "reason": reason or ("Completed" if exit_code == 0 else "Error"),
                "startedAt": started, "finishedAt": _now()}}
            self._refresh_job(job)
            self.changed.notify_all()

    def evict_pod(self, job: str, *, index: int = 0, disruption: str | None = None) -> None:
        """Node-pressure eviction (pod reason Evicted) or, with `disruption`, a DisruptionTarget condition
        (PreemptionByScheduler, DeletionByTaintManager, ...)."""
        with self.changed:
            pod = self._edit_pod(job, index)
            pod["status"]["phase"] = "Failed"
            if disruption:
                pod["status"]["conditions"].append({"type": "DisruptionTarget", "status": "True",
                                                    "reason": disruption, "message": "test disruption"})
            else:
                pod["status"].update({"reason": "Evicted", "message": "The node was low on resource: memory."})
            pod["status"]["containerStatuses"][0]["state"] = {"terminated": {
                "exitCode": 137, "reason": "Error", "startedAt": _now(), "finishedAt": _now()}}
            self._refresh_job(job)
            self.changed.notify_all()

    def set_waiting(self, job: str, reason: str, message: str = "", *, index: int = 0) -> None:
        with self.changed:
            pod = self._edit_pod(job, index)
            pod["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": reason, "message": message}}
            self.changed.notify_all()

    def set_unschedulable(self, job: str, message: str, *, index: int = 0) -> None:
        with self.changed:
            pod = self._edit_pod(job, index)
            pod["status"]["conditions"] = [{"type": "PodScheduled", "status": "False",
                                            "reason": "Unschedulable", "message": message}]

    def delete_pod(self, job: str, index: int = 0) -> None:
        """A running pod deleted (node drained or lost): with backoffLimit 0 the Job fails."""
        with self.changed:
            pod = self.pod(job, index)
            self._remove_pod(pod["metadata"]["namespace"], pod["metadata"]["name"])
            obj = next(o for (p, _, n), o in self.objects.items() if p == "jobs" and n == job)
            obj["status"]["failed"] = obj["status"].get("failed", 0) + 1
            obj["status"]["conditions"] = [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                            "message": "Job has reached the specified backoff limit"}]

    def fail_job(self, job: str, reason: str, message: str = "") -> None:
        """Mark the Job failed (DeadlineExceeded: the controller also deletes its running pods)."""
        with self.changed:
            obj = next(o for (p, _, n), o in self.objects.items() if p == "jobs" and n == job)
            obj["status"]["conditions"] = [{"type": "Failed", "status": "True", "reason": reason,
                                            "message": message}]
            if reason == "DeadlineExceeded":
                for pod in self.pods(job):
                    self._remove_pod(pod["metadata"]["namespace"], pod["metadata"]["name"])
            self.changed.notify_all()

    def _refresh_job(self, job: str) -> None:
        """Job conditions from its pods, as the Job controller sets them with backoffLimit 0."""
        obj = next((o for (p, _, n), o in self.objects.items() if p == "jobs" and n == job), None)
        if obj is None:
            return
        pods = self.pods(job)
        phases = [p["status"]["phase"] for p in pods]
        status = obj["status"]
        status["active"] = sum(ph in ("Pending", "Running") for ph in phases)
        status["succeeded"] = phases.count("Succeeded")
        status["failed"] = phases.count("Failed")
        if status["failed"]:
            status["conditions"] = [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                     "message": "Job has reached the specified backoff limit"}]
        elif status["succeeded"] == int(obj["spec"].get("completions", 1)):
            status["conditions"] = [{"type": "Complete", "status": "True"}]
            status["completionTime"] = _now()

    # ------------------------------------------------------------------ kubelet
    def run_pod(self, job: str, *, secrets: dict[str, dict[str, str]], index: int = 0,
                env: dict[str, str] | None = None) -> threading.Thread:
        """Play kubelet for one pod: run its container command as a local process, the way a node would.

        Volumes become local folders (configMap items written out, emptyDirs temporary, PVCs the same path),
        the environment is built from the pod spec — `secretKeyRef` from `secrets` ({secret: {key: value}}),
        fieldRef to the completion-index annotation — and `python` is this interpreter. Output goes to the pod
        log as it is printed; the exit code ends the pod. A required secret key that is missing fails the pod
        with CreateContainerConfigError, as Kubernetes does. Returns the thread that waits for the process."""
        with self.changed:
            pod = copy.deepcopy(self.pod(job, index))
            namespace = pod["metadata"]["namespace"]
            spec = pod["spec"]
            container = spec["containers"][0]
            mounts: dict[str, str] = {}
            for mount in container.get("volumeMounts", []):
                volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
                if mount["mountPath"] == "/dev/shm":
                    continue
                if "persistentVolumeClaim" in volume:
                    continue  # the store: same path here
                local = tempfile.mkdtemp(prefix=f"kubelet-{mount['name']}-")
                if "configMap" in volume:
                    cm = self.objects[("configmaps", namespace, volume["configMap"]["name"])]
                    for item in volume["configMap"].get("items") or [{"key": k, "path": k} for k in cm["data"]]:
                        Path(local, item["path"]).write_text(cm["data"][item["key"]])
                mounts[mount["mountPath"]] = local
            values: dict[str, str] = {}
            for entry in container.get("env", []):
                ref = entry.get("valueFrom") or {}
                if "value" in entry:
                    values[entry["name"]] = entry["value"]
                elif "secretKeyRef" in ref:
                    sel = ref["secretKeyRef"]
                    value = secrets.get(sel["name"], {}).get(sel["key"])
                    if value is None and not sel.get("optional"):
                        self._set_waiting(job, index, "CreateContainerConfigError",
                                          f'couldn\'t find key {sel["key"]} in Secret {namespace}/{sel["name"]}')
                        return threading.Thread()
                    if value is not None:
                        values[entry["name"]] = value
                elif "fieldRef" in ref:
                    match = re.fullmatch(r"metadata\.annotations\['(.+)'\]", ref["fieldRef"]["fieldPath"])
                    values[entry["name"]] = pod["metadata"]["annotations"][match.group(1)]

        def local(text: str) -> str:
            for path, folder in mounts.items():
                if text == path or text.startswith(path + "/"):
                    return folder + text[len(path):]
            return text

        argv = [local(a) for a in container["command"] + container.get("args", [])]
        argv = [sys.executable if a == "python" else a for a in argv]
        process_env = {**os.environ, **(env or {}), **{k: local(v) for k, v in values.items()}}
        self.start_pod(job, index)
        proc = subprocess.Popen(argv, env=process_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)

        def pump() -> None:
            assert proc.stdout is not None
            for raw in proc.stdout:
                self.log(job, raw.decode("utf-8", "replace").rstrip("\n"), index=index)
            self.finish_pod(job, proc.wait(), index=index)

        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        return thread

    def _set_waiting(self, job: str, index: int, reason: str, message: str) -> None:
        pod = self._edit_pod(job, index)
        pod["status"]["containerStatuses"][0]["state"] = {"waiting": {"reason": reason, "message": message}}
        self.changed.notify_all()

    def pod_finished(self, namespace: str, pod_name: str) -> bool:
        pod = self.objects.get(("pods", namespace, pod_name))
        return self.stopping or pod is None or pod["status"]["phase"] in ("Succeeded", "Failed")


class _Handler(BaseHTTPRequestHandler):
    state: StubCluster
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        return

    # /api/v1/namespaces/{ns}/{plural}[/{name}[/log]] or /apis/batch/v1/namespaces/{ns}/jobs[/{name}]
    def _route(self) -> tuple[str, str, str | None, str | None, dict[str, list[str]]]:
        url = urlparse(self.path)
        parts = [p for p in url.path.split("/") if p]
        if parts[:2] == ["api", "v1"]:
            rest = parts[2:]
        elif parts[:3] == ["apis", "batch", "v1"]:
            rest = parts[3:]
        else:
            rest = []
        if len(rest) < 3 or rest[0] != "namespaces" or rest[2] not in KINDS:
            return "", "", None, None, {}
        name = rest[3] if len(rest) > 3 else None
        sub = rest[4] if len(rest) > 4 else None
        return rest[2], rest[1], name, sub, parse_qs(url.query)

    def _body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}") if length else {}

    def _send(self, code: int, obj: dict[str, Any]) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self, method: str, body: dict[str, Any] | None = None) -> None:
        with self.state.lock:
            self.state.requests.append({"method": method, "path": self.path, "body": body})

    def do_POST(self) -> None:
        body = self._body()
        self._record("POST", body)
        plural, ns, name, _, _ = self._route()
        if not plural or name:
            return self._send(404, _status(404, "NotFound", self.path))
        self._send(*self.state.create(plural, ns, body))

    def do_PUT(self) -> None:
        body = self._body()
        self._record("PUT", body)
        plural, ns, name, _, _ = self._route()
        if not plural or not name:
            return self._send(404, _status(404, "NotFound", self.path))
        self._send(*self.state.replace(plural, ns, name, body))

    def do_DELETE(self) -> None:
        body = self._body()
        self._record("DELETE", body)
        plural, ns, name, _, query = self._route()
        if not plural or not name:
            return self._send(404, _status(404, "NotFound", self.path))
        policy = body.get("propagationPolicy") or (query.get("propagationPolicy") or [None])[0]
        self._send(*self.state.delete(plural, ns, name, policy))

    def do_GET(self) -> None:
        self._record("GET")
        plural, ns, name, sub, query = self._route()
        if not plural:
            return self._send(404, _status(404, "NotFound", self.path))
        if name is None:
            selector = (query.get("labelSelector") or [None])[0]
            with self.state.lock:
                items = [copy.deepcopy(o) for (p, n, _), o in self.state.objects.items()
                         if p == plural and n == ns and _matches(o["metadata"].get("labels", {}), selector)]
            kind, version = KINDS[plural]
            return self._send(200, {"kind": f"{kind}List", "apiVersion": version, "metadata": {},
                                    "items": items})
        if sub == "log":
            return self._log(ns, name, (query.get("follow") or ["false"])[0] == "true")
        obj = self.state.get(plural, ns, name)
        if obj is None:
            return self._send(404, _status(404, "NotFound", f'{plural} "{name}" not found'))
        self._send(200, obj)

    def _log(self, ns: str, pod: str, follow: bool) -> None:
        state = self.state
        with state.lock:
            if ("pods", ns, pod) not in state.objects:
                return self._send(404, _status(404, "NotFound", f'pods "{pod}" not found'))
            obj = state.objects[("pods", ns, pod)]
            if "waiting" in obj["status"]["containerStatuses"][0]["state"]:
                return self._send(400, _status(400, "BadRequest", f'container "tao" in pod "{pod}" is waiting'))
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Connection", "close")
        self.end_headers()
        sent = 0
        while True:
            with state.changed:
                lines = list(state.logs.get((ns, pod), []))
                finished = state.pod_finished(ns, pod)
                if sent == len(lines) and not finished and follow:
                    state.changed.wait(timeout=0.5)
                    continue
            if sent < len(lines):
                self.wfile.write("".join(line + "\n" for line in lines[sent:]).encode())
                self.wfile.flush()
                sent = len(lines)
            if not follow or finished:
                break
        self.close_connection = True


def start_stub() -> StubCluster:
    cluster = StubCluster()
    cluster.start()
    return cluster


__all__ = ["StubCluster", "start_stub"]
