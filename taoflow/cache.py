"""The store is the cache: an action runs once per run key, across every controller sharing the store.

- The cache record is the store's own `result.json` in the run's results folder (`<root>/runs/<model>/
  <run_key>/<step>/`). There is no other record to go stale: when someone deletes the folder, or a file
  the result names, the next lookup misses and the step runs again.
- A hit is honest: same run key, SUCCESS, run by what this run may use (an EMULATED result never answers a
  run that must use TAO, nor the reverse), and every file it names still in the store — products (ONNX,
  engine, calibration cache, checkpoint, status.json …) and, for each kind of model file its manifest
  listed, at least one complete file of that kind for the resolver to hand on. One listing of the folder.
- A miss is launched under a store lease (taoflow/leases.py): controllers that find the lease held wait,
  and take the holder's result when it appears; the holder looks once more after acquiring, so a result
  that landed meanwhile is never run twice; the result is written before the lease is released.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from taoflow.leases import StoreLease
from taoflow.runs import ActionResult, ActionRun
from taoflow.store import ArtifactStore

# Products that only record how a run went; losing one does not lose the run's results.
RECORD_PRODUCTS = frozenset({"log", "spec"})
# Manifest kinds a child action is handed; one complete file of each listed kind must remain.
HANDED_ON = {"checkpoint": ("checkpoint", "best", "latest"), "onnx": ("onnx",), "engine": ("engine",),
             "cal_cache": ("cal_cache",)}


@dataclass
class Lookup:
    """A verified cache hit (`result`, marked cached), or why the store cannot answer (`reason`)."""

    result: ActionResult | None
    reason: str = ""


def lease_uri(store: ArtifactStore, run: ActionRun) -> str:
    return store.join(store.root, "control", "leases", run.model, f"{run.run_key}.json")


def lookup(store: ArtifactStore, run: ActionRun, *, emulated: bool) -> Lookup:
    """The stored result of `run`, if it honestly answers a run that does (`emulated`) or does not use the
    emulator and its files are all still there."""
    try:
        stored = store.read_result(run.results_uri)
    except (ValueError, TypeError) as exc:  # a damaged or foreign result.json answers nothing
        return Lookup(None, f"unreadable result.json ({exc})")
    return verify(store, stored, run.run_key, emulated=emulated)


def verify(store: ArtifactStore, stored: ActionResult | None, run_key: str, *, emulated: bool) -> Lookup:
    """Whether `stored` honestly answers run `run_key` (see `lookup`). Apart from reading result.json, so a
    result recorded elsewhere (an AutoML sweep's best trial in its finished record, taoflow/automl/
    finished.py) is held to the same rules, its files above all."""
    if stored is None:
        return Lookup(None, "no result in the store")
    if stored.run_key != run_key:
        return Lookup(None, f"result.json belongs to run {stored.run_key}")
    if not stored.ok:
        return Lookup(None, f"the stored run ended {stored.status}")
    if stored.emulated != emulated:
        what = "EMULATED" if stored.emulated else "from real TAO"
        return Lookup(None, f"the stored result is {what}; this run {'uses' if emulated else 'may not use'} "
                            "the emulator")
    missing = missing_files(store, stored)
    if missing:
        return Lookup(None, "results named by result.json are gone: " + ", ".join(missing))
    return Lookup(dataclasses.replace(stored, cached=True))


def missing_files(store: ArtifactStore, result: ActionResult) -> list[str]:
    """Files the result names that are no longer in the store (one listing of its results folder)."""
    base = result.results_uri.rstrip("/") + "/"
    present = {e.path for e in store.list_files(result.results_uri, include_dirs=False)}
    missing = []
    for kind, uri in sorted(result.products.items()):
        if kind in RECORD_PRODUCTS:
            continue
        if uri.startswith(base):
            if uri[len(base):] not in present:
                missing.append(uri)
        elif not store.exists(uri):
            missing.append(uri)
    entries = (result.manifest or {}).get("entries", [])
    for product, kinds in HANDED_ON.items():
        listed = [e["path"] for e in entries if e.get("kind") in kinds and e.get("complete", True)]
        if listed and not any(path in present for path in listed):
            missing.append(f"every {product} file ({', '.join(listed[:3])}{' …' if len(listed) > 3 else ''})")
    return missing


@dataclass
class Outcome:
    result: ActionResult
    cached: bool
    waited_for: str | None = None  # the holder this controller waited for, if any
    lease_lost: bool = False  # the lease lapsed while this controller ran the step (it stalled too long)


def run_once(store: ArtifactStore, run: ActionRun, launch: Callable[[ActionRun], ActionResult], *,
             emulated: bool, lease_seconds: float, on_wait: Callable[[dict[str, Any]], None] | None = None,
             on_miss: Callable[[str], None] | None = None) -> Outcome:
    """The verified stored result of `run`, or `launch(run)` under the run's store lease, written to the
    store as `result.json` before the lease is released (failures too: they answer no lookup)."""
    found = lookup(store, run, emulated=emulated)
    if found.result is not None:
        return Outcome(found.result, cached=True)
    if on_miss is not None:
        on_miss(found.reason)
    lease = StoreLease(store, lease_uri(store, run), lease_seconds=lease_seconds,
                       info={"model": run.model, "action": run.action, "run_key": run.run_key})
    waited: list[str] = []

    def waiting(record: dict[str, Any]) -> None:
        waited.append(str(record.get("holder")))
        if on_wait is not None:
            on_wait(record)

    answered = lease.acquire(done_elsewhere=lambda: lookup(store, run, emulated=emulated).result, on_wait=waiting)
    holder = waited[-1] if waited else None
    if answered is not None:
        return Outcome(answered, cached=True, waited_for=holder)
    try:
        again = lookup(store, run, emulated=emulated)  # the previous holder may have finished just now
        if again.result is not None:
            return Outcome(again.result, cached=True, waited_for=holder)
        result = launch(run)
        store.write_result(run.results_uri, result)
        return Outcome(result, cached=False, waited_for=holder, lease_lost=lease.lost.is_set())
    finally:
        lease.release()
