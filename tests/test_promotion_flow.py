"""Promotion as the last step of the RT-DETR pipeline, on the TAO emulator, against the session's real Prefect
server (tests/conftest.py) and a real store (a local folder; S3 on moto's server in the S3 test).

Nothing is mocked: the flow runs its tasks, the local launcher starts emulator processes, the registry writes
to the store, and the checks read Prefect's own task runs, artifacts and events back from its API. The
emulator's TensorRT KPIs differ from PyTorch's by a precision-dependent gap (docs/tao-contract.md), and
`TAOFLOW_EMULATOR_FAULT=trt_drift` makes an engine drift beyond any tolerance.

Pipelines share one store per module, so a configuration that ran once is answered from the cache; each test
promotes to its own registry name. Better and worse challengers come from more and fewer training epochs
(the emulator's mAP rises with the epoch). No test waits on a clock: every wait polls the API for a fact,
with a generous deadline as a safety net."""

# ruff: noqa: F811  (test functions take the imported fixtures as parameters)

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterTags,
)
from prefect.client.schemas.sorting import FlowRunSort
from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

from flows import model_flow
from flows.cli import main  # noqa: F401  (registers run on the app)
from flows.demo import demo_parameters
from taoflow.cli import _register, run_cli
from taoflow.datasets import write_sample_data
from taoflow.dotted import get_dotted
from taoflow.registry import ModelRegistry
from taoflow.store import ArtifactStore
from tests.s3server import s3_root, s3_server  # noqa: F401  (pytest fixtures)

_register()
ACTIONS = ["train", "evaluate", "export", "gen_trt_engine", "trt_evaluate"]
TAOFLOW = str(Path(sys.executable).parent / "taoflow")
DEADLINE = 300.0  # a safety net on a loaded machine; each wait ends when the API reports the fact


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rtdetr-data")
    write_sample_data("rtdetr", root)
    return root


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("promotion-store"))


@pytest.fixture(autouse=True)
def _no_fault(monkeypatch):
    monkeypatch.delenv("TAOFLOW_EMULATOR_FAULT", raising=False)


def params(data: Path, store: str, epochs: int, promote: str | None, **changes):
    return demo_parameters(
        "rtdetr", data, store, actions=ACTIONS, overrides={"train": {"train.num_epochs": epochs}}, automl_policy="off",
        promotion={"name": promote} if promote else {}, **changes)


def run_flow(parameters):
    """(summary or None, final state) of the rtdetr pipeline flow run."""
    flow_fn, _ = model_flow("rtdetr")
    state = flow_fn(parameters, return_state=True)
    return (state.result() if state.is_completed() else None), state


def cli(data: Path, store: str, epochs: int, *extra: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The real `taoflow` console script, against the session's Prefect server (PREFECT_API_URL in `env`)."""
    argv = [TAOFLOW, "run", "rtdetr", "--data", f"train={data / 'train'}", "--data", f"eval={data / 'eval'}",
            "--set", "dataset.num_classes=5", "--set", "dataset.eval_class_ids=[1,2,3,4]",
            "--set", "train.train.checkpoint_interval=1", "--set", "train.train.validation_interval=1",
            "--actions", ",".join(ACTIONS), "--emulate", "--store", store,
            "--set", f"train.train.num_epochs={epochs}", "--automl", "off", *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=900, env=env)


def cli_env(prefect_server, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, **prefect_server.env(), "TAOFLOW_HOME": str(tmp_path / "home"), "COLUMNS": "200"}


def wait_for(what: str, check: Callable[[], object], timeout: float = DEADLINE):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.3)


def model_events(model: str, name: str, count: int) -> list:
    """The `tao.model.*` events of `model`/`name` the server stored, oldest first, once there are `count`."""
    with get_client(sync_client=True) as client:
        def read():
            page = client.read_events(filter=EventFilter(
                event=EventNameFilter(prefix=["tao.model."]),
                resource=EventResourceFilter(id=[f"tao.model.{model}.{name}"])), limit=50)
            return sorted(page.events, key=lambda e: e.occurred) if len(page.events) >= count else None
        return wait_for(f"{count} tao.model events of {model}/{name}", read)


def task_states(flow_run_id) -> dict[str, str]:
    """Task run name → final state name of a flow run, read back from the API."""
    with get_client(sync_client=True) as client:
        def read():
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
            return runs if runs and all(r.state and r.state.is_final() for r in runs) else None
        return {r.name: r.state.name for r in wait_for("final task runs", read)}


def artifacts(flow_run_id) -> dict[str, str]:
    """Artifact key → markdown/data of a flow run's artifacts."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return {a.key: a.data for a in found if a.key}


def latest_flow_run(tag: str):
    with get_client(sync_client=True) as client:
        (run,) = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])),
                                       sort=FlowRunSort.START_TIME_DESC, limit=1)
    return run


# ------------------------------------------------------------------------------------------------ the gate


def test_first_promoted_better_promoted_worse_rejected_exit_3_and_events(data, store, tmp_path, prefect_server,
                                                                          prefect_api):
    registry = ModelRegistry(store)

    # 1. The first model for rtdetr/gate is promoted when its engine keeps parity.
    first, state = run_flow(params(data, store, 2, "gate"))
    assert first is not None, state.message
    promotion = first["promotion"]
    assert promotion["promoted"] and promotion["recorded"] and promotion["seq"] == 1
    champion = registry.champion("rtdetr", "gate")
    assert champion.run_keys["train"] == first["results"]["train"]["run_key"]
    assert promotion["engine"] == champion.engine == first["results"]["gen_trt_engine"]["products"]["engine"]
    assert [c["name"] for c in promotion["decision"]["checks"]] == ["metric", "parity"]
    card = artifacts(state.state_details.flow_run_id)["rtdetr-gate-promotion"]
    assert card.startswith("# rtdetr/gate: promoted") and "first model for this name" in card

    # 2. A better challenger (more epochs) is promoted; the champion's evaluate on the same eval data is an
    #    ordinary action answered from the cache (its own evaluate's run key): no GPU time spent twice.
    better, state = run_flow(params(data, store, 4, "gate"))
    assert better is not None, state.message
    assert better["promotion"]["promoted"] and better["promotion"]["seq"] == 2
    decision = better["promotion"]["decision"]
    assert decision["champion"] == champion.version_id and decision["challenger_value"] > decision["champion_value"]
    assert task_states(state.state_details.flow_run_id)["rtdetr-evaluate-champion"] == "Cached"
    card = artifacts(state.state_details.flow_run_id)["rtdetr-gate-promotion"]
    assert "| version (engine run key) | `" + champion.version_id in card  # side by side

    # 3. A worse challenger (1 epoch), through the real console script: exit 3, the reasons with their numbers,
    #    and the flow run completes (a rejection is not a failure).
    done = cli(data, store, 1, "--promote", "gate", env=cli_env(prefect_server, tmp_path))
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-3000:]
    assert "not promoted to rtdetr/gate" in done.stdout and "Traceback" not in done.stdout + done.stderr
    assert "not better than the champion" in done.stdout and "(higher is better)" in done.stdout
    assert done.stdout.rstrip().splitlines()[-1] == f"champion engine: {registry.champion('rtdetr', 'gate').engine}"
    rejected = latest_flow_run("rtdetr")
    assert rejected.state.is_completed(), rejected.state
    card = artifacts(rejected.id)["rtdetr-gate-promotion"]
    assert card.startswith("# rtdetr/gate: not promoted") and "not better than the champion" in card

    history = registry.history("rtdetr", "gate")
    assert [e.kind for e in history] == ["promoted", "promoted", "rejected"]
    assert registry.champion("rtdetr", "gate").run_keys["train"] == better["results"]["train"]["run_key"]

    # 4. The server received one event per decision, with what a deployment pipeline needs.
    events = model_events("rtdetr", "gate", 3)
    assert [e.event for e in events] == ["tao.model.promoted", "tao.model.promoted", "tao.model.rejected"]
    last = events[-1]
    assert last.resource["tao.model"] == "rtdetr" and last.resource["tao.registry-name"] == "gate"
    assert last.payload["engine"] == registry.champion("rtdetr", "gate").engine  # the champion stays live
    assert last.payload["challenger"]["kpis_pytorch"]["test_mAP"] < last.payload["decision"]["champion_value"]
    assert last.payload["reasons"] and last.payload["seq"] == 3 and last.id.hex == history[-1].id
    assert events[1].payload["challenger"]["engine"] == events[1].payload["engine"]


def test_parity_failure_is_rejected_although_pytorch_improved(data, store, monkeypatch, prefect_api):
    registry = ModelRegistry(store)
    first, state = run_flow(params(data, store, 2, "parity"))
    assert first is not None and first["promotion"]["promoted"], state.message

    monkeypatch.setenv("TAOFLOW_EMULATOR_FAULT", "trt_drift")  # the engine drifts far from the PyTorch model
    drifted, state = run_flow(params(data, store, 5, "parity"))
    assert drifted is not None, state.message  # completed: a rejection is not a failure
    promotion = drifted["promotion"]
    assert not promotion["promoted"]
    checks = {c["name"]: c for c in promotion["decision"]["checks"]}
    assert checks["metric"]["passed"], "PyTorch KPIs improved"
    assert not checks["parity"]["passed"] and "TensorRT parity (fp32)" in checks["parity"]["detail"]
    assert promotion["reasons"] == [checks["parity"]["detail"]]
    assert registry.champion("rtdetr", "parity").run_keys["train"] == first["results"]["train"]["run_key"]
    assert [e.event for e in model_events("rtdetr", "parity", 2)] == ["tao.model.promoted", "tao.model.rejected"]


def test_two_concurrent_promotions_the_second_sees_the_first(data, store, tmp_path, prefect_server, prefect_api):
    """Two `taoflow run --promote race` at once, both better than the champion. Whichever lands first, the
    other decides against it: one gapless history, each decision against the champion of its time, and the
    best model is the champion in the end."""
    seed, state = run_flow(params(data, store, 2, "race"))
    assert seed is not None and seed["promotion"]["promoted"], state.message
    env = cli_env(prefect_server, tmp_path)
    runs = [subprocess.Popen(
        [TAOFLOW, "run", "rtdetr", "--data", f"train={data / 'train'}", "--data", f"eval={data / 'eval'}",
         "--set", "dataset.num_classes=5", "--set", "dataset.eval_class_ids=[1,2,3,4]",
         "--set", "train.train.checkpoint_interval=1", "--set", "train.train.validation_interval=1",
         "--actions", ",".join(ACTIONS), "--emulate", "--store", store, "--set", f"train.train.num_epochs={epochs}",
         "--promote", "race", "--automl", "off"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        for epochs in (3, 4)]
    outputs = [run.communicate(timeout=900)[0] for run in runs]
    codes = [run.returncode for run in runs]
    assert set(codes) <= {0, 3} and 0 in codes, outputs

    registry = ModelRegistry(store)
    history = registry.history("rtdetr", "race")
    assert [e.seq for e in history] == [1, 2, 3]
    assert history[2].previous_champion == history[1].champion.version_id  # the second saw the first
    assert history[2].decision["champion"] == history[1].champion.version_id
    best = max(history[1:], key=lambda e: e.subject.kpis_pytorch["test_mAP"]).subject
    assert registry.champion("rtdetr", "race").version_id == best.version_id
    assert len({e.subject.version_id for e in history}) == 3, "each run recorded once"


def test_rollback_then_warm_start_from_the_restored_champion(data, store, capsys, prefect_api):
    registry = ModelRegistry(store)
    first, _ = run_flow(params(data, store, 2, "roll"))
    better, _ = run_flow(params(data, store, 4, "roll"))
    assert first["promotion"]["promoted"] and better["promotion"]["promoted"]

    assert run_cli(["models", "rollback", "rtdetr", "roll", "--store", store, "--reason", "field reports"]) == 0
    restored = registry.champion("rtdetr", "roll")
    assert restored.run_keys["train"] == first["results"]["train"]["run_key"]
    assert capsys.readouterr().out.rstrip().splitlines()[-1] == restored.engine

    # Warm start: training starts from the restored champion's checkpoint, and the train run key changes.
    warm, state = run_flow(params(data, store, 2, "roll", warm_start="roll"))
    assert warm is not None, state.message
    assert warm["warm_start"] == {"name": "roll", "champion": restored.version_id, "checkpoint": restored.checkpoint}
    train = warm["results"]["train"]
    assert train["run_key"] != first["results"]["train"]["run_key"], "a warm start is a different run"
    assert get_dotted(_spec(train["results_uri"]), "train.pretrained_model_path") == restored.checkpoint
    assert warm["promotion"]["decision"]["champion"] == restored.version_id  # decided against the restored one
    assert registry.history("rtdetr", "roll")[-1].subject.ptm == restored.checkpoint  # the lineage is recorded


def _spec(results_uri: str) -> dict:
    import yaml

    return yaml.safe_load((Path(results_uri) / "spec.yaml").read_text())


def test_promotion_on_an_s3_store(data, s3_root, capsys, prefect_api):
    """The same loop with the store (results, cache and registry) on moto's S3 server on loopback."""
    registry = ModelRegistry(s3_root)
    first, state = run_flow(params(data, s3_root, 2, "prod-s3"))
    assert first is not None and first["promotion"]["promoted"], state.message
    better, state = run_flow(params(data, s3_root, 3, "prod-s3"))
    assert better is not None and better["promotion"]["promoted"], state.message
    assert task_states(state.state_details.flow_run_id)["rtdetr-evaluate-champion"] == "Cached"
    worse, state = run_flow(params(data, s3_root, 1, "prod-s3"))
    assert worse is not None and not worse["promotion"]["promoted"], state.message
    assert [e.kind for e in registry.history("rtdetr", "prod-s3")] == ["promoted", "promoted", "rejected"]
    champion_file = ArtifactStore(s3_root).read_json(registry.champion_uri("rtdetr", "prod-s3"))
    assert champion_file["seq"] == 3 and champion_file["champion"]["engine"].startswith("s3://")

    assert run_cli(["models", "rollback", "rtdetr", "prod-s3", "--store", s3_root]) == 0
    assert registry.champion("rtdetr", "prod-s3").run_keys["train"] == first["results"]["train"]["run_key"]
    assert run_cli(["models", "show", "rtdetr", "prod-s3", "--store", s3_root]) == 0
    assert capsys.readouterr().out.rstrip().splitlines()[-1] == registry.champion("rtdetr", "prod-s3").engine


def test_the_champions_evaluate_has_its_own_row_on_the_live_board():
    from flows.live import StepBoard
    from taoflow.launchers.base import Cached
    from taoflow.runs import ActionRun
    from tasks.progress import label_run
    from tasks.promotion import CHAMPION_STEP

    run = ActionRun(model="rtdetr", action="evaluate", spec={}, image="nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt",
                    run_key="c0ffee0000champion01", results_uri="/store/runs/rtdetr/c0ffee0000champion01/evaluate")
    board = StepBoard("rtdetr", ["train", "evaluate"])
    label_run(run.run_key, CHAMPION_STEP)
    board.on_event(run, Cached(run.results_uri, emulated=True))
    assert board.rows["evaluate"].status == "pending", "the challenger's evaluate row is not touched"
    assert board.rows[CHAMPION_STEP].label() == "SUCCESS cached EMULATED"


def test_a_promotion_that_cannot_be_decided_fails_the_run_and_the_cli_exits_2(data, store, monkeypatch, capsys,
                                                                             prefect_api):
    """A newer taoflow writes the registry while this run trains (after its preflight): the promote step refuses
    to decide or append, the flow run fails with the registry's message in its state, and `taoflow run` prints
    one `error:` block and exits 2. The stand-in for the newer writer wraps the step's first registry call."""
    import tasks.promotion

    registry = ModelRegistry(store)
    marker = Path(registry.folder("rtdetr", "newer")) / "registry.json"
    original = tasks.promotion.version_from_pipeline

    def newer_taoflow_wrote_meanwhile(*args, **kwargs):
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps({"format": 99, "created": "2026-11-28T02:00:00Z"}))
        return original(*args, **kwargs)

    monkeypatch.setattr(tasks.promotion, "version_from_pipeline", newer_taoflow_wrote_meanwhile)
    summary, state = run_flow(params(data, store, 2, "newer"))
    assert summary is None and state.is_failed()
    assert "written by a newer taoflow" in state.message and "nothing was changed" in state.message

    marker.unlink()
    code = run_cli(["run", "rtdetr", "--data", f"train={data / 'train'}", "--data", f"eval={data / 'eval'}",
                    "--set", "dataset.num_classes=5", "--actions", ",".join(ACTIONS), "--emulate", "--store", store,
                    "--set", "train.train.num_epochs=2", "--promote", "newer", "--automl", "off"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("error:") == 1 and "written by a newer taoflow" in err and "Traceback" not in err
    assert not list(Path(registry.folder("rtdetr", "newer")).glob("events/*.json")), "nothing was recorded"
