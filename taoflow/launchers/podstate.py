"""Reading Kubernetes pod and Job state: which failures are the infrastructure's (retried), which are the
program's or the configuration's (not retried), and the exit code and completion index of a pod."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taoflow.k8s import COMPLETION_INDEX_ANNOTATION

IMAGE_PULL_REASONS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
CONFIG_ERROR_REASONS = {"CreateContainerConfigError", "CreateContainerError"}
NODE_LOST_REASONS = {"NodeLost", "Terminated", "Shutdown", "NodeShutdown", "UnexpectedAdmissionError", "NodeAffinity"}
INFRA_REMEDY = "retried from the newest checkpoint."


@dataclass(frozen=True)
class PodFailure:
    """A failure read from Kubernetes state rather than from TAO's log."""

    failure_class: str
    remedy: str
    message: str


def classify_pod(pod: dict[str, Any], image: str | None = None, secret_name: str | None = None
                 ) -> PodFailure | None:
    """Why a pod (as a plain API dict) failed or cannot start, when Kubernetes says so; None otherwise."""
    status = pod.get("status") or {}
    name = (pod.get("metadata") or {}).get("name", "pod")
    reason = status.get("reason")
    message = status.get("message") or ""
    for cond in status.get("conditions") or []:
        if cond.get("type") == "DisruptionTarget" and cond.get("status") == "True":
            why = cond.get("reason") or "disruption"
            return PodFailure("infra", f"The pod was disrupted ({why}: preemption, eviction or node loss); "
                              + INFRA_REMEDY, f"{name}: {why}: {cond.get('message') or message}".rstrip(": "))
    if reason == "Evicted":
        return PodFailure("infra", "The pod was evicted (node pressure); " + INFRA_REMEDY,
                          f"{name} evicted: {message}".rstrip(": "))
    if reason in NODE_LOST_REASONS:
        return PodFailure("infra", f"The pod's node went away ({reason}); " + INFRA_REMEDY,
                          f"{name}: {reason}: {message}".rstrip(": "))
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        waiting = state.get("waiting") or {}
        wreason = waiting.get("reason")
        if wreason in IMAGE_PULL_REASONS:
            img = cs.get("image") or image or "the image"
            return PodFailure(
                "program",
                f"Kubernetes cannot pull the image {img} ({wreason}). Fix the image reference or tag (kubernetes "
                "profile `images`/`image_tag`, or TAOFLOW_IMAGE_PYT/_DEPLOY/_DATA_SERVICES), push the tao-flows "
                "image (infra/docker/), or add an image pull secret for the registry (profile "
                "`image_pull_secrets`, e.g. an nvcr.io key).",
                f"{name}: {wreason}: {waiting.get('message') or img}")
        if wreason in CONFIG_ERROR_REASONS:
            return PodFailure(
                "program",
                f"The container cannot be configured ({wreason}): usually the Secret "
                f"{secret_name or ''} or one of its keys is missing. Create it from infra/k8s/secret.example.yaml.",
                f"{name}: {wreason}: {waiting.get('message') or ''}".rstrip(": "))
        terminated = state.get("terminated") or {}
        if terminated.get("reason") == "OOMKilled":
            return PodFailure(
                "infra", "The container exceeded its memory limit and was OOM-killed; " + INFRA_REMEDY
                + " If it repeats, raise the profile's memory_limit/memory_request or lower dataset workers.",
                f"{name}: OOMKilled (exit code {terminated.get('exitCode', 137)})")
    return None


def container_exit_code(pod: dict[str, Any]) -> int | None:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (cs.get("state") or {}).get("terminated") or {}
        if "exitCode" in terminated:
            return int(terminated["exitCode"])
    return None


def job_state(job: dict[str, Any]) -> tuple[str | None, str | None, str]:
    """('Complete' | 'Failed' | None, condition reason, message) of a Job dict."""
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            return cond["type"], cond.get("reason"), cond.get("message") or ""
    return None, None, ""


def _pod_index(pod: dict[str, Any]) -> int:
    meta = pod.get("metadata") or {}
    value = (meta.get("annotations") or {}).get(COMPLETION_INDEX_ANNOTATION)
    if value is None:
        value = (meta.get("labels") or {}).get(COMPLETION_INDEX_ANNOTATION, 0)
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _container_started(pod: dict[str, Any]) -> bool:
    for cs in (pod.get("status") or {}).get("containerStatuses") or []:
        state = cs.get("state") or {}
        if state.get("running") or state.get("terminated"):
            return True
    return False


