"""infra/: Kubernetes manifests validate against the 1.30 schemas, RBAC grants only what the launchers use,
secrets appear only as references or placeholders, and the work-pool base job templates are complete
(every `{{ variable }}` declared and every declared variable used) and render, with their defaults, to a
Job that validates and carries GPU limits, node selector, tolerations and /dev/shm."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import prefect
import pytest
import yaml

from taoflow.k8s import DEFAULT_SECRET_KEYS, KubernetesProfile
from taoflow.planner import DEFAULT_KEY_ENV

INFRA = Path(__file__).resolve().parent.parent / "infra"
K8S_VERSION = "1.30.0"
PLACEHOLDER = re.compile(r"\{\{\s*([\w.]+)\s*\}\}")
SECRETISH = re.compile(r"KEY|SECRET|PASSWORD|TOKEN", re.IGNORECASE)


def _k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted((INFRA / "k8s").glob("*.yaml")):
        docs += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _template(pool: str) -> dict[str, Any]:
    return json.loads((INFRA / "workpools" / f"{pool}.json").read_text())


def _placeholders(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set().union(*(_placeholders(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_placeholders(v) for v in value)) if value else set()
    return set(PLACEHOLDER.findall(value)) if isinstance(value, str) else set()


def _render(pool: str, values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Job the Prefect Kubernetes worker submits for a flow run: prefect-kubernetes' own job configuration
    code (from_template_and_values, then prepare_for_flow_run) over the pool's base job template, with the
    variables' defaults overridden by `values` as a deployment or a flow run would. Needs a Prefect API
    (the session's loopback server): the rendering resolves block and variable references."""
    import asyncio
    import uuid

    from prefect.client.schemas.objects import FlowRun
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    config = asyncio.run(KubernetesWorkerJobConfiguration.from_template_and_values(_template(pool), values or {}))
    flow_run = FlowRun(id=uuid.uuid4(), name="tao-action-abc", flow_id=uuid.uuid4())
    config.prepare_for_flow_run(flow_run)
    return config.job_manifest


@pytest.mark.parametrize(("name", "doc"), _k8s_documents(), ids=lambda x: x if isinstance(x, str) else x["kind"])
def test_manifests_validate(name, doc):
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    assert doc["metadata"].get("namespace", "tao-flows") == "tao-flows" or doc["kind"] == "Namespace"


def test_expected_objects_exist():
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in _k8s_documents()}
    for expected in [("Namespace", "tao-flows"), ("ServiceAccount", "tao-controller"), ("ServiceAccount", "tao-worker"),
                     ("Role", "tao-controller"), ("RoleBinding", "tao-controller"), ("Secret", "tao-flows-credentials"),
                     ("Deployment", "prefect-server"), ("StatefulSet", "postgres"), ("Service", "prefect-server"),
                     ("Deployment", "prefect-worker-tao-controller"), ("Deployment", "prefect-worker-tao-a100")]:
        assert expected in kinds, expected
    assert not any(kind.startswith("Cluster") for kind, _ in kinds)  # namespaced privileges only


def test_controller_role_is_exactly_what_the_kubernetes_launcher_calls():
    roles = {d["metadata"]["name"]: d for _, d in _k8s_documents() if d["kind"] == "Role"}
    granted = {(g, r): set(rule["verbs"]) for rule in roles["tao-controller"]["rules"]
               for g in rule["apiGroups"] for r in rule["resources"]}
    assert granted == {
        ("batch", "jobs"): {"create", "get", "list", "watch", "delete"},
        ("", "services"): {"create", "get", "delete"},
        ("", "configmaps"): {"create", "get", "update", "delete"},  # run.json (replace = update)
        ("", "pods"): {"get", "list", "watch"},
        ("", "pods/log"): {"get"},
    }
    for role in roles.values():
        for rule in role["rules"]:
            assert "*" not in rule["verbs"] and "*" not in rule["resources"]
            assert "secrets" not in rule["resources"] and "pods/exec" not in rule["resources"]


def test_secrets_are_placeholders_or_references():
    for name, doc in _k8s_documents():
        if doc["kind"] == "Secret":
            assert name == "secret.example.yaml"
            assert set(doc["stringData"].values()) == {"REPLACE_ME"} and "data" not in doc
        for container in _containers(doc):
            for env in container.get("env", []):
                if SECRETISH.search(env["name"]):
                    assert "valueFrom" in env and "value" not in env, (name, env)
    credentials = next(d for _, d in _k8s_documents() if d["kind"] == "Secret"
                       and d["metadata"]["name"] == KubernetesProfile().secret_name)
    assert set(DEFAULT_SECRET_KEYS) | {DEFAULT_KEY_ENV} <= set(credentials["stringData"])


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {})
    pod = spec.get("template", {}).get("spec", {})
    return pod.get("containers", [])


def test_prefect_images_match_the_installed_prefect():
    images = [c["image"] for _, d in _k8s_documents() for c in _containers(d) if "prefect" in c["image"]]
    images.append(yaml.safe_load((INFRA / "compose.yaml").read_text())["services"]["prefect-server"]["image"])
    assert images and all(image.split(":")[1].startswith(prefect.__version__ + "-") for image in images)


@pytest.mark.parametrize("pool", ["tao-a100", "tao-controller"])
def test_work_pool_template_variables_are_all_referenced_and_declared(pool):
    template = _template(pool)
    used = _placeholders(template["job_configuration"])
    declared = set(template["variables"]["properties"])
    assert used == declared, {"undeclared": used - declared, "unused": declared - used}
    # what Prefect's Kubernetes worker requires of a job manifest (its base manifest)
    manifest = template["job_configuration"]["job_manifest"]
    assert manifest["apiVersion"] == "batch/v1" and manifest["kind"] == "Job"
    pod = manifest["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and "parallelism" not in pod and "completions" not in pod
    assert (manifest["spec"]["parallelism"], manifest["spec"]["completions"]) == (1, 1)  # in the Job spec
    assert pod["containers"][0]["name"] == "prefect-job"
    assert template["variables"]["properties"]["backoff_limit"]["default"] == 0


def test_the_worker_checks_the_job_manifest_it_renders(prefect_api):
    """prefect-kubernetes refuses a manifest that lacks what its base manifest has (here the container
    name): so a template it renders is one its worker would submit."""
    import asyncio

    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    template = _template("tao-a100")
    template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]["name"] = "tao"
    with pytest.raises(ValueError, match="incompatible values"):
        asyncio.run(KubernetesWorkerJobConfiguration.from_template_and_values(template, {}))


def test_a100_template_renders_a_valid_gpu_job(prefect_api):
    manifest = _render("tao-a100")
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    pod = manifest["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["requests"] == {"cpu": "8", "memory": "64Gi"}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Gi"}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    # the credentials Secret is required: a missing one stops the pod instead of running without keys
    assert container["envFrom"] == [{"secretRef": {"name": "tao-flows-credentials", "optional": False}}]
    assert manifest["spec"]["backoffLimit"] == 0 and manifest["metadata"]["namespace"] == "tao-flows"
    assert pod["serviceAccountName"] == "tao-runner" and pod["automountServiceAccountToken"] is False
    pod_meta = manifest["spec"]["template"]["metadata"]
    assert pod_meta["annotations"]["karpenter.sh/do-not-disrupt"] == "true"
    assert pod_meta["annotations"]["cluster-autoscaler.kubernetes.io/safe-to-evict"] == "false"
    assert pod_meta["labels"]["taoflow.io/pool"] == "tao-a100"
    assert "prefect.io/flow-run-id" in pod_meta["labels"]  # the worker's own labels reach the pod
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR"] == "reschedule"  # backoffLimit 0: Prefect's retry


def test_a100_template_renders_every_job_variable_a_deployment_sets(prefect_api):
    manifest = _render("tao-a100", {
        "gpus": 8, "shm_size": "128Gi", "active_deadline_seconds": 86400, "memory_limit": "900Gi",
        "image": "registry.example.com/tao-flows:6.0.0-deploy", "image_pull_secrets": [{"name": "ngc"}],
        "runtime_class_name": "nvidia", "priority_class_name": "tao-training",
        "pod_annotations": {"karpenter.sh/do-not-disrupt": "true"}, "pod_labels": {"team": "vision"},
        "annotations": {"example.com/owner": "ml"}, "env": {"TAOFLOW_EXAMPLE": "1"},
    })
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    pod = manifest["spec"]["template"]["spec"]
    assert manifest["spec"]["activeDeadlineSeconds"] == 86400
    assert pod["containers"][0]["resources"]["limits"] == {"memory": "900Gi", "nvidia.com/gpu": 8}
    assert pod["containers"][0]["image"] == "registry.example.com/tao-flows:6.0.0-deploy"
    assert (pod["runtimeClassName"], pod["priorityClassName"]) == ("nvidia", "tao-training")
    assert pod["imagePullSecrets"] == [{"name": "ngc"}]
    meta = manifest["spec"]["template"]["metadata"]
    assert meta["labels"]["team"] == "vision"
    assert meta["annotations"] == {"karpenter.sh/do-not-disrupt": "true", "example.com/owner": "ml"}
    assert {"name": "TAOFLOW_EXAMPLE", "value": "1"} in pod["containers"][0]["env"]


def test_a100_template_renders_a_cpu_action_without_gpus(prefect_api):
    """What the work-pool launcher sets for a CPU-only action (tasks/workpool.py CPU_JOB_VARIABLES)."""
    from tasks.workpool import CPU_JOB_VARIABLES

    manifest = _render("tao-a100", {"gpus": 0, **CPU_JOB_VARIABLES})
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    pod = manifest["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 0
    assert not pod["nodeSelector"] and not pod["tolerations"]


def test_controller_template_renders_a_valid_cpu_job(prefect_api):
    manifest = _render("tao-controller")
    kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)
    pod = manifest["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "tao-controller"
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"].get("limits", {})
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["TAOFLOW_LAUNCHER"] == "workpool" and env["TAOFLOW_ACTION_DEPLOYMENT"] == "tao-action/tao-action-a100"


def test_compose_stack_has_no_inline_secrets():
    compose = yaml.safe_load((INFRA / "compose.yaml").read_text())
    assert {"postgres", "prefect-server", "minio"} <= set(compose["services"])
    for service in compose["services"].values():
        env = service.get("environment") or {}
        for key, value in env.items():
            if SECRETISH.search(key) or (key.endswith("_USER") and "MINIO" in key):
                assert re.fullmatch(r"\$\{\w+:\?[^}]*\}", str(value)), (key, value)
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:")


def test_dockerfiles_build_on_the_tao_images():
    for name, tag in (("Dockerfile.pyt", "6.0.0-pyt"), ("Dockerfile.deploy", "6.0.0-deploy")):
        text = (INFRA / "docker" / name).read_text()
        assert f"ARG TAO_IMAGE=nvcr.io/nvidia/tao/tao-toolkit:{tag}" in text
        assert "FROM ${TAO_IMAGE}" in text
        assert "/opt/tao-flows" in text  # prefect.yaml's pull step sets this working directory


@pytest.mark.parametrize("pool", ["tao-a100", "tao-controller"])
def test_prefect_server_accepts_the_template_and_its_schema_checks_job_variables(pool):
    """Prefect's own server-side validator, and the variables schema as JSON Schema (Prefect validates a
    deployment's job variables against it)."""
    import jsonschema
    from prefect.server.schemas.actions import WorkPoolCreate

    template = _template(pool)
    WorkPoolCreate(name=pool, type="kubernetes", base_job_template=template)
    schema = template["variables"]
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    defaults = {k: v["default"] for k, v in schema["properties"].items() if "default" in v}
    assert not list(validator.iter_errors(defaults))
    assert not list(validator.iter_errors({"image_pull_policy": "Always", "node_selector": {"pool": "gpu"}}))
    assert list(validator.iter_errors({"image_pull_policy": "Sometimes"}))
    if pool == "tao-a100":
        assert not list(validator.iter_errors({"gpus": 8}))
        assert list(validator.iter_errors({"gpus": 9})) and list(validator.iter_errors({"gpus": "eight"}))


def test_work_pools_are_created_on_a_real_prefect_server(prefect_api):
    """What `prefect work-pool create NAME --type kubernetes --base-job-template infra/workpools/NAME.json`
    (README) sends, through Prefect's client to the session's loopback `prefect server start`."""
    import uuid

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate

    with get_client(sync_client=True) as client:
        for pool in ("tao-a100", "tao-controller"):
            name = f"{pool}-{uuid.uuid4().hex[:6]}"
            client.create_work_pool(WorkPoolCreate(name=name, type="kubernetes",
                                                   base_job_template=_template(pool)))
            assert client.read_work_pool(name).base_job_template == _template(pool)


def test_check_job_variables_names_unknown_and_wrong_ones():
    from taoflow.errors import UserError
    from taoflow.k8s import check_job_variables

    template = _template("tao-a100")
    check_job_variables(template, {"gpus": 8, "shm_size": "128Gi", "env": {"A": "b"}}, pool="tao-a100")
    with pytest.raises(UserError) as err:
        check_job_variables(template, {"shm_sise": "1Gi", "gpus": "eight"}, pool="tao-a100")
    assert "shm_sise: not a job variable" in str(err.value) and "gpus: 'eight'" in str(err.value)
