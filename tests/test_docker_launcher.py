"""DockerLauncher against a fake docker client.

No docker daemon exists on these machines, so `FakeDocker` stands in for `docker.from_env()`: it records
the arguments of `containers.run`, plays back scripted log output, and has containers whose status, exit
code and OOMKilled flag the tests set. The docker SDK's own types (DeviceRequest, errors) are the real ones.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import docker
import pytest

from taoflow.errors import UserError
from taoflow.launchers.base import EpochProgress, Finished, LogLine
from taoflow.launchers.docker import DockerLauncher, container_name
from taoflow.runs import ActionResult, ActionRun
from taoflow.skill import load_skill

PLANTED_SECRET = "planted-docker-secret-91c2"


class FakeContainer:
    def __init__(self, name: str, image: str, kwargs: dict[str, Any]):
        self.name, self.image, self.kwargs = name, image, kwargs
        self.id = f"id-{name}"
        self.status = "running"
        self.exit_code: int | None = None
        self.oom = False
        self.output: list[bytes] = []
        self.done = threading.Event()
        self.calls: list[tuple] = []

    @property
    def attrs(self) -> dict[str, Any]:
        return {"State": {"Status": self.status, "ExitCode": self.exit_code or 0, "OOMKilled": self.oom}}

    def exit(self, code: int, *, oom: bool = False) -> None:
        self.status, self.exit_code, self.oom = "exited", code, oom
        self.done.set()

    def reload(self) -> None:
        self.calls.append(("reload",))

    def logs(self, **kwargs):
        self.calls.append(("logs", kwargs))
        assert kwargs.get("stream") and kwargs.get("follow")
        self.done.wait(10)
        yield from self.output

    def wait(self, **kwargs) -> dict[str, int]:
        self.done.wait(10)
        return {"StatusCode": self.exit_code if self.exit_code is not None else -1}

    def stop(self, timeout: int | None = None) -> None:
        self.calls.append(("stop", timeout))
        self.exit(143)

    def kill(self) -> None:
        self.calls.append(("kill",))
        self.exit(137)

    def remove(self, force: bool = False) -> None:
        self.calls.append(("remove", force))
        self.removed = True


class FakeContainers:
    def __init__(self) -> None:
        self.by_name: dict[str, FakeContainer] = {}
        self.runs: list[tuple[str, dict[str, Any]]] = []
        self.script = None  # called with the new container, e.g. to write output and exit

    def run(self, image: str, **kwargs) -> FakeContainer:
        self.runs.append((image, kwargs))
        container = FakeContainer(kwargs["name"], image, kwargs)
        self.by_name[kwargs["name"]] = container
        if self.script:
            self.script(container)
        return container

    def get(self, name: str) -> FakeContainer:
        container = self.by_name.get(name)
        if container is None or getattr(container, "removed", False):
            raise docker.errors.NotFound(f"No such container: {name}")
        return container


class FakeDocker:
    def __init__(self) -> None:
        self.containers = FakeContainers()


@pytest.fixture()
def fake(tmp_path, monkeypatch):
    monkeypatch.setenv("TAOFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TAO_ENCRYPTION_KEY", PLANTED_SECRET)
    return FakeDocker()


def _run(tmp_path: Path, *, gpus: int = 2, action: str = "train") -> ActionRun:
    skill = load_skill("rtdetr")
    data = tmp_path / "data" / "train"
    (data / "images").mkdir(parents=True, exist_ok=True)
    (data / "annotations.json").write_text("{}")
    results = tmp_path / "store" / "runs" / "rtdetr" / "0123456789abcdef0123" / action
    return ActionRun(
        model="rtdetr", action=action, image=skill.image_for(action), run_key="0123456789abcdef0123",
        results_uri=str(results), gpus=gpus,
        spec={"results_dir": str(results), "dataset": {"train_data_sources": [
            {"image_dir": str(data / "images"), "json_file": str(data / "annotations.json")}]}},
        secret_overrides={"encryption_key": "TAO_ENCRYPTION_KEY"})


def _launcher(fake: FakeDocker, **kw) -> DockerLauncher:
    return DockerLauncher(client=fake, poll_seconds=0.01, **kw)


def test_run_arguments(fake, tmp_path):
    run = _run(tmp_path, gpus=2)
    handle = _launcher(fake, shm_size="32g").submit(run)
    image, kwargs = fake.containers.runs[0]
    assert image == "nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt"
    assert kwargs["name"] == container_name(run) == handle.name == "tao-rtdetr-train-0123456789ab"
    assert kwargs["detach"] is True
    assert kwargs["command"] == ["python", "-m", "taoflow.launchers.local", "/run/taoflow/run.json"]
    (request,) = kwargs["device_requests"]
    assert isinstance(request, docker.types.DeviceRequest)
    assert request["Count"] == 2 and request["Capabilities"] == [["gpu"]]
    assert kwargs["shm_size"] == "32g"
    assert kwargs["user"] == f"{os.getuid()}:{os.getgid()}"
    labels = kwargs["labels"]
    assert (labels["taoflow.io/model"], labels["taoflow.io/action"], labels["taoflow.io/run-key"]) == \
        ("rtdetr", "train", run.run_key)
    store = str(tmp_path / "store")
    volumes = kwargs["volumes"]
    assert volumes[store] == {"bind": store, "mode": "rw"}  # results written at the spec's own paths
    assert volumes[str(tmp_path / "data" / "train" / "images")]["mode"] == "ro"
    assert volumes[str(tmp_path / "data" / "train" / "annotations.json")]["mode"] == "ro"
    run_dir = next(host for host, spec in volumes.items() if spec["bind"] == "/run/taoflow")
    document = json.loads((Path(run_dir) / "run.json").read_text())
    assert document["run_key"] == run.run_key
    # the secret reaches the container's environment only, never run.json
    assert kwargs["environment"]["TAO_ENCRYPTION_KEY"] == PLANTED_SECRET
    assert PLANTED_SECRET not in (Path(run_dir) / "run.json").read_text()


def test_cpu_action_requests_no_gpus_and_deploy_image(fake, tmp_path):
    _launcher(fake, image_tag="6.1.0-deploy").submit(_run(tmp_path, action="gen_trt_engine"))
    image, kwargs = fake.containers.runs[0]
    assert image == "nvcr.io/nvidia/tao/tao-toolkit:6.1.0-deploy"
    assert kwargs["device_requests"][0]["Count"] == 2
    run = _run(tmp_path, gpus=0, action="export")
    _launcher(fake).submit(run)
    assert "device_requests" not in fake.containers.runs[1][1]


def test_logs_progress_and_result(fake, tmp_path):
    run = _run(tmp_path)
    results = Path(run.results_uri)

    def script(container: FakeContainer) -> None:
        results.mkdir(parents=True, exist_ok=True)
        (results / "status.json").write_text(json.dumps(
            {"status": "RUNNING", "epoch": 0, "max_epoch": 1, "kpi": {"val_mAP50": 0.5}}) + "\n")
        stored = ActionResult(model=run.model, action=run.action, run_key=run.run_key, status="SUCCESS",
                              results_uri=run.results_uri, kpis_final={"val_mAP50": 0.5})
        (results / "result.json").write_text(json.dumps(stored.to_dict()))
        container.output = [b"Epoch 0 ", b"done\nsecond line\n"]
        container.exit(0)

    launcher = _launcher(fake)
    launcher.submit(run)  # removes no result yet: none exists
    fake.containers.script = script
    fake.containers.by_name.clear()
    handle = launcher.submit(run)
    events = list(launcher.events(handle))
    assert [e.text for e in events if isinstance(e, LogLine)] == ["Epoch 0 done", "second line"]
    assert [e.epoch for e in events if isinstance(e, EpochProgress)] == [0]
    assert isinstance(events[-1], Finished) and events[-1].status == "SUCCESS"
    assert launcher.result(handle).kpis_final == {"val_mAP50": 0.5}


def test_existing_container_is_attached_and_failed_one_replaced(fake, tmp_path):
    run = _run(tmp_path)
    launcher = _launcher(fake)
    first = launcher.submit(run)
    again = launcher.submit(run)
    assert again.attached and again.container is first.container and len(fake.containers.runs) == 1
    first.container.exit(1)
    retry = launcher.submit(run)
    assert not retry.attached and ("remove", True) in first.container.calls
    assert len(fake.containers.runs) == 2


def test_cancel_stops_with_grace_then_result_is_cancelled(fake, tmp_path):
    launcher = _launcher(fake, grace_seconds=7)
    handle = launcher.submit(_run(tmp_path))
    launcher.cancel(handle)
    assert ("stop", 7) in handle.container.calls
    assert launcher.result(handle).status == "CANCELLED"


def test_failures_are_classified(fake, tmp_path):
    launcher = _launcher(fake)
    fake.containers.script = lambda c: (setattr(c, "output", [b"Killed\n"]), c.exit(137, oom=True))
    result = launcher.result(launcher.submit(_run(tmp_path)))
    assert result.status == "FAILURE" and result.failure_class == "infra" and "OOMKilled" in result.message

    fake.containers.script = lambda c: (setattr(c, "output", [
        b"omegaconf.errors.ConfigKeyError: Key 'bogus' not in 'TrainConfig'\n"]), c.exit(1))
    fake.containers.by_name.clear()
    result = launcher.result(launcher.submit(_run(tmp_path)))
    assert result.failure_class == "spec" and result.exit_code == 1 and "bogus" in result.message


def test_missing_secret_and_missing_image_are_user_errors(fake, tmp_path, monkeypatch):
    monkeypatch.delenv("TAO_ENCRYPTION_KEY")
    with pytest.raises(UserError, match="TAO_ENCRYPTION_KEY"):
        _launcher(fake).submit(_run(tmp_path))
    monkeypatch.setenv("TAO_ENCRYPTION_KEY", PLANTED_SECRET)

    def missing(image, **kwargs):
        raise docker.errors.ImageNotFound(f"pull access denied for {image}")

    fake.containers.run = missing
    with pytest.raises(UserError, match="infra/docker"):
        _launcher(fake).submit(_run(tmp_path))
