"""The cache is honest (issue 12.3): emulation is part of a run's identity, a hit is checked against the
store, and a hit is reported as cached (a `Cached` event, a "Cached" task state, EMULATED where it is).

Engine tests run on a local store and on moto's S3 server; the flow tests run the rtdetr pipeline on the
emulator against the session's real Prefect server. The one stand-in is the fake `rtdetr` console script
from test_local_launcher (TAO cannot be installed here), which plays real TAO where one must run."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import pytest

from flows import model_flow
from flows.demo import demo_parameters
from taoflow.cache import lookup, run_once
from taoflow.launchers.base import Cached
from taoflow.planner import PlannedStep, RunContext, prepare_run, resolve_emulate
from taoflow.runs import ActionResult, ActionRun
from taoflow.skill import load_skill
from taoflow.store import ArtifactStore
from tasks.artifacts import kpi_rows, model_card
from tasks.progress import subscribe
from tests.fake_tao import put_fake_tao_on_path


def _params(data: Path, store: str, **launcher):
    return demo_parameters(
        "rtdetr", data, store, actions=["train", "evaluate", "export"],
        overrides={"train": {"train.num_epochs": 2, "train.checkpoint_interval": 1}},
        launcher={"name": "local", "emulate": True, **launcher}, automl_policy="off",
    )


# ------------------------------------------------------------------------------------------ identity

def test_emulation_is_resolved_before_the_run_key(rtdetr_data, tmp_path, monkeypatch):
    skill = load_skill("rtdetr")
    store = ArtifactStore(str(tmp_path / "store"))

    def train_run(**launcher) -> ActionRun:
        request = _params(rtdetr_data, store.root, **launcher).to_request("rtdetr")
        return prepare_run(RunContext(skill, request, store, {}), PlannedStep("train"))

    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no TAO here
    assert resolve_emulate(skill, "train", "local", None) is True
    for name in ("docker", "kubernetes", "workpool"):
        assert resolve_emulate(skill, "train", name, None) is False, "a TAO image runs TAO unless forced"
    emulated = train_run(emulate=None)
    real = train_run(emulate=False)
    docker = train_run(name="docker", emulate=None)
    assert emulated.emulate is True and real.emulate is False and docker.emulate is False
    assert emulated.run_key != real.run_key and emulated.results_uri != real.results_uri
    assert docker.run_key == real.run_key, "real TAO in the same image is the same computation"
    assert train_run(name="docker", emulate=True).run_key == emulated.run_key

    put_fake_tao_on_path(tmp_path, monkeypatch)
    assert resolve_emulate(skill, "train", "local", None) is False, "TAO installed: the local launcher runs it"
    assert train_run(emulate=None).run_key == real.run_key


def test_an_emulated_result_never_answers_a_run_that_must_use_tao(rtdetr_data, tmp_path, prefect_api,
                                                                   monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    flow_fn, _ = model_flow("rtdetr")
    store = str(tmp_path / "store")
    first = flow_fn(_params(rtdetr_data, store, emulate=None))  # no TAO installed: the emulator runs
    assert first["results"]["train"]["emulated"] is True

    events: list[Cached] = []
    unsubscribe = subscribe(lambda run, event: events.append(event) if isinstance(event, Cached) else None)
    try:
        again = flow_fn(_params(rtdetr_data, store, emulate=True))
    finally:
        unsubscribe()
    assert {n: (r["cached"], r["emulated"]) for n, r in again["results"].items()} == {
        "train": (True, True), "evaluate": (True, True), "export": (True, True)}
    assert [e.emulated for e in events] == [True, True, True], "each hit publishes Cached, EMULATED"

    # --no-emulate with no TAO here: refused, never answered with the emulated checkpoint.
    state = flow_fn(_params(rtdetr_data, store, emulate=False), return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="not installed"):
        state.result()

    # --launcher docker: a real TAO run in an image, not the emulated result (no docker daemon here).
    state = flow_fn(_params(rtdetr_data, store, name="docker", emulate=None), return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match="docker daemon"):
        state.result()

    # TAO installed (the fake console script): the local launcher runs it, not the emulated result.
    put_fake_tao_on_path(tmp_path, monkeypatch)
    real = flow_fn(_params(rtdetr_data, store, emulate=None).model_copy(update={"actions": ["train"]}))
    train = real["results"]["train"]
    assert train["emulated"] is False and train["cached"] is False
    assert train["results_uri"] != first["results"]["train"]["results_uri"]
    assert "real TAO train" in Path(train["products"]["log"]).read_text()


def test_emulated_results_say_so_in_artifacts_and_the_model_card():
    def result(action: str, emulated: bool, cached: bool = False) -> ActionResult:
        return ActionResult(model="rtdetr", action=action, run_key="k" + action, status="SUCCESS",
                            results_uri=f"/s/runs/rtdetr/k/{action}", emulated=emulated, cached=cached)

    results = {"train": result("train", True, cached=True), "export": result("export", False)}
    card = model_card("rtdetr", results, [], "/s")
    assert "| train | SUCCESS (EMULATED, cached) |" in card and "| export | SUCCESS |" in card
    assert "## train (EMULATED)" in card and "## export\n" in card
    assert "**EMULATED**" in card
    rows = {row["action"]: row for row in kpi_rows(results)}
    assert rows["train"]["status"] == "SUCCESS (EMULATED, cached)" and rows["export"]["status"] == "SUCCESS"


# ------------------------------------------------------------------------------------------ verified hits

def _stored(store: ArtifactStore, *, emulated: bool = True) -> ActionRun:
    """A finished export and a train's checkpoints in the store, as a launcher leaves them."""
    uri = store.results_uri("rtdetr", "k1", "export")
    files = {"model.onnx": b"onnx", "status.json": b'{"status": "SUCCESS"}\n', "logs/export.log": b"log",
             "model_epoch_000_step_00001.pth": b"w0", "model_epoch_001_step_00002.pth": b"w1"}
    for name, data in files.items():
        store.write_bytes_atomic(store.join(uri, name), data)
    entries = [{"path": p, "kind": "checkpoint", "complete": True} for p in files if p.endswith(".pth")]
    entries.append({"path": "model.onnx", "kind": "onnx", "complete": True})
    run = ActionRun(model="rtdetr", action="export", spec={}, image="img", run_key="k1", results_uri=uri,
                    emulate=emulated)
    result = ActionResult(
        model="rtdetr", action="export", run_key="k1", status="SUCCESS", results_uri=uri, emulated=emulated,
        manifest={"entries": entries},
        products={"onnx": store.join(uri, "model.onnx"), "status": store.join(uri, "status.json"),
                  "log": store.join(uri, "logs/export.log"),
                  "checkpoint": store.join(uri, "model_epoch_001_step_00002.pth")})
    store.write_result(uri, result)
    return run


def test_a_hit_is_checked_against_the_store(any_store_root):
    store = ArtifactStore(any_store_root)
    run = _stored(store)
    hit = lookup(store, run, emulated=True)
    assert hit.result is not None and hit.result.cached is True
    assert lookup(store, run, emulated=False).result is None, "an EMULATED result answers no real run"
    assert "EMULATED" in lookup(store, run, emulated=False).reason

    store.fs.rm(store._path(store.join(run.results_uri, "logs/export.log")))
    assert lookup(store, run, emulated=True).result is not None, "a log is a record, not a result"
    store.fs.rm(store._path(store.join(run.results_uri, "model_epoch_000_step_00001.pth")))
    assert lookup(store, run, emulated=True).result is not None, "an older checkpoint may be pruned"

    store.fs.rm(store._path(store.join(run.results_uri, "model.onnx")))
    miss = lookup(store, run, emulated=True)
    assert miss.result is None and "model.onnx" in miss.reason


def test_a_hit_needs_a_checkpoint_to_hand_on(any_store_root):
    store = ArtifactStore(any_store_root)
    run = _stored(store)
    result = store.read_result(run.results_uri)
    result.products.pop("checkpoint")
    store.write_result(run.results_uri, result)
    for name in ("model_epoch_000_step_00001.pth", "model_epoch_001_step_00002.pth"):
        store.fs.rm(store._path(store.join(run.results_uri, name)))
    miss = lookup(store, run, emulated=True)
    assert miss.result is None and "every checkpoint file" in miss.reason


def test_a_waiting_controller_takes_the_holders_result(any_store_root):
    """Two run_once calls on one run key: the second waits on the store lease and answers from the first's
    result; gated on the waiter's own `on_wait` event, not on time."""
    store = ArtifactStore(any_store_root)
    run = _stored(store)
    store.fs.rm(store._path(store.join(run.results_uri, "result.json")))
    waiting, launches = threading.Event(), []

    def slow_launch(r: ActionRun) -> ActionResult:
        launches.append(r.run_key)
        assert waiting.wait(120), "the second controller never waited"
        return ActionResult(model=r.model, action=r.action, run_key=r.run_key, status="SUCCESS",
                            results_uri=r.results_uri, emulated=True,
                            products={"onnx": store.join(r.results_uri, "model.onnx")})

    outcomes = {}
    holder = threading.Thread(target=lambda: outcomes.setdefault(
        "holder", run_once(store, run, slow_launch, emulated=True, lease_seconds=30)))
    holder.start()
    while not launches:  # the holder is inside launch, holding the lease
        holder.join(0.01)
    outcomes["waiter"] = run_once(store, run, slow_launch, emulated=True, lease_seconds=30,
                                  on_wait=lambda record: waiting.set())
    holder.join()
    assert launches == ["k1"], "launched once"
    assert outcomes["holder"].cached is False and outcomes["waiter"].cached is True
    assert outcomes["waiter"].waited_for, "the waiter names the holder it waited for"


# ------------------------------------------------------------------------------------------ deleted results

def test_deleted_results_run_the_step_again(rtdetr_data, tmp_path, prefect_api):
    flow_fn, _ = model_flow("rtdetr")
    store = str(tmp_path / "store")
    params = _params(rtdetr_data, store)
    first = flow_fn(params)
    export = Path(first["results"]["export"]["products"]["onnx"])
    export.unlink()  # someone deleted the ONNX file

    second = flow_fn(params)
    assert {n: r["cached"] for n, r in second["results"].items()} == {
        "train": True, "evaluate": True, "export": False}
    assert Path(second["results"]["export"]["products"]["onnx"]).is_file()

    train_dir = Path(first["results"]["train"]["results_uri"])
    shutil.rmtree(train_dir)  # someone deleted runs/rtdetr/<key>/train
    third = flow_fn(params)
    assert third["results"]["train"]["cached"] is False
    assert third["results"]["train"]["status"] == "SUCCESS"
    records = [json.loads(line) for line in (train_dir / "status.json").read_text().splitlines()]
    assert sum(1 for r in records if r.get("message") == "Starting Training Loop.") == 1, "trained again, from scratch"
    assert third["results"]["evaluate"]["status"] == "SUCCESS", "no NoCandidate downstream"
