"""The sweep controller on real Optuna + SQLite.

Emulator sweeps run every trial as a real emulator process through `LocalLauncher` (≤ max_concurrent
running, pruned jobs stopped at their rung, the best checkpoint handed on, a SIGKILLed controller resumed,
the same seed giving the same sweep). Tests whose point is the controller's logic use `VirtualLauncher`
(taoflow/automl/virtual.py), the in-process launcher benchmarks/automl.py drives: same events, same gates,
no process per trial. Nothing here waits on a timing margin: every wait is for an event (a status line, a
process exit, a row in the study).

Run as a script (`python tests/test_automl_controller.py ROOT DATA TRIALS CONCURRENCY EPOCHS`) it runs one
sweep — the controller process the kill test SIGKILLs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import optuna
import pytest

from taoflow.automl.controller import SweepController, SweepResult
from taoflow.automl.space import build_space
from taoflow.automl.study import default_storage, open_study, settings_for, study_name
from taoflow.automl.virtual import VirtualLauncher, emulator_kpis
from taoflow.dotted import expand
from taoflow.runs import ActionRun, canonical_json
from taoflow.skill import load_skill

optuna.logging.set_verbosity(logging.WARNING)
MODEL = "rtdetr"


# ------------------------------------------------------------------------------------ emulator sweeps

def sweep(root: Path, data_dir: Path, trials: int, concurrency: int, epochs: int, seed: int = 1,
          launcher: Any = None) -> SweepResult:
    """One sweep of rtdetr through the planner — LocalLauncher + emulator unless another launcher is
    given — its study in SQLite beside the store."""
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

    launcher = launcher or LocalLauncher(grace_seconds=3, poll_seconds=0.05)
    return SweepController(study, space, settings, skill, launcher, make_run, store=store, storage_url=url).run()


@pytest.fixture()
def home(monkeypatch, tmp_path):
    """TAOFLOW_HOME per test; emulated epochs as short as they go (the rung gate makes length irrelevant)."""
    monkeypatch.setenv("TAOFLOW_EMULATOR_EPOCH_SECONDS", "0")
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


def _status_lines(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "status.json").read_text().splitlines() if x.strip()]


def _signature(result: SweepResult) -> list[tuple]:
    return [(r["number"], r["params"], r["state"], r["epochs"], r["gpu_epochs"], r["value"]) for r in result.trials]


def test_pruned_trials_stop_at_their_rung_and_the_best_is_handed_on(rtdetr_data, tmp_path, home) -> None:
    """16 trials, 4 at a time, 9 epochs, on the emulator with epochs as short as they go: every pruned trial
    trained exactly up to the rung it was pruned at, and is PRUNED with those epochs."""
    from taoflow import resolver
    from taoflow.store import ArtifactStore

    result = sweep(tmp_path, rtdetr_data, trials=16, concurrency=4, epochs=9)
    rows = result.trials
    assert len(rows) == 16
    assert all(r["submitted_at"] and r["finished_at"] for r in rows)
    assert 2 <= _max_overlap(rows) <= 4
    states = [r["state"] for r in rows]
    assert "PRUNED" in states and "COMPLETE" in states and "FAIL" not in states, states

    pruned = [r for r in rows if r["state"] == "PRUNED"]
    assert _live_processes_reading([str(Path(r["results_uri"]) / "spec.yaml") for r in pruned]) == []
    for r in pruned:
        lines = _status_lines(Path(r["results_uri"]))
        epochs = [x["epoch"] for x in lines if x.get("status") == "RUNNING" and "epoch" in x]
        assert lines[-1]["status"] != "SUCCESS"
        assert max(epochs) + 1 == r["pruned_at_epoch"] == r["epochs"] == r["gpu_epochs"], r
        assert set(r["kpi_per_rung"]) <= {str(e) for e in range(1, r["pruned_at_epoch"] + 1)}

    complete = [r for r in rows if r["state"] == "COMPLETE"]
    assert all(r["epochs"] == 9 for r in complete)
    best = max(complete, key=lambda r: r["value"])
    assert result.best_number == best["number"] and result.best_value == best["value"]
    assert result.best_result is not None and result.best_result.ok
    assert result.best_result.results_uri == result.best_results_uri
    checkpoint = resolver.parent_model(ArtifactStore(str(tmp_path / "store")), result.best_results_uri,
                                       skill=load_skill(MODEL), parent_action="train")
    assert Path(checkpoint).name.startswith("model_epoch_") and Path(checkpoint).exists()
    assert result.gpu_epochs == sum(r["epochs"] for r in rows) < 16 * 9


def test_same_seed_same_sweep_on_the_emulator_and_as_predicted(rtdetr_data, tmp_path, home) -> None:
    """Two emulator sweeps with the same seed give the same trials, prunes and GPU-epochs, and so does
    the virtual-clock replay benchmarks/automl.py uses to predict them."""
    first = sweep(tmp_path / "a", rtdetr_data, trials=10, concurrency=4, epochs=9, seed=5)
    again = sweep(tmp_path / "b", rtdetr_data, trials=10, concurrency=4, epochs=9, seed=5)
    predicted = sweep(tmp_path / "c", rtdetr_data, trials=10, concurrency=4, epochs=9, seed=5,
                      launcher=VirtualLauncher(emulator_kpis))
    assert "PRUNED" in [r["state"] for r in first.trials]
    assert _signature(first) == _signature(again) == _signature(predicted)
    assert first.gpu_epochs == again.gpu_epochs == predicted.gpu_epochs


@pytest.mark.parametrize("jobs_die", [False, True], ids=["jobs-survive", "jobs-die-too"])
def test_killed_controller_resumes_without_rerunning_finished_trials(rtdetr_data, tmp_path, monkeypatch,
                                                                    jobs_die: bool) -> None:
    """SIGKILL the controller process mid-sweep (and, in the second case, its running trials' jobs as a node
    loss would); running the sweep again keeps finished trials, adopts running ones — attaching to live
    jobs (and releasing their rung gates), resuming dead ones from their newest checkpoint — and fills the
    budget."""
    monkeypatch.setenv("TAOFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TAOFLOW_EMULATOR_EPOCH_SECONDS", "0.1")
    env = {**os.environ}
    args = [sys.executable, __file__, str(tmp_path), str(rtdetr_data), "8", "2", "9"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    db = None
    deadline = time.monotonic() + 300  # a hang guard, not a timing margin
    try:
        while time.monotonic() < deadline:  # two finished trials and a running one with a checkpoint
            dbs = list((tmp_path / "store" / "automl" / MODEL).glob("*.db"))
            if dbs:
                db = dbs[0]
                seen = _peek(db)
                if seen is not None and seen[0] >= 2 and _checkpointed(seen[1]):
                    break
            if proc.poll() is not None:
                pytest.fail("the sweep ended before the kill: " + (proc.stderr.read().decode()[-2000:]
                                                                   if proc.stderr else ""))
            time.sleep(0.05)
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
        while _live_processes_reading(specs) and time.monotonic() < deadline:
            time.sleep(0.05)

    result = sweep(tmp_path, rtdetr_data, trials=8, concurrency=2, epochs=9)
    after = {t.number: t for t in optuna.load_study(study_name=name, storage=url).get_trials()}
    assert result.study_name == name
    assert len(after) == 8  # the budget was filled, not restarted
    assert all(t.state.is_finished() for t in after.values())
    for number, t in finished_before.items():  # kept as they were, never submitted again
        assert after[number].state == t.state and after[number].value == t.value
        assert after[number].user_attrs["submitted_at"] == t.user_attrs["submitted_at"]
        folder = Path(t.user_attrs["results_uri"])
        starts = [x for x in (folder / "status.json").read_text().splitlines() if '"Starting Training Loop."' in x]
        assert len(starts) == 1  # one TAO process (TAO writes two STARTED lines per run)
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


# ------------------------------------------------------------------------------------ in-process launcher

def _virtual_sweep(tmp_path: Path, name: str, launcher: VirtualLauncher, model: str = "centerpose",
                   **options: Any) -> tuple[SweepController, SweepResult]:
    skill = load_skill(model)
    space = build_space(skill)
    settings = settings_for(skill, **options)
    url = f"sqlite:///{tmp_path / (name + '.db')}"
    study = open_study(settings, space, storage=url, name=name)

    def make_run(overrides: dict[str, Any], number: int) -> ActionRun:
        key = hashlib.sha256(canonical_json(overrides).encode()).hexdigest()[:12]
        spec = expand({**overrides, "train.seed": 1234})
        return ActionRun(model=model, action="train", spec=spec, image="emulated", run_key=key,
                         results_uri=f"memory://{key}", env={"TRIAL": str(number)})

    controller = SweepController(study, space, settings, skill, launcher, make_run, storage_url=url)
    return controller, controller.run()


def test_same_seed_same_sweep_whatever_the_event_timing(tmp_path) -> None:
    options = {"max_trials": 20, "max_concurrent": 4, "max_epochs": 9, "seed": 11}
    _, first = _virtual_sweep(tmp_path, "a", VirtualLauncher(emulator_kpis), **options)
    _, again = _virtual_sweep(tmp_path, "b", VirtualLauncher(emulator_kpis), **options)
    assert "PRUNED" in [r["state"] for r in first.trials]
    assert _signature(first) == _signature(again)
    _, other = _virtual_sweep(tmp_path, "c", VirtualLauncher(emulator_kpis), **{**options, "seed": 12})
    assert [r["params"] for r in other.trials] != [r["params"] for r in first.trials]


def test_failed_trials_are_failed_never_best_and_the_budget_is_still_used(tmp_path) -> None:
    crash = {0: 9, 2: 1}  # trial number -> the 1-based epoch in which it crashes
    launcher = VirtualLauncher(emulator_kpis, fail_at=lambda run: crash.get(int(run.env["TRIAL"])))
    _, result = _virtual_sweep(tmp_path, "f", launcher, max_trials=8, max_concurrent=3, max_epochs=9, seed=2,
                               pruner="none")
    rows = {r["number"]: r for r in result.trials}
    assert len(rows) == 8
    assert rows[0]["state"] == "FAIL" and rows[2]["state"] == "FAIL"
    assert "VIRTUAL crash" in rows[0]["message"]
    assert result.best_number not in (0, 2)
    assert all(r["state"] == "COMPLETE" for n, r in rows.items() if n not in (0, 2))
    assert rows[0]["kpi_per_rung"] and rows[0]["epochs"] == 8  # it reported rungs before failing
    assert _max_overlap(result.trials) <= 3


def test_events_never_reread_the_study(tmp_path) -> None:
    """The controller's cost per event does not grow with the study: it reads the study's trials once, at
    start, however many trials and epochs follow (benchmarks/automl.py measures the CPU)."""
    reads = []
    real = optuna.Study.get_trials

    def counting(self, *args, **kwargs):
        reads.append(1)
        return real(self, *args, **kwargs)

    optuna.Study.get_trials = counting  # type: ignore[method-assign]
    try:
        _, result = _virtual_sweep(tmp_path, "r", VirtualLauncher(emulator_kpis), max_trials=40, max_concurrent=8,
                                   max_epochs=9, seed=3, sampler="random")
    finally:
        optuna.Study.get_trials = real  # type: ignore[method-assign]
    assert len(result.trials) == 40 and sum(r["epochs"] for r in result.trials) > 40
    assert len(reads) == 1


def test_a_resumed_controller_rebuilds_its_rung_tables_from_the_study(tmp_path) -> None:
    """A second controller on the same study (a bigger budget) decides its rungs against every value the
    study holds, the first controller's included: its rung tables hold every reported rung value."""
    options = {"max_concurrent": 2, "max_epochs": 9, "seed": 4, "pruner": "asha"}
    _, first = _virtual_sweep(tmp_path, "split", VirtualLauncher(emulator_kpis), max_trials=6, **options)
    controller, second = _virtual_sweep(tmp_path, "split", VirtualLauncher(emulator_kpis), max_trials=12, **options)
    assert len(first.trials) == 6 and len(second.trials) == 12
    assert [r["state"] for r in second.trials[:6]] == [r["state"] for r in first.trials]  # kept as they were
    for rung in controller.pruner.decision_rungs(0):
        reported = [r for r in second.trials if str(rung) in r["kpi_per_rung"]]
        assert len(controller.pruner._tables[(0, rung)]) == len(reported) > 6 // 2, rung


def test_an_interrupted_controller_releases_its_gates(tmp_path) -> None:
    """Ctrl-C mid-sweep: the running trials keep running (a rerun adopts them) and must not stay held at a
    rung meanwhile."""
    gates: dict[str, Any] = {}

    class Recording(VirtualLauncher):
        def rung_gate(self, run):
            gates[run.run_key] = super().rung_gate(run)
            return gates[run.run_key]

    skill = load_skill("centerpose")
    space = build_space(skill)
    settings = settings_for(skill, max_trials=8, max_concurrent=2, max_epochs=9, seed=1)
    study = open_study(settings, space, storage=f"sqlite:///{tmp_path / 'i.db'}", name="i")

    def make_run(overrides: dict[str, Any], number: int) -> ActionRun:
        if number == 4:
            raise KeyboardInterrupt
        return ActionRun(model="centerpose", action="train", spec=expand(overrides), image="x", run_key=f"k{number}",
                         results_uri=f"memory://{number}")

    with pytest.raises(KeyboardInterrupt):
        SweepController(study, space, settings, skill, Recording(emulator_kpis), make_run).run()
    running = [t.user_attrs["run_key"] for t in study.get_trials() if t.state == optuna.trial.TrialState.RUNNING
               and "run_key" in t.user_attrs]
    assert running and all(not gates[key].rungs for key in running)  # released
    assert any(gate.rungs for gate in gates.values())  # (finished trials' gates were not touched)


if __name__ == "__main__":
    out = sweep(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
    print(out.best_number, out.best_value)
