"""The sweep controller on real Optuna + SQLite.

Most tests run trials as real emulator processes through `LocalLauncher` (the acceptance: ≤ max_concurrent
running, pruned jobs stopped, best checkpoint handed on, a SIGKILLed controller resumed). Two tests use
`SurfaceLauncher`, an in-process launcher that stands in for the emulator process (same surfaces, same
events) where a process per trial would only make the test slower: reproducibility and failed trials.

Run as a script (`python tests/test_automl_controller.py ROOT DATA TRIALS CONCURRENCY EPOCHS`) it runs one
sweep — the controller process the kill test SIGKILLs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import optuna
import pytest

from taoflow.automl.controller import SweepController, SweepResult
from taoflow.automl.space import build_space
from taoflow.automl.study import default_storage, open_study, settings_for, study_name
from taoflow.dotted import expand
from taoflow.emulator.surfaces import tao as surfaces
from taoflow.launchers.base import EpochProgress, Finished
from taoflow.runs import ActionResult, ActionRun, canonical_json
from taoflow.skill import load_skill

optuna.logging.set_verbosity(logging.WARNING)
MODEL = "rtdetr"


# ------------------------------------------------------------------------------------ emulator sweeps

def sweep(root: Path, data_dir: Path, trials: int, concurrency: int, epochs: int, seed: int = 1) -> SweepResult:
    """One sweep of rtdetr through LocalLauncher + emulator, its study in SQLite beside the store."""
    from taoflow.launchers.local import LocalLauncher
    from taoflow.planner import PipelineRequest, PlannedStep, RunContext, prepare_run
    from taoflow.store import ArtifactStore

    skill = load_skill(MODEL)
    store = ArtifactStore(str(root / "store"))
    data = {p.name: str(p) for p in sorted(data_dir.iterdir()) if p.is_dir()}
    space = build_space(skill)
    settings = settings_for(skill, max_trials=trials, max_concurrent=concurrency, max_epochs=epochs, seed=seed)
    name = study_name(settings, space, {"data": data})
    url = default_storage(store.root, MODEL, name)
    study = open_study(settings, space, storage=url, name=name)

    def make_run(overrides: dict[str, Any], number: int) -> ActionRun:
        request = PipelineRequest(model=MODEL, data=data, overrides={"train": overrides}, store=str(store.root),
                                  emulate=True)
        return prepare_run(RunContext(skill, request, store, {}), PlannedStep("train"))

    launcher = LocalLauncher(grace_seconds=3, poll_seconds=0.05)
    return SweepController(study, space, settings, skill, launcher, make_run, store=store, storage_url=url).run()


@pytest.fixture(scope="module")
def rtdetr_data(tmp_path_factory) -> Path:
    from taoflow.datasets import write_sample_data

    root = tmp_path_factory.mktemp("automl-data")
    write_sample_data(MODEL, root)
    return root


@pytest.fixture()
def slow_epochs(monkeypatch, tmp_path):
    """Epochs long enough that a prune lands before the trial ends; TAOFLOW_HOME per test."""
    monkeypatch.setenv("TAOFLOW_EMULATOR_EPOCH_SECONDS", "0.08")
    monkeypatch.setenv("TAOFLOW_HOME", str(tmp_path / "home"))


def _max_overlap(rows: list[dict]) -> int:
    edges = []
    for row in rows:
        edges += [(row["submitted_at"], 1), (row["finished_at"], -1)]
    running = peak = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):  # an end before a start at the same instant
        running += step
        peak = max(peak, running)
    return peak


def _live_processes_reading(paths: list[str]) -> list[str]:
    """Command lines of live processes whose argv names one of `paths` (the trial's spec file)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if state != "Z" and any(p in cmd for p in paths):
            found.append(cmd)
    return found


def test_sixteen_trials_four_at_a_time_prune_and_hand_on_the_best(rtdetr_data, tmp_path, slow_epochs) -> None:
    from taoflow import resolver
    from taoflow.store import ArtifactStore

    result = sweep(tmp_path, rtdetr_data, trials=16, concurrency=4, epochs=9)
    rows = result.trials
    assert len(rows) == 16
    assert all(r["submitted_at"] and r["finished_at"] for r in rows)
    assert _max_overlap(rows) <= 4
    assert _max_overlap(rows) >= 2  # it did run trials in parallel
    states = [r["state"] for r in rows]
    assert "PRUNED" in states and "COMPLETE" in states and "FAIL" not in states, states

    pruned = [r for r in rows if r["state"] == "PRUNED"]
    specs = [str(Path(r["results_uri"]) / "spec.yaml") for r in pruned]
    assert _live_processes_reading(specs) == []
    stopped_early = 0
    for r in pruned:  # the job was stopped: its status.json never got TAO's final SUCCESS line
        folder = Path(r["results_uri"])
        lines = [json.loads(x) for x in (folder / "status.json").read_text().splitlines() if x.strip()]
        assert lines[-1]["status"] != "SUCCESS"
        assert set(r["kpi_per_rung"]) <= {"1", "3"}
        stopped_early += not list(folder.glob("model_epoch_008_*.pth"))
    assert stopped_early >= len(pruned) / 2  # cancelling saved their remaining epochs

    complete = [r for r in rows if r["state"] == "COMPLETE"]
    best = max(complete, key=lambda r: r["value"])
    assert result.best_number == best["number"] and result.best_value == best["value"]
    assert set(best["kpi_per_rung"]) == {"1", "3", "9"}
    assert result.best_result is not None and result.best_result.ok
    assert result.best_result.results_uri == result.best_results_uri
    checkpoint = resolver.parent_model(ArtifactStore(str(tmp_path / "store")), result.best_results_uri,
                                       skill=load_skill(MODEL), parent_action="train")
    assert Path(checkpoint).name.startswith("model_epoch_") and Path(checkpoint).exists()
    assert result.gpu_epochs < 16 * 9  # pruning saved GPU time


def _peek(db: Path) -> tuple[int, list[str]] | None:
    """(finished trials, results folders of running trials) read straight from the SQLite file, read-only:
    opening it through Optuna while the controller creates the schema races on alembic's version table."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.OperationalError:
        return None
    try:
        states = dict(con.execute("SELECT trial_id, state FROM trials").fetchall())
        uris = dict(con.execute("SELECT trial_id, value_json FROM trial_user_attributes "
                                "WHERE key = 'results_uri'").fetchall())
    except sqlite3.OperationalError:
        return None
    finally:
        con.close()
    done = sum(1 for state in states.values() if state not in ("RUNNING", "WAITING"))
    running = [json.loads(uris[i]) for i, state in states.items() if state == "RUNNING" and i in uris]
    return done, running


def _checkpointed(folders: list[str]) -> list[str]:
    return [f for f in folders if list(Path(f).glob("model_epoch_*.pth"))]


@pytest.mark.parametrize("jobs_die", [False, True], ids=["jobs-survive", "jobs-die-too"])
def test_killed_controller_resumes_without_rerunning_finished_trials(rtdetr_data, tmp_path, slow_epochs,
                                                                    jobs_die: bool) -> None:
    """SIGKILL the controller process mid-sweep (and, in the second case, its running trials' jobs as a node
    loss would); running the sweep again keeps finished trials, adopts running ones — attaching to live
    jobs, resuming dead ones from their newest checkpoint — and fills the budget."""
    env = {**os.environ, "TAOFLOW_EMULATOR_EPOCH_SECONDS": "0.15"}
    args = [sys.executable, __file__, str(tmp_path), str(rtdetr_data), "8", "2", "9"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = None
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:  # two finished trials and a running one with a checkpoint
            dbs = list((tmp_path / "store" / "automl" / MODEL).glob("*.db"))
            if dbs:
                db = dbs[0]
                seen = _peek(db)
                if seen is not None and seen[0] >= 2 and _checkpointed(seen[1]):
                    break
            time.sleep(0.1)
        else:
            pytest.fail("the sweep never got going: " + (proc.stderr.read().decode()[-2000:] if proc.stderr else ""))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert db is not None
    url = f"sqlite:///{db}"
    name = optuna.get_all_study_summaries(url)[0].study_name
    before = {t.number: t for t in optuna.load_study(study_name=name, storage=url).get_trials()}
    finished_before = {n: t for n, t in before.items() if t.state.is_finished()}
    running_before = {n: t for n, t in before.items() if t.state == optuna.trial.TrialState.RUNNING}
    assert finished_before and running_before
    checkpointed = {n for n, t in running_before.items()
                    if "results_uri" in t.user_attrs and _checkpointed([t.user_attrs["results_uri"]])}
    assert checkpointed
    if jobs_die:  # the trials' jobs die with the controller (their own process groups, started by this test)
        for t in running_before.values():
            pid_file = Path(t.user_attrs.get("results_uri", "/nonexistent")) / ".taoflow_run.json"
            if pid_file.exists():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(int(json.loads(pid_file.read_text())["pid"]), signal.SIGKILL)
        specs = [str(Path(t.user_attrs["results_uri"]) / "spec.yaml") for t in running_before.values()
                 if "results_uri" in t.user_attrs]
        for _ in range(50):
            if not _live_processes_reading(specs):
                break
            time.sleep(0.1)

    result = sweep(tmp_path, rtdetr_data, trials=8, concurrency=2, epochs=9)
    after = {t.number: t for t in optuna.load_study(study_name=name, storage=url).get_trials()}
    assert result.study_name == name
    assert len(after) == 8  # the budget was filled, not restarted
    assert all(t.state.is_finished() for t in after.values())
    for number, t in finished_before.items():  # kept as they were, never submitted again
        assert after[number].state == t.state and after[number].value == t.value
        assert after[number].user_attrs["submitted_at"] == t.user_attrs["submitted_at"]
        folder = Path(t.user_attrs["results_uri"])
        starts = [x for x in (folder / "status.json").read_text().splitlines() if '"STARTED"' in x]
        assert len(starts) == 1
    for number, t in running_before.items():  # adopted: same trial, same params, same run
        assert after[number].params == t.params
        assert after[number].user_attrs["adopted"] == 1
        if "run_key" in t.user_attrs:  # absent when the kill landed between ask and submit
            assert after[number].user_attrs["run_key"] == t.user_attrs["run_key"]
    if jobs_die:  # dead jobs with checkpoints were resumed from them, not retrained
        for number in checkpointed:
            log = (Path(after[number].user_attrs["results_uri"]) / "logs" / "train.log").read_text()
            assert "Resuming training from" in log, number
    params = [canonical_json(t.params) for t in after.values()]
    assert len(set(params)) == len(params)
    specs = [str(Path(t.user_attrs["results_uri"]) / "spec.yaml") for t in after.values()]
    assert _live_processes_reading(specs) == []


# ------------------------------------------------------------------------------------ in-process launcher

class SurfaceLauncher:
    """Stands in for the emulator process: a thread per trial draws `taoflow.emulator.surfaces.kpis` for the run's
    spec epoch by epoch and emits the EpochProgress/Finished events LocalLauncher derives from status.json.
    `fail` maps a trial number (from `run.env["TRIAL"]`) to the 0-based epoch at which the job crashes."""

    name = "surface"

    def __init__(self, epoch_seconds: float = 0.0, fail: dict[int, int] | None = None):
        self.epoch_seconds = epoch_seconds
        self.fail = fail or {}

    def submit(self, run: ActionRun) -> Any:
        handle = SimpleNamespace(run=run, events=queue.Queue(), cancelled=threading.Event(), done=threading.Event(),
                                 result=None)
        threading.Thread(target=self._train, args=(handle,), daemon=True).start()
        return handle

    def _train(self, handle: Any) -> None:
        run = handle.run
        train = run.spec["train"]
        epochs = int(train["num_epochs"])
        params = {k: v for k, v in _flat(run.spec).items() if k != "train.num_epochs"}
        crash = self.fail.get(int(run.env.get("TRIAL", -1)))
        status, kpis, ran = "SUCCESS", {}, 0
        for epoch in range(epochs):
            if handle.cancelled.is_set():
                status = "CANCELLED"
                break
            if crash is not None and epoch == crash:
                status = "FAILURE"
                break
            time.sleep(self.epoch_seconds)
            kpis = surfaces.kpis(run.model, params, epoch, epochs, 1234)
            ran += 1
            handle.events.put(EpochProgress(epoch=epoch, max_epoch=epochs - 1, kpi=kpis))
        handle.result = ActionResult(model=run.model, action=run.action, run_key=run.run_key, status=status,
                                     results_uri=run.results_uri, kpis_final=kpis if status == "SUCCESS" else {},
                                     epochs_run=ran, failure_class="program" if status == "FAILURE" else None,
                                     message="RuntimeError: EMULATED crash" if status == "FAILURE" else None)
        handle.done.set()
        handle.events.put(Finished(status))

    def events(self, handle: Any):
        while True:
            event = handle.events.get()
            yield event
            if isinstance(event, Finished):
                return

    def cancel(self, handle: Any) -> None:
        handle.cancelled.set()

    def result(self, handle: Any) -> ActionResult:
        handle.done.wait()
        return handle.result


def _flat(tree: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _surface_sweep(tmp_path: Path, name: str, launcher: SurfaceLauncher, **options: Any) -> SweepResult:
    skill = load_skill("centerpose")
    space = build_space(skill)
    settings = settings_for(skill, **options)
    url = f"sqlite:///{tmp_path / (name + '.db')}"
    study = open_study(settings, space, storage=url, name=name)

    def make_run(overrides: dict[str, Any], number: int) -> ActionRun:
        key = hashlib.sha256(canonical_json(overrides).encode()).hexdigest()[:12]
        return ActionRun(model="centerpose", action="train", spec=expand(overrides), image="emulated",
                         run_key=key, results_uri=f"memory://{key}", env={"TRIAL": str(number)})

    return SweepController(study, space, settings, skill, launcher, make_run, storage_url=url).run()


def test_same_seed_same_sweep(tmp_path) -> None:
    options = {"max_trials": 10, "max_concurrent": 1, "max_epochs": 9, "seed": 11}
    first = _surface_sweep(tmp_path, "a", SurfaceLauncher(), **options)
    again = _surface_sweep(tmp_path, "b", SurfaceLauncher(), **options)
    key = [(r["params"], r["state"], r["value"]) for r in first.trials]
    assert key == [(r["params"], r["state"], r["value"]) for r in again.trials]
    other = _surface_sweep(tmp_path, "c", SurfaceLauncher(), **{**options, "seed": 12})
    assert [r["params"] for r in other.trials] != [r["params"] for r in first.trials]


def test_failed_trials_are_failed_never_best_and_the_budget_is_still_used(tmp_path) -> None:
    launcher = SurfaceLauncher(epoch_seconds=0.002, fail={0: 8, 2: 0})
    result = _surface_sweep(tmp_path, "f", launcher, max_trials=8, max_concurrent=3, max_epochs=9, seed=2,
                            pruner="none")
    rows = {r["number"]: r for r in result.trials}
    assert len(rows) == 8
    assert rows[0]["state"] == "FAIL" and rows[2]["state"] == "FAIL"
    assert "EMULATED crash" in rows[0]["message"]
    assert result.best_number not in (0, 2)
    assert all(r["state"] == "COMPLETE" for n, r in rows.items() if n not in (0, 2))
    assert rows[0]["kpi_per_rung"]  # it reported rungs before failing, and still is not the best
    assert _max_overlap(result.trials) <= 3


if __name__ == "__main__":
    out = sweep(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    print(out.best_number, out.best_value)
