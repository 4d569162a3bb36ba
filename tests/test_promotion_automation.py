"""The deployment pipeline a promotion starts, against the session's real Prefect server:

- `prefect deploy --name tao-release` accepts prefect.yaml's trigger and creates its automation;
- a `tao.model.promoted` event, emitted by tasks/events.py from a real registry promotion, makes the server's
  trigger service start a flow run of `tao-release` with the event's model, name, engine and event number;
- the release flow (flows/release.py) then writes the champion's release manifest, once.

The registry is a real folder written by the registry engine (tests/registry_versions.py). Every wait polls the
server for a fact, with a generous deadline as a safety net."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

from flows.release import tao_release
from taoflow.promotion import MetricRule
from taoflow.registry import ModelRegistry
from taoflow.registry.release import release_uri
from taoflow.retraining import summary_of
from taoflow.skill import load_skill
from taoflow.store import ArtifactStore
from tasks.events import emit_promotion_event
from tests.registry_versions import make_version

REPO = Path(__file__).resolve().parents[1]
AUTOMATION = "tao-release on tao.model.promoted (prod)"
DEADLINE = 300.0


def _prefect(args: list[str], env: dict[str, str]) -> None:
    done = subprocess.run([sys.executable, "-m", "prefect", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"


def _wait_for(what: str, check):
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"gave up waiting for {what}")


def test_a_promotion_event_starts_the_release_deployment(tmp_path, prefect_server, prefect_api):
    store = ArtifactStore(tmp_path / "store")
    env = {**os.environ, **prefect_server.env(), "TAOFLOW_REPO": str(REPO)}
    _prefect(["work-pool", "create", "tao-controller", "--type", "kubernetes", "--overwrite",
              "--base-job-template", str(REPO / "infra" / "workpools" / "tao-controller.json")], env)
    _prefect(["variable", "set", "taoflow_store", store.root, "--overwrite"], env)
    _prefect(["--no-prompt", "deploy", "--name", "tao-release"], env)

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("tao-release/tao-release")
        try:
            (automation,) = client.read_automations_by_name(AUTOMATION)
            trigger, (action,) = automation.trigger, automation.actions
            assert trigger.expect == {"tao.model.promoted"} and trigger.posture.value == "Reactive"
            assert trigger.match.model_dump() == {"prefect.resource.id": "tao.model.*", "tao.registry-name": "prod"}
            assert action.type == "run-deployment" and action.deployment_id == deployment.id
            assert action.parameters["engine"] == "{{ event.payload.engine }}", "kept as a template at deploy time"

            # A real promotion, and the event the pipeline's promotion step emits for it.
            registry = ModelRegistry(store)
            champion = make_version(store, "bbbbbb01", 0.61, 0.609)
            outcome = registry.promote(champion, "prod", rule=MetricRule.for_skill(load_skill("rtdetr")))
            emit_promotion_event(summary_of(outcome, champion) | {"event_id": outcome.event.id}, champion.to_dict())

            def started():  # this deployment may have runs from earlier promotions to a `prod` name
                runs = client.read_flow_runs(
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))
                return [r for r in runs if r.parameters.get("engine") == champion.engine]

            (run,) = _wait_for("the automation to start tao-release", started)
            assert run.parameters == {"model": "rtdetr", "name": "prod", "engine": champion.engine, "seq": 1}
        finally:  # no later test's promotion starts it
            client.delete_resource_owned_automations(f"prefect.deployment.{deployment.id}")
            client.delete_deployment(deployment.id)
            assert client.read_automations_by_name(AUTOMATION) == []

    # What the triggered run does (run here: no Kubernetes worker in tests).
    release = tao_release(**run.parameters, store=store.root)
    assert release["changed"] and release["version"] == "bbbbbb01" and release["engine"] == champion.engine
    manifest = store.read_json(release_uri(registry, "rtdetr", "prod"))
    assert manifest["seq"] == 1 and manifest["kpis_tensorrt"] == {"AP": 0.609}
    assert tao_release(**run.parameters, store=store.root)["changed"] is False, "releasing is idempotent"
