"""Kubernetes manifests for one ActionRun: pure functions from (run, skill, profile) to API object dicts.

The KubernetesLauncher submits exactly these objects and `taoflow run … --launcher kubernetes --dry-run`
prints them (`dump_run_objects`), so what a user reviews is what the cluster receives.

What they do better than NVIDIA's multi-node Job (docs/tao-core-notes.md):
- `/dev/shm` is a memory-medium emptyDir with a size limit (PyTorch DataLoader workers need it);
- CPU/memory requests, `nvidia.com/gpu` limits, A100 node selector and GPU tolerations (configurable);
- `activeDeadlineSeconds`, `ttlSecondsAfterFinished`, `backoffLimit: 0` (retries belong to the flow, which
  resumes from the newest checkpoint; Kubernetes restarting a pod would not update the resume path);
- credentials only as `secretKeyRef`/`envFrom` references to a Secret, never values; the encryption key
  reaches TAO as that env var, which the pod runner's spec names as `${oc.env:VAR}` (never on argv);
- the pod runs `python -m taoflow.launchers.local /run/taoflow/run.json`, which stages inputs, runs TAO and
  uploads checkpoints as they appear, so a dead pod loses at most one checkpoint interval.

The ActionRun travels in a ConfigMap named like the Job (`run.json`, no secret values: secret spec keys are
only *names* of environment variables). Multi-node runs are an Indexed Job plus a headless Service, with
TAO's distributed environment (WORLD_SIZE = nodes, NODE_RANK = RANK = completion index, MASTER_ADDR =
`<job>-0.<service>`, MASTER_PORT, NUM_GPU_PER_NODE).
"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from taoflow.errors import UserError
from taoflow.runs import ActionRun
from taoflow.skill import Skill

MANAGED_BY = "tao-flows"
LABEL_PREFIX = "taoflow.io"
RUN_DIR = "/run/taoflow"
RUN_FILE = "run.json"
WORK_DIR = "/workspace/taoflow"
STORE_MOUNT = "/mnt/taoflow-store"
CONTAINER_NAME = "tao"
MASTER_PORT = 29500
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
MAX_NAME = 52  # a Job name becomes pod hostnames `<job>-<index>` and label values (≤ 63)
DEFAULT_NODE_SELECTOR = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
DEFAULT_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
# Store credentials: read from the Secret by name; optional, so clusters with node/IRSA credentials or a
# store on a volume need not define them.
DEFAULT_SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
# Environment variables that must never be set from ActionRun.env as plain values.
SECRET_ENV_NAMES = frozenset({"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                              "PREFECT_API_KEY"})
# Any other variable whose name says it is a credential is read from the Secret too, never set inline.
SECRET_NAME_PATTERN = re.compile(r"KEY|SECRET|PASSWORD|TOKEN|CREDENTIAL", re.IGNORECASE)
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")


class KubernetesProfile(BaseModel):
    """Where and how TAO pods run. Every field has a default that fits an A100 cluster set up with
    `infra/k8s/`; `gpus`/`nodes` None means the ActionRun's own."""

    model_config = ConfigDict(extra="forbid")

    namespace: str = "tao-flows"
    # Role (pyt / deploy / data-services) → image. The image must contain tao-flows (infra/docker/);
    # unset roles use the ActionRun's image. `image_tag` replaces the tag of whichever image is chosen.
    images: dict[str, str] = Field(default_factory=dict)
    image_tag: str | None = None
    image_pull_policy: str = "IfNotPresent"
    image_pull_secrets: list[str] = Field(default_factory=list)
    gpus: int | None = Field(None, ge=0)
    nodes: int | None = Field(None, ge=1)
    cpu_request: str = "8"
    memory_request: str = "64Gi"
    cpu_limit: str | None = None
    memory_limit: str | None = None
    node_selector: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_NODE_SELECTOR))
    tolerations: list[dict[str, Any]] = Field(default_factory=lambda: [dict(t) for t in DEFAULT_TOLERATIONS])
    cpu_node_selector: dict[str, str] = Field(default_factory=dict)  # for actions without GPUs
    shm_size: str = "64Gi"
    work_size: str | None = None  # emptyDir size limit of the pod's scratch folder
    secret_name: str = "tao-flows-credentials"
    secret_keys: list[str] = Field(default_factory=lambda: list(DEFAULT_SECRET_KEYS))
    env_from_secrets: list[str] = Field(default_factory=list)  # whole Secrets as env (envFrom)
    env: dict[str, str] = Field(default_factory=dict)  # plain, non-secret settings (endpoint, region)
    service_account: str | None = None
    active_deadline_seconds: int | None = Field(None, ge=1)  # None: the run's timeout_seconds, if any
    ttl_seconds_after_finished: int | None = Field(86400, ge=0)
    store: str | None = None  # TAOFLOW_STORE in the pod (default: the root of the run's results_uri)
    store_pvc: str | None = None  # PVC holding a local (non-S3) store, mounted at the store root
    master_port: int = MASTER_PORT
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    # Pod only, e.g. {"karpenter.sh/do-not-disrupt": "true", "cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
    pod_annotations: dict[str, str] = Field(default_factory=dict)
    runtime_class_name: str | None = None  # e.g. "nvidia" where the GPU Operator installs that RuntimeClass
    priority_class_name: str | None = None


LAUNCHER_OPTIONS = frozenset({"api_client", "kubeconfig", "context", "poll_seconds", "delete_timeout", "profile"})


def profile_from_options(options: dict[str, Any] | None = None, **overrides: Any) -> KubernetesProfile:
    """A KubernetesProfile from launcher options (`LauncherProfile.options`, job variables, CLI), ignoring the
    options that configure the client rather than the pods. Unknown keys are a UserError naming the allowed
    ones — Prefect accepts unknown job-variable keys silently, so a typo would otherwise vanish."""
    from pydantic import ValidationError

    data = {k: v for k, v in {**(options or {}), **overrides}.items() if k not in LAUNCHER_OPTIONS}
    nested = (options or {}).get("profile")
    if isinstance(nested, dict):
        data = {**nested, **data}
    try:
        return KubernetesProfile(**data)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        allowed = ", ".join(sorted(KubernetesProfile.model_fields))
        raise UserError(f"invalid kubernetes launcher options: {'; '.join(problems)} (allowed: {allowed})",
                        problems=problems) from None


def check_job_variables(base_job_template: dict[str, Any], values: dict[str, Any], *, pool: str = "") -> None:
    """Refuse job variables a work pool would silently ignore (unknown keys) or reject late (wrong types), with
    a UserError naming each key — e.g. a deployment's `job_variables` against infra/workpools/tao-a100.json."""
    import jsonschema

    schema = base_job_template.get("variables") or {}
    known = set(schema.get("properties") or {})
    problems = [f"{key}: not a job variable of the pool (known: {', '.join(sorted(known))})"
                for key in values if key not in known]
    validator = jsonschema.Draft202012Validator(schema)
    for error in validator.iter_errors({k: v for k, v in values.items() if k in known}):
        where = ".".join(str(p) for p in error.absolute_path) or "(top level)"
        problems.append(f"{where}: {error.message}")
    if problems:
        raise UserError(f"invalid job variables for work pool {pool or '(pool)'}", problems=problems)


# ------------------------------------------------------------------------------------------- names

def dns_label(text: str) -> str:
    """Lower-case, `[a-z0-9-]`, no leading/trailing dash (DNS-1123 label characters)."""
    out = re.sub(r"[^a-z0-9-]+", "-", text.lower())
    return re.sub(r"-{2,}", "-", out).strip("-")


def job_name(run: ActionRun) -> str:
    """`tao-<model>-<action>-<run_key[:12]>`, DNS-1123, ≤ MAX_NAME characters, deterministic: the same run
    always maps to the same Job, which is how a second submission finds the first."""
    key = dns_label(run.run_key)[:12] or "run"
    head = dns_label(f"tao-{run.model}-{run.action}")
    head = head[: MAX_NAME - len(key) - 1].rstrip("-")
    return f"{head}-{key}"


def service_name(run: ActionRun) -> str:
    return job_name(run)


def config_map_name(run: ActionRun) -> str:
    return job_name(run)


def _label_value(text: str) -> str:
    """A label value: ≤ 63 characters of `[A-Za-z0-9._-]`, alphanumeric at both ends."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:63]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", out)


def run_labels(run: ActionRun, profile: KubernetesProfile | None = None) -> dict[str, str]:
    """Labels on every object of a run; `selector(run)` finds its pods."""
    labels = dict(profile.labels) if profile else {}
    labels.update({
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/name": "tao",
        f"{LABEL_PREFIX}/model": _label_value(run.model),
        f"{LABEL_PREFIX}/action": _label_value(run.action),
        f"{LABEL_PREFIX}/run-key": _label_value(run.run_key),
    })
    return labels


def selector(run: ActionRun) -> str:
    """Label selector of the run's pods (Job, pods, Service and ConfigMap all carry it)."""
    return f"{LABEL_PREFIX}/run-key={_label_value(run.run_key)}"


# ------------------------------------------------------------------------------------------- images

def image_for(run: ActionRun, skill: Skill, profile: KubernetesProfile) -> str:
    """The profile's image for the action's role, else the run's image; `image_tag` replaces the tag."""
    role = skill.action(run.action).image.value
    image = profile.images.get(role) or run.image
    if profile.image_tag:
        image = with_tag(image, profile.image_tag)
    return image


def with_tag(image: str, tag: str) -> str:
    """`repo[:tag]` with the tag replaced (a registry port `host:5000/repo` is not a tag)."""
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    repo = name[:colon] if colon > slash else name
    return f"{repo}:{tag}"


# ------------------------------------------------------------------------------------------- helpers

def _check_quantity(field: str, value: str | None) -> None:
    if value is not None and not _QUANTITY.match(str(value)):
        raise UserError(f"kubernetes profile {field}={value!r} is not a Kubernetes quantity "
                        "(e.g. 8, 500m, 64Gi)")


def _store_root(run: ActionRun, profile: KubernetesProfile) -> str:
    if profile.store:
        return profile.store
    uri = run.results_uri
    return uri.split("/runs/", 1)[0] if "/runs/" in uri else uri.rsplit("/", 1)[0]


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def resolved_shape(run: ActionRun, skill: Skill, profile: KubernetesProfile) -> tuple[int, int]:
    """(gpus per node, nodes): the profile's override, else the run's; actions that cannot run across
    nodes (or skills without multi-node support) always get one node."""
    action = skill.action(run.action)
    gpus = profile.gpus if profile.gpus is not None else run.gpus
    if not action.gpu:
        gpus = 0
    nodes = profile.nodes if profile.nodes is not None else run.nodes
    if nodes > 1 and not (action.multi_node and skill.multi_node):
        nodes = 1
    return max(gpus, 0), max(nodes, 1)


def is_multi_node(run: ActionRun, skill: Skill, profile: KubernetesProfile) -> bool:
    return resolved_shape(run, skill, profile)[1] > 1


def secret_env_names(run: ActionRun, profile: KubernetesProfile) -> list[str]:
    """Every environment variable the pod reads from the Secret: the store keys, the run's secret variables,
    and any credential-named variable (`*KEY*`, `*TOKEN*`, ...) of the run's or the profile's env."""
    credential_like = [k for k in [*run.env, *profile.env]
                       if k in SECRET_ENV_NAMES or SECRET_NAME_PATTERN.search(k)]
    return list(dict.fromkeys([*profile.secret_keys, *run.secret_overrides.values(), *credential_like]))


def required_secret_env(run: ActionRun, profile: KubernetesProfile) -> set[str]:
    """Secret keys the pod cannot start without (the store keys are optional: node/IRSA credentials)."""
    return set(secret_env_names(run, profile)) - set(profile.secret_keys)


def run_document(run: ActionRun, profile: KubernetesProfile | None = None) -> dict[str, Any]:
    """The ActionRun as the pod reads it: no secret values. `env` keeps only plain settings (names that come
    from the Secret are dropped, so a value someone put there can never reach the ConfigMap)."""
    profile = profile or KubernetesProfile()
    data = run.to_dict()
    banned = SECRET_ENV_NAMES | set(secret_env_names(run, profile))
    data["env"] = {k: v for k, v in run.env.items() if k not in banned}
    return data


# ------------------------------------------------------------------------------------------- objects

def build_config_map(run: ActionRun, profile: KubernetesProfile, skill: Skill | None = None) -> dict[str, Any]:
    """run.json for the pod runner; with the skill, `gpus`/`nodes` are the shape the Job really has."""
    document = run_document(run, profile)
    if skill is not None:
        document["gpus"], document["nodes"] = resolved_shape(run, skill, profile)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": config_map_name(run), "namespace": profile.namespace,
                     "labels": run_labels(run, profile)},
        "data": {RUN_FILE: json.dumps(document, indent=2, sort_keys=True, default=str)},
    }


def build_service(run: ActionRun, profile: KubernetesProfile) -> dict[str, Any]:
    """Headless Service giving the Indexed Job's pods stable DNS names `<job>-<i>.<service>`."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": service_name(run), "namespace": profile.namespace,
                     "labels": run_labels(run, profile)},
        "spec": {
            "clusterIP": "None",
            "selector": {JOB_NAME_LABEL: job_name(run)},
            # Workers resolve the master before any readiness: publish addresses of pods not yet ready.
            "publishNotReadyAddresses": True,
            "ports": [{"name": "dist", "port": profile.master_port, "targetPort": profile.master_port,
                       "protocol": "TCP"}],
        },
    }


def _env(run: ActionRun, skill: Skill, profile: KubernetesProfile, gpus: int, nodes: int) -> list[dict]:
    env: list[dict[str, Any]] = [
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "TAOFLOW_HOME", "value": WORK_DIR},
        {"name": "TAOFLOW_STORE", "value": _store_root(run, profile)},
        {"name": "TAOFLOW_RUN_KEY", "value": run.run_key},
        {"name": "TAOFLOW_LAUNCH", "value": skill.launch},
    ]
    secret_names = secret_env_names(run, profile)
    banned = SECRET_ENV_NAMES | set(secret_names)
    plain = {**{k: v for k, v in run.env.items() if k not in banned},
             **{k: v for k, v in profile.env.items() if k not in banned}}
    env += [{"name": k, "value": str(v)} for k, v in sorted(plain.items())]
    required = required_secret_env(run, profile)
    for name in secret_names:
        env.append({"name": name, "valueFrom": {"secretKeyRef": {
            "name": profile.secret_name, "key": name, "optional": name not in required}}})
    if nodes > 1:
        index = {"fieldRef": {"fieldPath": f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"}}
        env += [
            {"name": "WORLD_SIZE", "value": str(nodes)},  # TAO's convention: the number of nodes
            {"name": "NODE_RANK", "valueFrom": index},
            {"name": "RANK", "valueFrom": index},
            {"name": "MASTER_ADDR", "value": f"{job_name(run)}-0.{service_name(run)}"},
            {"name": "MASTER_PORT", "value": str(profile.master_port)},
            {"name": "NUM_GPU_PER_NODE", "value": str(gpus)},
        ]
    elif gpus:
        env.append({"name": "NUM_GPU_PER_NODE", "value": str(gpus)})
    return env


def build_job(run: ActionRun, skill: Skill, profile: KubernetesProfile) -> dict[str, Any]:
    """The batch/v1 Job running the action (Indexed with one pod per node when multi-node)."""
    for field in ("cpu_request", "memory_request", "cpu_limit", "memory_limit", "shm_size", "work_size"):
        _check_quantity(field, getattr(profile, field))
    gpus, nodes = resolved_shape(run, skill, profile)
    name = job_name(run)
    labels = run_labels(run, profile)

    requests: dict[str, Any] = {"cpu": profile.cpu_request, "memory": profile.memory_request}
    limits: dict[str, Any] = {}
    if profile.cpu_limit:
        limits["cpu"] = profile.cpu_limit
    if profile.memory_limit:
        limits["memory"] = profile.memory_limit
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)  # extended resources: the request defaults to the limit

    shm: dict[str, Any] = {"medium": "Memory", "sizeLimit": profile.shm_size}
    work: dict[str, Any] = {"sizeLimit": profile.work_size} if profile.work_size else {}
    volumes: list[dict[str, Any]] = [
        {"name": "run", "configMap": {"name": config_map_name(run), "items": [{"key": RUN_FILE, "path": RUN_FILE}]}},
        {"name": "dshm", "emptyDir": shm},
        {"name": "work", "emptyDir": work},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "run", "mountPath": RUN_DIR, "readOnly": True},
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "work", "mountPath": WORK_DIR},
    ]
    if profile.store_pvc and not is_remote(_store_root(run, profile)):
        volumes.append({"name": "store", "persistentVolumeClaim": {"claimName": profile.store_pvc}})
        mounts.append({"name": "store", "mountPath": _store_root(run, profile).removeprefix("file://")})

    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image_for(run, skill, profile),
        "imagePullPolicy": profile.image_pull_policy,
        "command": ["python", "-m", "taoflow.launchers.local", f"{RUN_DIR}/{RUN_FILE}"],
        "env": _env(run, skill, profile, gpus, nodes),
        "resources": {"requests": requests, **({"limits": limits} if limits else {})},
        "volumeMounts": mounts,
    }
    if nodes > 1:
        container["ports"] = [{"name": "dist", "containerPort": profile.master_port, "protocol": "TCP"}]
    if profile.env_from_secrets:
        container["envFrom"] = [{"secretRef": {"name": s}} for s in profile.env_from_secrets]

    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": volumes,
        # TAO pods never talk to the API server.
        "automountServiceAccountToken": False,
        "nodeSelector": dict(profile.node_selector if gpus else profile.cpu_node_selector),
    }
    if gpus:
        pod_spec["tolerations"] = [dict(t) for t in profile.tolerations]
    if profile.service_account:
        pod_spec["serviceAccountName"] = profile.service_account
    if profile.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in profile.image_pull_secrets]
    if nodes > 1:
        pod_spec["subdomain"] = service_name(run)
    if profile.runtime_class_name:
        pod_spec["runtimeClassName"] = profile.runtime_class_name
    if profile.priority_class_name:
        pod_spec["priorityClassName"] = profile.priority_class_name
    if not pod_spec["nodeSelector"]:
        del pod_spec["nodeSelector"]

    pod_annotations = {**profile.annotations, **profile.pod_annotations}
    spec: dict[str, Any] = {
        "backoffLimit": 0,  # retries belong to the flow, which resumes from the newest checkpoint
        "template": {"metadata": {"labels": labels, **({"annotations": pod_annotations} if pod_annotations else {})},
                     "spec": pod_spec},
    }
    deadline = profile.active_deadline_seconds or (int(run.timeout_seconds) if run.timeout_seconds else None)
    if deadline:
        spec["activeDeadlineSeconds"] = max(int(deadline), 1)
    if profile.ttl_seconds_after_finished is not None:
        spec["ttlSecondsAfterFinished"] = profile.ttl_seconds_after_finished
    if nodes > 1:
        spec.update({"completionMode": "Indexed", "completions": nodes, "parallelism": nodes})
    else:
        spec.update({"completions": 1, "parallelism": 1})

    metadata: dict[str, Any] = {"name": name, "namespace": profile.namespace, "labels": labels}
    if profile.annotations:
        metadata["annotations"] = dict(profile.annotations)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}


def build_run_objects(run: ActionRun, skill: Skill, profile: KubernetesProfile | None = None
                      ) -> list[dict[str, Any]]:
    """Every object one run needs, in creation order: ConfigMap, (headless Service when multi-node), Job."""
    profile = profile or KubernetesProfile()
    objects = [build_config_map(run, profile, skill)]
    if is_multi_node(run, skill, profile):
        objects.append(build_service(run, profile))
    objects.append(build_job(run, skill, profile))
    return objects


class _Dumper(yaml.SafeDumper):
    """Safe YAML without anchors/aliases (shared label dicts stay readable) and with multi-line strings
    (run.json) as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def dump_objects(objects: list[dict[str, Any]]) -> str:
    """YAML documents (`---` separated), as `kubectl apply -f -` reads them."""
    return "".join("---\n" + yaml.dump(obj, Dumper=_Dumper, sort_keys=False) for obj in objects)


def dump_run_objects(run: ActionRun, skill: Skill, profile: KubernetesProfile | None = None) -> str:
    """What `taoflow run … --launcher kubernetes --dry-run` prints for one run."""
    return dump_objects(build_run_objects(run, skill, profile))


__all__ = [
    "KubernetesProfile",
    "build_config_map",
    "build_job",
    "build_run_objects",
    "build_service",
    "check_job_variables",
    "dump_objects",
    "dump_run_objects",
    "image_for",
    "job_name",
    "profile_from_options",
    "run_document",
    "run_labels",
    "selector",
]
