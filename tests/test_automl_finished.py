"""A finished sweep's record (taoflow/automl/finished.py): a rerun of a sweep that holds every trial of its
budget is answered before the `tao-automl-train` subflow starts — no subflow run is created, the study is
not opened — while deleted results, a bigger budget or an unfinished sweep make the sweep run as before.
The pipeline runs go through the real flows on the emulator against the session's real Prefect API, and
whether a subflow ran is read back from that API; nothing waits on a timing margin."""

from __future__ import annotations

import shutil
from pathlib import Path
from uuid import UUID

import optuna
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
from rich.console import Console

from flows import model_flow
from flows.demo import demo_parameters
from flows.live import print_training
from taoflow.automl.controller import SweepResult
from taoflow.automl.finished import read_record, record_uri, remove_record, write_record
from taoflow.datasets import write_sample_data
from taoflow.runs import ActionResult
from taoflow.store import ArtifactStore
from tasks.progress import subscribe_trials

SWEEP_FLOW = "tao-automl-train"


def _params(data: Path, store: Path, trials: int):
    return demo_parameters("rtdetr", data, str(store), actions=["train"],
                           automl={"policy": "on", "max_trials": trials, "max_concurrent": 2})


def _run(params) -> tuple[dict, int]:
    """Run the pipeline; its summary and how many `tao-automl-train` subflow runs it created (Prefect API)."""
    flow_fn, _ = model_flow("rtdetr")
    state = flow_fn(params, return_state=True)
    assert state.is_completed(), state.message
    return state.result(), _sweep_subflows(state.state_details.flow_run_id)


def _sweep_subflows(flow_run_id: UUID) -> int:
    with get_client(sync_client=True) as client:
        children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run_id])))
        names = {flow.id: flow.name for flow in client.read_flows()}
    return sum(1 for run in children if names.get(run.flow_id) == SWEEP_FLOW)


def _trials_in_study(store: Path, study: str) -> int:
    (db,) = (store / "automl" / "rtdetr").glob("*.db")
    return len(optuna.load_study(study_name=study, storage=f"sqlite:///{db}").trials)


def _record(store: Path, study: str) -> Path:
    return store / "automl" / "rtdetr" / f"{study}.finished.json"


def _never_opened(*args, **kwargs):
    raise AssertionError("the Optuna study was opened")


def test_a_second_identical_run_answers_from_the_finished_record(rtdetr_data, tmp_path, prefect_api, monkeypatch):
    store = tmp_path / "store"
    first, subflows = _run(_params(rtdetr_data, store, 2))
    sweep = first["training"]["sweep"]
    assert subflows == 1 and sweep["launched"] == 2
    assert _record(store, sweep["study"]).is_file(), "a finished sweep wrote no record"

    monkeypatch.setattr("taoflow.automl.sweep.open_study", _never_opened)
    published: list[list[dict]] = []
    unsubscribe = subscribe_trials(lambda model, rows: published.append(rows))
    try:
        again, subflows = _run(_params(rtdetr_data, store, 2))
    finally:
        unsubscribe()
    assert subflows == 0, "the sweep's subflow ran although its finished record answers"
    assert [len(rows) for rows in published] == [2], "the board and `taoflow tune` get the trials table"
    train, before = again["results"]["train"], first["results"]["train"]
    assert train["cached"] and train["status"] == "SUCCESS"
    assert (train["run_key"], train["results_uri"]) == (before["run_key"], before["results_uri"])
    answered = again["training"]["sweep"]
    assert answered["launched"] == 0 and answered["record"].endswith(f"{sweep['study']}.finished.json")
    assert {k: answered[k] for k in ("study", "best_trial", "trials", "best_value")} == \
        {k: sweep[k] for k in ("study", "best_trial", "trials", "best_value")}
    assert _trials_in_study(store, sweep["study"]) == 2
    console = Console(width=200, record=True, color_system=None)
    print_training(again["training"], console)
    assert "none launched: answered from the study's finished record" in console.export_text()


def test_deleted_best_results_make_the_sweep_run_again(rtdetr_data, tmp_path, prefect_api):
    """The study still names the deleted trial best: it is trained again in its own folder, so evaluate finds
    its checkpoint there (before, evaluate failed with no checkpoint to read)."""
    store = tmp_path / "store"
    params = _params(rtdetr_data, store, 2).model_copy(update={"actions": ["train", "evaluate"]})
    first, _ = _run(params)
    best = first["results"]["train"]
    shutil.rmtree(best["results_uri"])

    again, subflows = _run(params)
    assert subflows == 1, "a record whose best trial's files are gone answered the sweep"
    assert again["training"]["sweep"]["study"] == first["training"]["sweep"]["study"]
    assert again["training"]["sweep"]["launched"] == 1  # the best trial, trained again; no new trial
    train = again["results"]["train"]
    assert (train["run_key"], train["results_uri"], train["cached"]) == (best["run_key"], best["results_uri"], False)
    assert again["results"]["evaluate"]["status"] == "SUCCESS"
    assert _trials_in_study(store, first["training"]["sweep"]["study"]) == 2


def test_a_bigger_budget_does_not_use_the_record_and_a_smaller_one_does(rtdetr_data, tmp_path, prefect_api):
    store = tmp_path / "store"
    first, _ = _run(_params(rtdetr_data, store, 2))
    study = first["training"]["sweep"]["study"]

    bigger, subflows = _run(_params(rtdetr_data, store, 3))
    assert subflows == 1 and bigger["training"]["sweep"]["launched"] == 1
    assert _trials_in_study(store, study) == 3

    smaller, subflows = _run(_params(rtdetr_data, store, 2))  # the record now covers 3 trials: 2 are in it
    assert subflows == 0 and smaller["training"]["sweep"]["trials"] == 3
    assert smaller["results"]["train"]["run_key"] == bigger["results"]["train"]["run_key"]


def test_the_record_answers_a_sweep_with_upstream_steps(tmp_path, prefect_api):
    """Sparse4D trains on its dataset_convert results: their run keys name the study, and the step names it
    from the same results the subflow is handed."""
    write_sample_data("sparse4d", tmp_path / "data")
    params = demo_parameters("sparse4d", tmp_path / "data", str(tmp_path / "store"),
                             actions=["dataset_convert", "train"],
                             automl={"policy": "on", "max_trials": 2, "max_concurrent": 2})
    flow_fn, _ = model_flow("sparse4d")
    first = flow_fn(params)
    state = flow_fn(params, return_state=True)
    again = state.result()
    assert _sweep_subflows(state.state_details.flow_run_id) == 0
    assert again["training"]["sweep"]["study"] == first["training"]["sweep"]["study"]
    assert again["results"]["train"]["run_key"] == first["results"]["train"]["run_key"]


# ------------------------------------------------------------------------- the record, on either store

def _stored_best(store: ArtifactStore) -> ActionResult:
    """A SUCCESS train result whose checkpoint and status.json are in the store."""
    folder = store.results_uri("rtdetr", "k0", "train")
    for name in ("model_epoch_001.pth", "status.json"):
        store.write_bytes_atomic(store.join(folder, name), b"x")
    return ActionResult(model="rtdetr", action="train", run_key="k0", status="SUCCESS", results_uri=folder,
                        products={"checkpoint": store.join(folder, "model_epoch_001.pth"),
                                  "status": store.join(folder, "status.json")}, emulated=True)


def _result(best: ActionResult | None, states: list[str], storage: str = "sqlite:///x.db") -> SweepResult:
    rows = [{"number": i, "state": s, "value": 0.5 if s == "COMPLETE" else None} for i, s in enumerate(states)]
    return SweepResult(study_name="rtdetr-abc", storage=storage, metric="val_mAP", direction="maximize",
                       best_number=0 if best else None, best_params={}, best_value=0.5 if best else None,
                       best_results_uri=best.results_uri if best else None, best_result=best, trials=rows)


SWEEP = {"study": "rtdetr-abc", "storage": "sqlite:///x.db", "trials": 2, "launched": 2, "best_trial": 0,
         "metric": "val_mAP", "direction": "maximize", "best_value": 0.5, "trained_with": {}}


def _read(store: ArtifactStore, max_trials: int = 2, storage: str = "sqlite:///x.db"):
    return read_record(store, "rtdetr", "rtdetr-abc", max_trials=max_trials, storage=storage, emulated=True)


@pytest.mark.parametrize("states, has_best", [
    (["COMPLETE", "RUNNING"], True),     # a trial still runs
    (["COMPLETE", "PRUNING"], True),     # a trial is being pruned
    (["COMPLETE"], True),                # fewer trials finished than the budget
    (["FAIL", "FAIL"], False),           # no best result
])
def test_a_sweep_that_is_not_finished_writes_no_record(any_store_root, states, has_best):
    store = ArtifactStore(any_store_root)
    best = _stored_best(store) if has_best else None
    assert write_record(store, "rtdetr", _result(best, states), max_trials=2, sweep=SWEEP) is None
    assert not store.exists(record_uri(store, "rtdetr", "rtdetr-abc"))
    assert _read(store).reason == "no finished record"


def test_a_finished_record_answers_only_its_budget_storage_and_files(any_store_root):
    store = ArtifactStore(any_store_root)
    best = _stored_best(store)
    uri = write_record(store, "rtdetr", _result(best, ["COMPLETE", "PRUNED"]), max_trials=2, sweep=SWEEP)
    assert uri == record_uri(store, "rtdetr", "rtdetr-abc") and store.exists(uri)

    found = _read(store).answer
    assert found is not None and found.best.cached and found.best.run_key == "k0"
    assert found.sweep["launched"] == 0 and found.sweep["record"] == uri and len(found.trials) == 2
    assert _read(store, max_trials=3).stale and _read(store, max_trials=3).answer is None
    assert _read(store, storage="postgresql://u@db/optuna").answer is None

    store.remove(best.products["checkpoint"])
    gone = _read(store)
    assert gone.answer is None and gone.stale and "model_epoch_001.pth" in gone.reason
    remove_record(store, "rtdetr", "rtdetr-abc")
    assert not store.exists(uri)


def test_a_record_never_holds_the_storage_password(any_store_root):
    store = ArtifactStore(any_store_root)
    url = "postgresql://optuna:s3cret@db.example.com/optuna"
    sweep = dict(SWEEP, storage="postgresql://optuna:***@db.example.com/optuna")  # as automl_train masks it
    uri = write_record(store, "rtdetr", _result(_stored_best(store), ["COMPLETE", "COMPLETE"], url),
                       max_trials=2, sweep=sweep)
    assert "s3cret" not in store.read_text(uri)
    assert _read(store, storage=url).answer is not None
    other = _read(store, storage="postgresql://optuna:s3cret@elsewhere.example.com/optuna")
    assert other.answer is None and "s3cret" not in other.reason


@pytest.mark.parametrize("body", ["not json", "[1]", '{"version": 99}', '{"version": 1}'])
def test_a_damaged_or_foreign_record_answers_nothing_and_is_stale(tmp_path, body):
    store = ArtifactStore(str(tmp_path / "store"))
    store.write_text_atomic(record_uri(store, "rtdetr", "rtdetr-abc"), body)
    found = _read(store)
    assert found.answer is None and found.stale
