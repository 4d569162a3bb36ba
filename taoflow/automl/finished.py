"""A finished sweep's record, `<store>/automl/<model>/<study>.finished.json`: how a pipeline rerun answers a
sweep that already holds every trial of its budget without a Prefect subflow, artifacts, opening the Optuna
study or starting the controller (seconds of a cached rerun, for a result already decided).

- Written when a sweep ends finished: no trial running or being pruned, at least its budget of trials
  finished, a best result. It holds that budget, the best trial's ActionResult, the sweep's facts as the
  model card and the board show them (storage URLs masked, study.display_url) and the trials table.
- Read under the study's name, computed as the sweep computes it (sweep.sweep_study), so a record answers
  only the study the sweep would open. It answers when its budget covers the one asked, the study's storage
  is the one asked (compared as `storage_label` shows it: never a password), and the best trial's result
  passes the cache's check (taoflow/cache.py: verify — files deleted from the store make the sweep run
  again).
- It is a summary, never the truth (the study and the store are): a record that does not answer is
  removed before the sweep runs again (the study is about to change), and the sweep rewrites it when it
  finishes. Writes are atomic (ArtifactStore), on local and S3 stores alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taoflow.automl.controller import SweepResult
from taoflow.automl.study import display_url
from taoflow.cache import verify
from taoflow.runs import ActionResult
from taoflow.store import ArtifactStore

RECORD_VERSION = 1
FINISHED_STATES = ("COMPLETE", "PRUNED", "FAIL")
UNFINISHED_STATES = ("RUNNING", "PRUNING")


@dataclass
class FinishedSweep:
    """A sweep answered from its record: the best trial's result (cached), the sweep's facts as this run
    reports them (`launched` 0, `record` the record's URI) and the trials table."""

    best: ActionResult
    sweep: dict[str, Any]
    trials: list[dict[str, Any]]
    uri: str


@dataclass
class RecordLookup:
    """The record's answer, or why it gives none (`stale`: a record is there that must not answer)."""

    answer: FinishedSweep | None
    reason: str = ""
    stale: bool = False


def record_uri(store: ArtifactStore, model: str, study: str) -> str:
    return store.join(store.root, "automl", model, f"{study}.finished.json")


def storage_label(url: str | None) -> str | None:
    """The study's storage as the record keeps it: display_url's (a password masked), or the URL itself when
    it holds no credentials — the common SQLite file — sparing a rerun display_url's SQLAlchemy import."""
    if url and "@" not in url:
        return url
    return display_url(url)


def is_finished(result: SweepResult, max_trials: int) -> bool:
    """Every trial of a `max_trials` budget finished and one of them is the best: nothing left to run."""
    states = [row["state"] for row in result.trials]
    if result.best_result is None or any(state in UNFINISHED_STATES for state in states):
        return False
    return sum(1 for state in states if state in FINISHED_STATES) >= max_trials


def write_record(store: ArtifactStore, model: str, result: SweepResult, *, max_trials: int,
                 sweep: dict[str, Any]) -> str | None:
    """Record a finished sweep (returns the record's URI); a sweep that is not finished records nothing."""
    if not is_finished(result, max_trials):
        return None
    assert result.best_result is not None  # is_finished says so
    uri = record_uri(store, model, result.study_name)
    store.write_json_atomic(uri, {
        "version": RECORD_VERSION, "max_trials": int(max_trials), "storage": storage_label(result.storage),
        "best": result.best_result.to_dict(), "sweep": dict(sweep), "trials": result.trials,
    })
    return uri


def read_record(store: ArtifactStore, model: str, study: str, *, max_trials: int, storage: str | None,
                emulated: bool) -> RecordLookup:
    """The sweep's answer from its record, if the record covers `max_trials` trials in `storage` (the study's
    storage URL) and its best result still honestly answers (`emulated`, its files)."""
    uri = record_uri(store, model, study)
    try:
        record = store.read_json(uri)
    except FileNotFoundError:
        return RecordLookup(None, "no finished record")
    except ValueError as exc:  # not JSON: a damaged or foreign file answers nothing
        return RecordLookup(None, f"unreadable finished record ({exc})", stale=True)
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
        version = record.get("version") if isinstance(record, dict) else None
        return RecordLookup(None, f"a finished record of another version ({version})", stale=True)
    try:
        best = ActionResult.from_dict(dict(record["best"]))
        budget, kept = int(record["max_trials"]), record["storage"]
        sweep, trials = dict(record["sweep"]), list(record["trials"])
    except (KeyError, TypeError, ValueError) as exc:
        return RecordLookup(None, f"unreadable finished record ({exc!r})", stale=True)
    if budget < max_trials:
        return RecordLookup(None, f"the record's budget is {budget} trials, {max_trials} asked", stale=True)
    if kept != storage_label(storage):
        return RecordLookup(None, f"the record's study is in {kept}, not {storage_label(storage)}", stale=True)
    held = verify(store, best, best.run_key, emulated=emulated)
    if held.result is None:
        return RecordLookup(None, f"the best trial's result no longer answers: {held.reason}", stale=True)
    answered = dict(sweep, launched=0, record=uri)  # this run launched nothing
    return RecordLookup(FinishedSweep(held.result, answered, trials, uri))


def remove_record(store: ArtifactStore, model: str, study: str) -> None:
    store.remove(record_uri(store, model, study))
