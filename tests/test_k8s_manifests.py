"""The manifest builders: every object validates against the Kubernetes 1.30 schemas (kubernetes-validate
ships them, so this runs offline), and the single-node and 2-node × 8-GPU objects carry the env, resources,
/dev/shm, secrets and names the launcher promises."""

from __future__ import annotations

import json
import re

import kubernetes_validate
import pytest
import yaml

from taoflow.errors import UserError
from taoflow.k8s import (
    KubernetesProfile,
    build_run_objects,
    dump_run_objects,
    job_name,
    with_tag,
)
from taoflow.runs import ActionRun
from taoflow.skill import load_skill, skill_names

K8S_VERSION = "1.30.0"
PLANTED_SECRET = "planted-secret-value-7f3a9c"
DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _run(model: str = "rtdetr", action: str = "train", *, gpus: int = 1, nodes: int = 1,
         key: str = "0123456789abcdef0123", **extra) -> ActionRun:
    skill = load_skill(model)
    results = f"s3://tao-bucket/store/runs/{model}/{key}/{action}"
    return ActionRun(model=model, action=action, spec={"results_dir": results, "train": {"num_epochs": 3}},
                     image=skill.image_for(action), run_key=key, results_uri=results, gpus=gpus, nodes=nodes,
                     secret_overrides={"encryption_key": "TAO_ENCRYPTION_KEY"}, **extra)


def validate(obj: dict) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def _by_kind(objects: list[dict]) -> dict[str, dict]:
    return {o["kind"]: o for o in objects}


def _env(job: dict) -> dict[str, dict]:
    return {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_validator_rejects_a_broken_object():
    """The schema check can fail: a misspelt field is refused in strict mode."""
    job = _by_kind(build_run_objects(_run(), load_skill("rtdetr")))["Job"]
    job["spec"]["template"]["spec"]["containers"][0]["volumeMount"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(job)


@pytest.mark.parametrize("model", skill_names())
def test_every_action_of_every_skill_validates(model):
    skill = load_skill(model)
    for action in skill.actions:
        for nodes in (1, 2):
            objects = build_run_objects(_run(model, action, gpus=8, nodes=nodes), skill)
            for obj in objects:
                validate(obj)
                assert DNS_1123.match(obj["metadata"]["name"]) and len(obj["metadata"]["name"]) <= 63


def test_single_node_job():
    skill = load_skill("rtdetr")
    run = _run(gpus=1, timeout_seconds=7200)
    objects = build_run_objects(run, skill)
    assert [o["kind"] for o in objects] == ["ConfigMap", "Job"]
    job = _by_kind(objects)["Job"]
    name = job["metadata"]["name"]
    assert name == "tao-rtdetr-train-0123456789ab" == job_name(run)
    labels = job["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "tao-flows"
    assert (labels["taoflow.io/model"], labels["taoflow.io/action"], labels["taoflow.io/run-key"]) == \
        ("rtdetr", "train", run.run_key)
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 7200
    assert spec["ttlSecondsAfterFinished"] == 86400
    assert "completionMode" not in spec and spec["completions"] == spec["parallelism"] == 1
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and "subdomain" not in pod
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    container = pod["containers"][0]
    assert container["image"] == "nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt"
    assert container["command"] == ["python", "-m", "taoflow.launchers.local", "/run/taoflow/run.json"]
    assert container["resources"] == {"requests": {"cpu": "8", "memory": "64Gi"},
                                      "limits": {"nvidia.com/gpu": "1"}}
    shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "64Gi"}
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    cm_volume = next(v for v in pod["volumes"] if v["name"] == "run")
    assert cm_volume["configMap"]["name"] == name
    env = _env(job)
    assert "WORLD_SIZE" not in env and env["NUM_GPU_PER_NODE"]["value"] == "1"
    assert env["TAOFLOW_STORE"]["value"] == "s3://tao-bucket/store"
    run_doc = json.loads(_by_kind(objects)["ConfigMap"]["data"]["run.json"])
    assert ActionRun(**run_doc) == run


def test_two_nodes_by_eight_gpus_is_an_indexed_job_with_a_headless_service():
    skill = load_skill("rtdetr")
    run = _run(gpus=8, nodes=2)
    objects = build_run_objects(run, skill)
    assert [o["kind"] for o in objects] == ["ConfigMap", "Service", "Job"]
    service, job = _by_kind(objects)["Service"], _by_kind(objects)["Job"]
    name = job["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": name}
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"] == 2
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == service["metadata"]["name"]
    assert pod["containers"][0]["resources"]["limits"] == {"nvidia.com/gpu": "8"}
    env = _env(job)
    assert env["WORLD_SIZE"]["value"] == "2"  # TAO's convention: nodes, not processes
    index_ref = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert env["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"] == index_ref
    assert env["RANK"]["valueFrom"]["fieldRef"]["fieldPath"] == index_ref
    assert env["MASTER_ADDR"]["value"] == f"{name}-0.{service['metadata']['name']}"
    assert env["MASTER_PORT"]["value"] == "29500"
    assert env["NUM_GPU_PER_NODE"]["value"] == "8"
    assert env["TAOFLOW_LAUNCH"]["value"] == "torchrun"
    # a profile override of the shape reaches run.json too, so the pod runner accounts the same GPUs
    objects = build_run_objects(_run(gpus=1, nodes=1), skill, KubernetesProfile(gpus=4, nodes=2))
    document = json.loads(_by_kind(objects)["ConfigMap"]["data"]["run.json"])
    assert (document["gpus"], document["nodes"]) == (4, 2)


def test_lightning_multi_node_skill_and_single_node_only_actions():
    skill = load_skill("nvpanoptix3d")
    job = _by_kind(build_run_objects(_run("nvpanoptix3d", "train", gpus=8, nodes=2), skill))["Job"]
    assert job["spec"]["completions"] == 2 and _env(job)["TAOFLOW_LAUNCH"]["value"] == "lightning"
    # export cannot run across nodes; centerpose cannot at all: both stay single-node
    export = build_run_objects(_run("rtdetr", "export", gpus=8, nodes=2), load_skill("rtdetr"))
    centerpose = build_run_objects(_run("centerpose", "train", gpus=8, nodes=2), load_skill("centerpose"))
    for objects in (export, centerpose):
        assert [o["kind"] for o in objects] == ["ConfigMap", "Job"]
        assert "WORLD_SIZE" not in _env(_by_kind(objects)["Job"])


def test_image_roles_and_overrides():
    skill = load_skill("rtdetr")
    job = _by_kind(build_run_objects(_run(action="gen_trt_engine"), skill))["Job"]
    assert job["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":6.26.3-deploy")
    profile = KubernetesProfile(images={"pyt": "registry.local:5000/tao-flows:6.0.0-pyt"}, image_tag="6.1.0-pyt")
    job = _by_kind(build_run_objects(_run(), skill, profile))["Job"]
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.local:5000/tao-flows:6.1.0-pyt"
    assert with_tag("registry.local:5000/repo", "x") == "registry.local:5000/repo:x"
    data = _by_kind(build_run_objects(_run("sparse4d", "dataset_convert"), load_skill("sparse4d")))["Job"]
    assert data["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":6.26.3-data-services")


def test_profile_settings_reach_the_pod():
    skill = load_skill("rtdetr")
    profile = KubernetesProfile(
        namespace="ml", cpu_request="16", memory_request="200Gi", memory_limit="300Gi", shm_size="128Gi",
        node_selector={"pool": "a100"}, tolerations=[], image_pull_secrets=["ngc"], service_account="tao-runner",
        active_deadline_seconds=3600, ttl_seconds_after_finished=60, env={"AWS_ENDPOINT_URL_S3": "http://minio:9000"},
        env_from_secrets=["extra-settings"], runtime_class_name="nvidia", priority_class_name="tao-training",
        annotations={"example.com/owner": "ml"}, pod_annotations={"karpenter.sh/do-not-disrupt": "true"})
    objects = build_run_objects(_run(gpus=4), skill, profile)
    for obj in objects:
        validate(obj)
        assert obj["metadata"]["namespace"] == "ml"
    job = _by_kind(objects)["Job"]
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "a100"} and pod["tolerations"] == []
    assert pod["imagePullSecrets"] == [{"name": "ngc"}] and pod["serviceAccountName"] == "tao-runner"
    container = pod["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "16", "memory": "200Gi"},
                                      "limits": {"memory": "300Gi", "nvidia.com/gpu": "4"}}
    assert container["envFrom"] == [{"secretRef": {"name": "extra-settings"}}]
    assert _env(job)["AWS_ENDPOINT_URL_S3"]["value"] == "http://minio:9000"
    assert job["spec"]["activeDeadlineSeconds"] == 3600 and job["spec"]["ttlSecondsAfterFinished"] == 60
    assert next(v for v in pod["volumes"] if v["name"] == "dshm")["emptyDir"]["sizeLimit"] == "128Gi"
    assert (pod["runtimeClassName"], pod["priorityClassName"]) == ("nvidia", "tao-training")
    assert job["metadata"]["annotations"] == {"example.com/owner": "ml"}  # pod-only annotations stay off the Job
    assert job["spec"]["template"]["metadata"]["annotations"] == {
        "example.com/owner": "ml", "karpenter.sh/do-not-disrupt": "true"}
    with pytest.raises(UserError, match="shm_size"):
        build_run_objects(_run(), skill, KubernetesProfile(shm_size="lots"))


def test_cpu_only_action_gets_no_gpu_and_no_gpu_scheduling():
    run = _run("rtdetr", "train", gpus=0)
    job = _by_kind(build_run_objects(run, load_skill("rtdetr")))["Job"]
    pod = job["spec"]["template"]["spec"]
    assert "limits" not in pod["containers"][0]["resources"]
    assert "nodeSelector" not in pod and "tolerations" not in pod


def test_secrets_are_references_only():
    """A secret value planted in the caller's environment and in ActionRun.env never reaches an object."""
    skill = load_skill("rtdetr")
    run = _run(gpus=8, nodes=2, env={"TAO_ENCRYPTION_KEY": PLANTED_SECRET, "AWS_SECRET_ACCESS_KEY": PLANTED_SECRET,
                                     "WANDB_API_KEY": PLANTED_SECRET, "LOG_LEVEL": "debug"})
    text = dump_run_objects(run, skill)
    assert PLANTED_SECRET not in text
    job = _by_kind(build_run_objects(run, skill))["Job"]
    env = _env(job)
    assert env["TAO_ENCRYPTION_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "tao-flows-credentials", "key": "TAO_ENCRYPTION_KEY", "optional": False}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "tao-flows-credentials"
        assert "value" not in env[name]
    assert env["LOG_LEVEL"]["value"] == "debug"
    # a credential-named variable of the run is read from the Secret, required
    assert env["WANDB_API_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "tao-flows-credentials", "key": "WANDB_API_KEY", "optional": False}
    run_doc = json.loads(_by_kind(build_run_objects(run, skill))["ConfigMap"]["data"]["run.json"])
    assert run_doc["env"] == {"LOG_LEVEL": "debug"}
    assert run_doc["secret_overrides"] == {"encryption_key": "TAO_ENCRYPTION_KEY"}
    assert "encryption_key" not in run_doc["spec"]


def test_names_are_deterministic_dns_labels():
    long = _run("action_recognition", "inference", key="ABCDEF0123456789abcd")
    name = job_name(long)
    assert name == job_name(long) and DNS_1123.match(name) and len(name) <= 52
    assert name.endswith("-abcdef012345") and name.startswith("tao-action-recognition-")
    assert job_name(_run(key="0123456789abcdef0123")) != job_name(_run(key="9123456789abcdef0123"))
    rtdetr = load_skill("rtdetr")
    for action in rtdetr.actions:  # underscores become dashes: trt_evaluate, gen_trt_engine
        assert DNS_1123.match(job_name(_run("rtdetr", action)))


def test_dry_run_yaml_is_every_object_as_documents():
    skill = load_skill("rtdetr")
    run = _run(gpus=8, nodes=2)
    text = dump_run_objects(run, skill)
    assert "&id" not in text and "*id" not in text  # no YAML aliases for humans to untangle
    assert list(yaml.safe_load_all(text)) == build_run_objects(run, skill)


def test_profile_from_options_ignores_client_options_and_names_unknown_keys():
    from taoflow.k8s import profile_from_options

    profile = profile_from_options({"namespace": "ml", "kubeconfig": "/k", "poll_seconds": 1}, gpus=8)
    assert profile.namespace == "ml" and profile.gpus == 8
    with pytest.raises(UserError, match="shm_sise") as err:
        profile_from_options({"shm_sise": "1Gi"})
    assert "shm_size" in str(err.value)  # the allowed keys are listed
