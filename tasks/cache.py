"""Prefect glue for the store-backed cache (taoflow/cache.py): what a cache hit looks like to Prefect and
to the terminal.

Prefect's own cache records are not used for `run_action` (they would live in each controller's home and
outlive deleted results); the store's `result.json`, verified on every lookup, is the only record, and a
store lease makes concurrent controllers launch a step once. A hit:
- publishes the `Cached` event (tasks/progress.py), which the live board renders, EMULATED when it is;
- ends the task run in a Completed state named "Cached", so the Prefect UI and API show it as cached;
- returns the stored result with `cached=True`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect.states import Completed, State

from taoflow.cache import run_once
from taoflow.launchers.base import Cached
from taoflow.leases import lease_seconds_from_env
from taoflow.planner import resolve_emulate
from taoflow.runs import ActionResult, ActionRun
from taoflow.skill import load_skill
from taoflow.store import ArtifactStore
from tasks.progress import publish


def uses_emulator(run: ActionRun, launcher: str) -> bool:
    """The planner resolves `emulate` before the run key; an ActionRun built by hand may still say None."""
    if run.emulate is not None:
        return bool(run.emulate)
    return resolve_emulate(load_skill(run.model), run.action, launcher, None)


def cached_or_launched(run: ActionRun, store: ArtifactStore, launcher: str,
                       launch: Callable[[ActionRun], ActionResult], logger) -> ActionResult | State:
    """The launched ActionResult, or on a cache hit a Completed "Cached" state carrying the stored result."""
    emulated = uses_emulator(run, launcher)

    def on_miss(reason: str) -> None:
        logger.info("%s %s: not cached (%s); launching%s", run.model, run.action, reason,
                    " on the TAO EMULATOR" if emulated else "")

    def on_wait(record: dict[str, Any]) -> None:
        logger.info("%s %s: waiting for %s, which holds the lease on run %s (it lapses %g s after its "
                    "holder stops renewing it)", run.model, run.action, record.get("holder"), run.run_key,
                    float(record.get("lease_seconds") or 0))

    outcome = run_once(store, run, launch, emulated=emulated, lease_seconds=lease_seconds_from_env(),
                       on_wait=on_wait, on_miss=on_miss)
    if outcome.lease_lost:
        logger.warning("%s %s: this controller could not renew its lease for %g s and another may have run "
                       "the step too; raise TAOFLOW_LOCK_LEASE_SECONDS if controllers stall that long",
                       run.model, run.action, lease_seconds_from_env())
    if not outcome.cached:
        return outcome.result
    return cached_state(run, outcome.result, logger)


def cached_state(run: ActionRun, result: ActionResult, logger) -> State:
    label = " (EMULATED)" if result.emulated else ""
    logger.info("%s %s: cached%s — results already in the store at %s; launching nothing",
                run.model, run.action, label, result.results_uri)
    publish(run, Cached(result.results_uri, emulated=result.emulated))
    return Completed(name="Cached", message=f"answered from the store{label}: {result.results_uri}",
                     data=result.to_dict())
