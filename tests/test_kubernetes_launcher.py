"""KubernetesLauncher against a stub Kubernetes API server on loopback.

No Kubernetes cluster exists on these machines: `tests/k8s_stub.py` stands in for the API server (the real
`kubernetes` client talks HTTP to it), with pod states, logs and Job conditions scripted by each test.
The store is a local folder (the pods would see it through `store_pvc`); the pod runner's part (status.json,
result.json) is written by the test where a real pod would write it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest
import yaml

from taoflow.errors import UserError
from taoflow.k8s import KubernetesProfile, job_name
from taoflow.launchers.base import EpochProgress, Finished, LogLine
from taoflow.launchers.kubernetes import KubernetesLauncher
from taoflow.launchers.podstate import classify_pod
from taoflow.runs import ActionResult, ActionRun
from taoflow.skill import load_skill
from tests.k8s_stub import StubCluster, start_stub

NS = "tao-flows"
WAIT = 20.0  # generous upper bound for a condition to appear; not a timing assertion


@pytest.fixture()
def cluster():
    stub = start_stub()
    yield stub
    stub.stop()


def _run(tmp_path: Path, *, action: str = "train", model: str = "rtdetr", key: str = "a1b2c3d4e5f6a7b8c9d0",
         gpus: int = 1, nodes: int = 1) -> ActionRun:
    skill = load_skill(model)
    results = tmp_path / "store" / "runs" / model / key / action
    return ActionRun(model=model, action=action, spec={"results_dir": str(results)}, image=skill.image_for(action),
                     run_key=key, results_uri=str(results), gpus=gpus, nodes=nodes,
                     secret_overrides={"encryption_key": "TAO_ENCRYPTION_KEY"})


def _launcher(cluster: StubCluster, tmp_path: Path, **fields) -> KubernetesLauncher:
    profile = KubernetesProfile(store=str(tmp_path / "store"), store_pvc="tao-store", **fields)
    return KubernetesLauncher(profile, api_client=cluster.api_client(), poll_seconds=0.02, delete_timeout=5)


class Collector:
    """Consumes launcher.events(handle) on a thread so the test can script the cluster meanwhile."""

    def __init__(self, launcher: KubernetesLauncher, handle) -> None:
        self.events: list = []
        self.thread = threading.Thread(target=self._consume, args=(launcher, handle), daemon=True)
        self.thread.start()

    def _consume(self, launcher, handle) -> None:
        for event in launcher.events(handle):
            self.events.append(event)

    def wait_for(self, predicate) -> None:
        deadline = time.monotonic() + WAIT
        while not any(predicate(e) for e in list(self.events)):
            assert time.monotonic() < deadline, f"event never arrived; got {self.events!r}"
            time.sleep(0.01)

    def finished(self) -> Finished:
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "events() did not end"
        assert isinstance(self.events[-1], Finished)
        return self.events[-1]

    def log_text(self) -> list[str]:
        return [e.text for e in self.events if isinstance(e, LogLine)]


def _status_line(epoch: int, kpi: float) -> str:
    return json.dumps({"date": "11/23/2026", "time": "12:0:0", "status": "RUNNING", "verbosity": "INFO",
                       "message": "Train metrics generated.", "epoch": epoch, "max_epoch": 2,
                       "kpi": {"val_mAP50": kpi}, "graphical": {"train_loss": 1.0}})


def test_submit_streams_logs_and_progress_and_returns_the_pods_result(cluster, tmp_path):
    run = _run(tmp_path)
    launcher = _launcher(cluster, tmp_path)
    handle = launcher.submit(run)
    name = job_name(run)
    assert not handle.attached
    assert cluster.names("jobs") == [name]
    assert cluster.names("configmaps") == [name]
    assert cluster.names("services") == []  # single node: no headless Service
    cm = cluster.get("configmaps", NS, name)
    job = cluster.get("jobs", NS, name)
    assert cm["metadata"]["ownerReferences"][0]["uid"] == job["metadata"]["uid"]
    assert json.loads(cm["data"]["run.json"])["run_key"] == run.run_key

    collector = Collector(launcher, handle)
    cluster.start_pod(name)
    cluster.log(name, "Epoch 0: loss 1.0", "Epoch 1: loss 0.5")
    collector.wait_for(lambda e: isinstance(e, LogLine) and e.text == "Epoch 1: loss 0.5")
    results = Path(run.results_uri)
    results.mkdir(parents=True)
    (results / "status.json").write_text(_status_line(0, 0.3) + "\n" + _status_line(1, 0.4) + "\n")
    collector.wait_for(lambda e: isinstance(e, EpochProgress) and e.epoch == 1)
    stored = ActionResult(model=run.model, action=run.action, run_key=run.run_key, status="SUCCESS",
                          results_uri=run.results_uri, kpis_final={"val_mAP50": 0.4}, gpu_seconds=12.0)
    (results / "result.json").write_text(json.dumps(stored.to_dict()))
    cluster.log(name, "taoflow: rtdetr train SUCCESS")
    cluster.finish_pod(name, 0)

    finished = collector.finished()
    assert finished.status == "SUCCESS"
    assert collector.log_text()[:3] == ["Epoch 0: loss 1.0", "Epoch 1: loss 0.5", "taoflow: rtdetr train SUCCESS"]
    progress = [e for e in collector.events if isinstance(e, EpochProgress)]
    assert [(p.epoch, p.max_epoch, p.kpi) for p in progress] == [(0, 2, {"val_mAP50": 0.3}),
                                                                 (1, 2, {"val_mAP50": 0.4})]
    result = launcher.result(handle)
    assert result.ok and result.gpu_seconds == 12.0 and result.kpis_final == {"val_mAP50": 0.4}


def test_same_run_submitted_twice_attaches_to_the_first_job(cluster, tmp_path):
    run = _run(tmp_path)
    launcher = _launcher(cluster, tmp_path)
    first = launcher.submit(run)
    cluster.start_pod(job_name(run))
    second = _launcher(cluster, tmp_path).submit(run)
    assert second.attached and second.uid == first.uid
    posts = [r for r in cluster.requests if r["method"] == "POST" and r["path"].endswith("/jobs")]
    assert len(posts) == 1
    assert len(cluster.pods(job_name(run))) == 1


def test_a_job_of_another_run_with_the_same_name_is_not_attached(cluster, tmp_path):
    launcher = _launcher(cluster, tmp_path)
    launcher.submit(_run(tmp_path, key="a1b2c3d4e5f6a7b8c9d0"))
    with pytest.raises(UserError, match="belongs to run key"):
        launcher.submit(_run(tmp_path, key="a1b2c3d4e5f6ffffffff"))  # same 12-character prefix


def test_failed_job_is_replaced_on_resubmission_and_its_stale_result_removed(cluster, tmp_path):
    run = _run(tmp_path)
    launcher = _launcher(cluster, tmp_path)
    first = launcher.submit(run)
    name = job_name(run)
    cluster.start_pod(name)
    results = Path(run.results_uri)
    results.mkdir(parents=True)
    failed = ActionResult(model=run.model, action=run.action, run_key=run.run_key, status="FAILURE",
                          results_uri=run.results_uri, failure_class="infra")
    (results / "result.json").write_text(json.dumps(failed.to_dict()))
    cluster.finish_pod(name, 1)
    assert launcher.result(first).status == "FAILURE"

    retry = launcher.submit(run)  # the flow's retry: same run key, same results folder
    assert not retry.attached and retry.uid != first.uid
    assert not (results / "result.json").exists()
    deletes = [r for r in cluster.requests if r["method"] == "DELETE" and f"/jobs/{name}" in r["path"]]
    assert deletes and deletes[0]["body"]["propagationPolicy"] == "Foreground"
    assert len(cluster.pods(name)) == 1  # the old pod went with the old Job


def test_cancel_deletes_job_pods_service_and_configmap(cluster, tmp_path):
    run = _run(tmp_path, gpus=8, nodes=2)
    launcher = _launcher(cluster, tmp_path)
    handle = launcher.submit(run)
    name = job_name(run)
    assert cluster.names("services") == [name]
    collector = Collector(launcher, handle)
    cluster.start_pod(name, 0)
    cluster.start_pod(name, 1)
    cluster.log(name, "rank0 line", index=0)
    cluster.log(name, "rank1 line", index=1)
    collector.wait_for(lambda e: isinstance(e, LogLine) and e.text == "[node 1] rank1 line")
    launcher.cancel(handle)
    assert collector.finished().status == "CANCELLED"
    assert cluster.names("jobs") == [] and cluster.names("pods") == []
    assert cluster.names("services") == [] and cluster.names("configmaps") == []
    job_delete = next(r for r in cluster.requests if r["method"] == "DELETE" and "/jobs/" in r["path"])
    assert job_delete["body"]["propagationPolicy"] == "Foreground"
    assert launcher.result(handle).status == "CANCELLED"


def _fail_and_collect(cluster, tmp_path, script, **profile) -> tuple:
    run = _run(tmp_path)
    launcher = _launcher(cluster, tmp_path, **profile)
    handle = launcher.submit(run)
    collector = Collector(launcher, handle)
    script(job_name(run))
    finished = collector.finished()
    return finished, launcher.result(handle), collector


@pytest.mark.parametrize(("name", "script", "klass", "words"), [
    ("evicted", lambda c, j: (c.start_pod(j), c.evict_pod(j)), "infra", "evicted"),
    ("preempted", lambda c, j: (c.start_pod(j), c.evict_pod(j, disruption="PreemptionByScheduler")),
     "infra", "PreemptionByScheduler"),
    ("node_lost", lambda c, j: (c.start_pod(j), c.evict_pod(j, disruption="DeletionByTaintManager")),
     "infra", "DeletionByTaintManager"),
    ("pod_deleted", lambda c, j: (c.start_pod(j), c.delete_pod(j)), "infra", "deleted"),
    ("oom_killed", lambda c, j: (c.start_pod(j), c.finish_pod(j, 137, reason="OOMKilled")), "infra", "OOMKilled"),
    ("deadline", lambda c, j: (c.start_pod(j), c.fail_job(j, "DeadlineExceeded", "Job was active longer")),
     "infra", "DeadlineExceeded"),
    ("image_pull", lambda c, j: c.set_waiting(j, "ImagePullBackOff", 'Back-off pulling image "x"'),
     "program", "ImagePullBackOff"),
    ("missing_secret", lambda c, j: c.set_waiting(j, "CreateContainerConfigError",
                                                  'secret "tao-flows-credentials" not found'),
     "program", "CreateContainerConfigError"),
    ("tao_spec_error", lambda c, j: (c.start_pod(j), c.log(j, "omegaconf.errors.MissingMandatoryValue: "
                                                           "Missing mandatory value: dataset.num_classes"),
                                     c.finish_pod(j, 1)), "spec", "MissingMandatoryValue"),
])
def test_failures_are_classified(cluster, tmp_path, name, script, klass, words):
    finished, result, _ = _fail_and_collect(cluster, tmp_path, lambda job: script(cluster, job))
    assert finished.status == "FAILURE" and result.status == "FAILURE"
    assert result.failure_class == klass == finished.failure_class, result
    assert words in (result.message or ""), result.message
    assert result.remedy


def test_pod_deleted_while_running_is_infra(cluster, tmp_path):
    run = _run(tmp_path)
    launcher = _launcher(cluster, tmp_path)
    handle = launcher.submit(run)
    collector = Collector(launcher, handle)
    cluster.start_pod(job_name(run))
    cluster.log(job_name(run), "epoch 0")
    collector.wait_for(lambda e: isinstance(e, LogLine) and e.text == "epoch 0")  # the launcher saw it run
    cluster.delete_pod(job_name(run))
    finished = collector.finished()
    assert finished.failure_class == "infra" and "deleted" in finished.message


def test_image_pull_failure_names_the_image_and_stops_the_job(cluster, tmp_path):
    _finished, result, _ = _fail_and_collect(
        cluster, tmp_path, lambda job: cluster.set_waiting(job, "ErrImagePull", "manifest unknown"),
        image_tag="9.9.9-missing")
    assert result.failure_class == "program"
    assert "nvcr.io/nvidia/tao/tao-toolkit:9.9.9-missing" in result.remedy
    assert cluster.names("jobs") == []  # a pod that can never start is not left waiting


def test_unschedulable_pod_is_reported_while_waiting(cluster, tmp_path):
    run = _run(tmp_path)
    launcher = _launcher(cluster, tmp_path)
    handle = launcher.submit(run)
    name = job_name(run)
    cluster.set_unschedulable(name, "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.")
    collector = Collector(launcher, handle)
    collector.wait_for(lambda e: isinstance(e, LogLine) and "Insufficient nvidia.com/gpu" in e.text)
    launcher.cancel(handle)
    assert collector.finished().status == "CANCELLED"


def test_local_store_without_a_volume_is_refused(cluster, tmp_path):
    launcher = KubernetesLauncher(KubernetesProfile(), api_client=cluster.api_client())
    with pytest.raises(UserError, match="store_pvc"):
        launcher.submit(_run(tmp_path))
    assert cluster.names("jobs") == []


def test_classify_pod_ignores_healthy_pods():
    running = {"metadata": {"name": "p"}, "status": {"phase": "Running", "containerStatuses": [
        {"name": "tao", "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}}}]}}
    assert classify_pod(running) is None


PLANTED_SECRET = "planted-k8s-secret-5d1e"


def test_pod_command_runs_the_pod_runner_end_to_end(cluster, tmp_path, monkeypatch):
    """The objects the builder writes, run by the stub's kubelet as a real local process: run.json from the
    ConfigMap, the encryption key from the Secret by reference, the pod runner driving the TAO emulator.
    Logs stream, progress comes from status.json in the store, the result from the runner's result.json,
    and the secret value appears nowhere the run wrote."""
    from taoflow.datasets import write_sample_data
    from tests.test_emulator_specs import make_spec

    monkeypatch.setenv("TAOFLOW_HOME", str(tmp_path / "home"))
    data = tmp_path / "data"
    write_sample_data("rtdetr", data)
    run = _run(tmp_path)
    results = Path(run.results_uri)
    run.spec = make_spec("rtdetr", "train", data, results, {"num_epochs": 3})
    run.emulate = True
    launcher = _launcher(cluster, tmp_path)
    handle = launcher.submit(run)
    collector = Collector(launcher, handle)
    cluster.run_pod(job_name(run), secrets={"tao-flows-credentials": {"TAO_ENCRYPTION_KEY": PLANTED_SECRET}},
                    env={"TAOFLOW_EMULATOR_EPOCH_SECONDS": "0"})
    finished = collector.finished()
    result = launcher.result(handle)
    assert finished.status == "SUCCESS", (result.message, collector.log_text()[-20:])
    assert result.emulated and len(list(results.glob("model_epoch_*.pth"))) == 3  # RT-DETR: by epoch
    assert [e.epoch for e in collector.events if isinstance(e, EpochProgress)] == [0, 1, 2]
    logs = "\n".join(collector.log_text())
    # the runner received the key from the Secret: TAO's spec names the variable, argv never holds the key
    assert yaml.safe_load((results / "spec.yaml").read_text())["encryption_key"] == "${oc.env:TAO_ENCRYPTION_KEY}"
    assert "encryption_key" not in (results / "logs" / "train.log").read_text().splitlines()[0]
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".json", ".yaml", ".log", ".txt")]
    assert written and not [p for p in written if PLANTED_SECRET in p.read_text(errors="replace")]
    assert PLANTED_SECRET not in logs


def test_missing_secret_key_stops_the_pod_before_it_starts(cluster, tmp_path):
    run = _run(tmp_path)
    launcher = _launcher(cluster, tmp_path)
    handle = launcher.submit(run)
    collector = Collector(launcher, handle)
    cluster.run_pod(job_name(run), secrets={})
    finished = collector.finished()
    assert finished.failure_class == "program" and "TAO_ENCRYPTION_KEY" in finished.message


def test_pod_runner_end_to_end_with_an_s3_store(cluster, tmp_path, monkeypatch, s3_root):
    """As above with the store on S3 (moto's server on loopback): store keys reach the pod from the Secret,
    a stale result.json of an earlier attempt is removed before the Job starts, checkpoints and result.json
    land in S3, and progress is read from S3."""
    from taoflow.datasets import write_sample_data
    from taoflow.store import ArtifactStore
    from tests.test_emulator_specs import make_spec

    monkeypatch.setenv("TAOFLOW_HOME", str(tmp_path / "home"))
    data = tmp_path / "data"
    write_sample_data("rtdetr", data)
    store = ArtifactStore(s3_root)
    key = "b1b2c3d4e5f6a7b8c9d0"
    results_uri = store.results_uri("rtdetr", key, "train")
    stale = ActionResult(model="rtdetr", action="train", run_key=key, status="FAILURE", results_uri=results_uri)
    store.write_result(results_uri, stale)
    skill = load_skill("rtdetr")
    run = ActionRun(model="rtdetr", action="train", image=skill.image_for("train"), run_key=key,
                    results_uri=results_uri, emulate=True, secret_overrides={"encryption_key": "TAO_ENCRYPTION_KEY"},
                    spec=make_spec("rtdetr", "train", data, Path("/unused"), {"num_epochs": 2}) | {
                        "results_dir": store.results_uri("rtdetr", key, "").rstrip("/"),  # TAO adds train/
                        "train": {"num_epochs": 2, "checkpoint_interval": 1, "validation_interval": 1}})
    profile = KubernetesProfile(store=s3_root, env={"AWS_ENDPOINT_URL": os.environ["AWS_ENDPOINT_URL"]})
    launcher = KubernetesLauncher(profile, api_client=cluster.api_client(), poll_seconds=0.02)
    handle = launcher.submit(run)
    assert store.read_result(results_uri) is None  # the stale attempt's record is gone
    secrets = {"tao-flows-credentials": {"AWS_ACCESS_KEY_ID": os.environ["AWS_ACCESS_KEY_ID"],
                                         "AWS_SECRET_ACCESS_KEY": os.environ["AWS_SECRET_ACCESS_KEY"],
                                         "TAO_ENCRYPTION_KEY": PLANTED_SECRET}}
    pod_env = {"TAOFLOW_EMULATOR_EPOCH_SECONDS": "0", "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}
    cluster.run_pod(job_name(run), secrets=secrets, env=pod_env)
    events = list(launcher.events(handle))
    result = launcher.result(handle)
    assert result.ok, (result.message, [e.text for e in events if isinstance(e, LogLine)][-15:])
    names = [e.path for e in store.list_files(results_uri)]
    assert "model_epoch_001.pth" in names and "result.json" in names
    assert [e.epoch for e in events if isinstance(e, EpochProgress)] == [0, 1]
    assert PLANTED_SECRET not in store.read_text(store.join(results_uri, "logs", "train.log"))
