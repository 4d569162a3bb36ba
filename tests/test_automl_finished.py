"""A finished sweep's record (taoflow/automl/finished.py), on a local and an S3 store."""

from __future__ import annotations

import pytest

from taoflow.automl.controller import SweepResult
from taoflow.automl.finished import read_record, record_uri, remove_record, write_record
from taoflow.runs import ActionResult
from taoflow.store import ArtifactStore

SWEEP_FLOW = "tao-automl-train"


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
