"""AutoML efficiency: GPU-epochs each method spends to come within 1 % of the best value a 200-trial random
search finds, on response surfaces — the five models' emulator surfaces and a family of learning-curve
shapes (taoflow/emulator/surfaces/catalog.py), or your own (`--surfaces-from FILE.py`).

Methods
- ours: the real `SweepController` — the code `taoflow tune` runs — with its defaults (settings_for), 4
  trials at a time, driven by `VirtualLauncher`: each trial reports the surface's value epoch by epoch on a
  virtual clock (no sleeping), gated at its rungs as the emulator is.
- ours-no-baseline: the same without the baseline trial (a fresh study's first trial trains the model's
  default values — what a direct train would train): the search alone. On the RT-DETR-space surfaces
  NVIDIA's defaults beat the reference, so there `ours` is the baseline trial's win, not the search's.
- random: the same controller with Optuna's RandomSampler and no pruning.
- nv-<algorithm>: nvidia-tao-automl 7.2.0 (bayesian, hyperband, bohb; asha with `--methods all`: it is the
  slowest to run and was never the best) through its ask/tell `AutoML`
  API, with our parameters and bounds (`custom_param_ranges`), one recommendation at a time as its runner
  does: as it behaves (its own sampling: linear over each range). A recommendation trains
  `train.num_epochs` epochs; with `resume_from_epoch` (a promotion) it resumes and costs the difference.
- nv-<algorithm>-log: the same, with every log-scaled parameter of our space (rates, weight decay) handed to
  it as log10 of the value, so it samples rates on a log scale too — the win must not rest on its linear
  sampling.

Accounting, the same for every method: GPU-epochs actually trained (pruned trials included) until a value
reported at a rung (3, 9, 27 epochs) or at the end of a trial is within 1 % of the reference. The 4-wide
controller runs count 4 GPUs × the virtual clock at that report (every GPU busy since the start);
nvidia-tao-automl counts its epochs in the order it runs them. The cap is the same for every method
(`--cap-trials` full trials × 27 epochs, 50 by default: nvidia-tao-automl's bayesian algorithm refits a
Gaussian process with restarts at every recommendation, and a bigger cap breaks the 10-minute limit on two
cores). A method that does not get there within the cap counts the cap — a lower bound of its real cost, so
the cap only ever flatters the method that hits it, random search most of all (`--cap-trials 100 --methods
ours,random` shows how much). The reference is a 200-trial random search with another seed; seeds also vary
the surfaces' noise (and the family's optima).

Also printed: the controller's CPU per trial-epoch with 32 and 1,000 trials (SQLite study, 8 at a time,
9 epochs, the random sampler so that only the controller counts), and the default sampler's CPU per ask
in a study of 32 and of 1,000 trials.

Install (benchmark-only reference; never a dependency of tao-flows):

    pip install nvidia-tao-automl==7.2.0

Run (about 10 minutes on 2 CPU cores):

    python benchmarks/automl.py [--surfaces-from FILE.py] [--surface NAME ...] [--seeds 5]
                                [--methods ours,random,nv-bayesian,...] [--jobs 2] [--skip-cpu]
    python benchmarks/automl.py --predict-tune rtdetr --trials 12 --concurrency 4 --max-epochs 9 --seed 0 \
        [--set dataset.num_classes=5 ...]   # the GPU-epochs a `taoflow tune` on the emulator will train

`FILE.py` defines `SURFACES = {name: (model, metric, direction, fn)}` with `fn(params, epoch, seed) -> float`
the metric after `epoch` epochs (1-based) of a trial whose spec values are `params` (the model's train
defaults overlaid with the trial's values, dotted keys); `model` names the search space searched.
The last line: `TOTAL ours/random=<x> ours/nvidia-best=<y> worst-surface ours/random=<z>`.
"""

from __future__ import annotations

import os
import sys

# nvidia-tao-automl seeds numpy/random from hash(session_id), which Python salts per process: pin the
# hash seed so the table is reproducible (the session id carries the benchmark seed).
if __name__ == "__main__" and os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, *sys.argv])

# One BLAS thread: the GP fits inside nvidia-tao-automl are tiny, and thread contention on a shared 2-core
# machine made each L-BFGS step ~100x slower.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import importlib.util
import logging
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optuna
from automl_cpu import cpu_figures
from automl_nvidia import run_nvidia

from taoflow.automl.controller import SweepController
from taoflow.automl.space import SearchSpace, build_space
from taoflow.automl.study import make_pruner, make_sampler, settings_for, trial_overrides
from taoflow.automl.virtual import VirtualLauncher, emulator_kpis
from taoflow.dotted import expand, flatten
from taoflow.runs import ActionRun
from taoflow.skill import load_skill
from taoflow.spec import load_template

CATALOG = Path(__file__).resolve().parents[1] / "taoflow" / "emulator" / "surfaces" / "catalog.py"
NVIDIA = ["bayesian", "hyperband", "bohb", "asha"]
MAX_EPOCHS = 27
REFERENCE_TRIALS = 200
CONCURRENCY = 4
CAP_TRIALS = 50  # the budget cap of every method, in full trials (× MAX_EPOCHS GPU-epochs): see the docstring
Surface = tuple[str, str, str, Callable[[dict[str, Any], int, int], float]]


# ------------------------------------------------------------------------------------------------ problems

def fail(message: str) -> None:
    """One `error:` line and exit 2 (a bad surfaces file, an unknown surface or method)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def load_surfaces(path: str | Path) -> dict[str, Surface]:
    if not Path(path).is_file():
        fail(f"--surfaces-from {path}: no such file; give a .py file defining SURFACES")
    spec = importlib.util.spec_from_file_location("automl_surfaces", path)
    if spec is None or spec.loader is None:
        fail(f"cannot load surfaces from {path}; give a .py file defining SURFACES")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    surfaces = getattr(module, "SURFACES", None)
    if not isinstance(surfaces, dict) or not surfaces:
        fail(f"{path} defines no SURFACES = {{name: (model, metric, direction, fn)}}")
    from taoflow.skill import skill_names

    for name, entry in surfaces.items():
        if not (isinstance(entry, tuple) and len(entry) == 4 and callable(entry[3])
                and entry[2] in ("maximize", "minimize")):
            fail(f"{path}: SURFACES[{name!r}] must be (model, metric, 'maximize'|'minimize', fn)")
        if entry[0] not in skill_names():
            fail(f"{path}: SURFACES[{name!r}] names model {entry[0]!r}; its search space comes from one of "
                 f"{', '.join(skill_names())}")
    return surfaces


class Problem:
    """One (surface, seed): the search space, the trial specs, the reference and the 1 % target."""

    def __init__(self, name: str, surface: Surface, seed: int, cap: int):
        self.name, self.seed, self.cap = name, seed, cap
        self.model, self.metric, self.direction, self.fn = surface
        self.skill = load_skill(self.model)
        self.space: SearchSpace = build_space(self.skill)
        self.template = flatten(load_template(self.skill, "train"))
        self.settings = self.sweep_settings()
        self.reference = self._reference()
        tol = 0.01 * abs(self.reference)
        self.target = self.reference - tol if self.maximize else self.reference + tol

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    def sweep_settings(self, **options: Any):
        """`taoflow tune`'s defaults for this surface's metric, 27 epochs, 4 at a time."""
        return settings_for(self.skill, metric=self.metric, direction=self.direction, max_epochs=MAX_EPOCHS,
                            max_concurrent=CONCURRENCY, max_trials=100_000, seed=self.seed, **options)

    def spec(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """A trial's spec values: the model's train defaults overlaid with the trial's overrides."""
        return {**self.template, **overrides}

    def value(self, flat: dict[str, Any], epochs: int) -> float:
        return float(self.fn(flat, epochs, self.seed))

    def good(self, value: float) -> bool:
        return value >= self.target if self.maximize else value <= self.target

    def _reference(self) -> float:
        sampler = optuna.samplers.RandomSampler(seed=10_000 + self.seed)
        study = optuna.create_study(direction=self.direction, sampler=sampler)
        for _ in range(REFERENCE_TRIALS):
            trial = study.ask(self.space.distributions())
            flat = self.spec(trial_overrides(self.skill, self.space, trial.params, self.settings))
            study.tell(trial, self.value(flat, MAX_EPOCHS))
        return float(study.best_value)


# ------------------------------------------------------------------------------------------------ controller

class FirstHit:
    """`stop_when` for a controller run: finds the first report within 1 % on the virtual clock, cheaply
    (finished rows are read once), and stops once nothing earlier can come or the cap is spent."""

    def __init__(self, problem: Problem, concurrency: int):
        self.problem = problem
        self.limit = problem.cap // concurrency  # the virtual clock at which the cap is spent
        self.concurrency = concurrency
        self.hit: int | None = None  # virtual clock of the first good report
        self._open = 0

    def __call__(self, controller: SweepController) -> bool:
        rows = controller.rows()
        while self._open < len(rows) and rows[self._open]["state"] in ("COMPLETE", "PRUNED", "FAIL"):
            self._scan(rows[self._open])
            self._open += 1
        for row in rows[self._open:]:
            self._scan(row)
        decided = controller.clock - 1  # every report up to here is in (see SweepController's ordering)
        return (self.hit is not None and self.hit <= decided) or decided >= self.limit

    def _scan(self, row: dict[str, Any]) -> None:
        start = row.get("clock_start")
        if start is None:
            return
        for epochs, value in row["kpi_per_rung"].items():
            when = start + int(epochs)
            if self.problem.good(value) and (self.hit is None or when < self.hit):
                self.hit = when

    def cost(self) -> int | None:
        if self.hit is None or self.hit > self.limit:
            return None
        return self.hit * self.concurrency


def surface_launcher(problem: Problem) -> VirtualLauncher:
    cache: dict[str, dict[str, Any]] = {}

    def kpis(run: ActionRun, epochs: int) -> dict[str, float]:
        flat = cache.get(run.run_key)
        if flat is None:
            flat = cache[run.run_key] = flatten(run.spec)
        return {problem.metric: problem.value(flat, epochs)}

    return VirtualLauncher(kpis)


def run_controller(problem: Problem, **options: Any) -> int | None:
    """GPU-epochs the real controller spends to the first good report (None: not within the cap)."""
    settings = problem.sweep_settings(**options)
    study = optuna.create_study(direction=settings.direction, sampler=make_sampler(settings, problem.space),
                                pruner=make_pruner(settings))

    def make_run(overrides: dict[str, Any], number: int) -> ActionRun:
        return ActionRun(model=problem.model, action="train", spec=expand(problem.spec(overrides)), image="virtual",
                         run_key=f"trial-{number}", results_uri=f"virtual://{problem.name}/{number}")

    meter = FirstHit(problem, settings.max_concurrent)
    SweepController(study, problem.space, settings, problem.skill, surface_launcher(problem), make_run,
                    stop_when=meter).run()
    return meter.cost()


def run_ours(problem: Problem) -> int | None:
    return run_controller(problem)


def run_ours_no_baseline(problem: Problem) -> int | None:
    return run_controller(problem, baseline=False)


def run_random(problem: Problem) -> int | None:
    return run_controller(problem, sampler="random", pruner="none", baseline=False)


# ------------------------------------------------------------------------------------------------ runs

def method_table(names: list[str] | None) -> dict[str, Callable[[Problem], int | None]]:
    """The methods to run: `names`, or the default set (every method but nv-asha*), or `all`."""
    methods: dict[str, Callable[[Problem], int | None]] = {"ours": run_ours, "ours-no-baseline": run_ours_no_baseline,
                                                            "random": run_random}
    try:
        import tao_automl  # noqa: F401
    except ImportError:
        if names is None or any(n.startswith("nv-") for n in names):
            print("nvidia-tao-automl is not installed (pip install nvidia-tao-automl==7.2.0); running without it")
    else:
        for algorithm in NVIDIA:
            methods[f"nv-{algorithm}"] = lambda p, a=algorithm: run_nvidia(
                p, a, max_epochs=MAX_EPOCHS, recommendations=REFERENCE_TRIALS)
            methods[f"nv-{algorithm}-log"] = lambda p, a=algorithm: run_nvidia(
                p, a, log=True, max_epochs=MAX_EPOCHS, recommendations=REFERENCE_TRIALS)
    if names is None:  # nv-asha is the slowest and never the best: `--methods all` adds it
        return {n: m for n, m in methods.items() if not n.startswith("nv-asha")}
    if names == ["all"]:
        return methods
    unknown = [n for n in names if n not in methods]
    if unknown:
        fail(f"unknown or unavailable method(s) {', '.join(unknown)}; choose from "
                         f"{', '.join(methods)}")
    return {n: methods[n] for n in names}


def solve(job: tuple[str, str, int, int, list[str]]) -> tuple[str, int, float, dict[str, int | None],
                                                                  dict[str, float]]:
    """One (surface, seed) for every method, in a worker process."""
    path, name, seed, cap, names = job
    _quiet()
    surfaces = load_surfaces(path)
    methods = method_table(names)
    problem = Problem(name, surfaces[name], seed, cap)
    hits, seconds = {}, {}
    for method in names:
        began = time.process_time()
        hits[method] = methods[method](problem)
        seconds[method] = time.process_time() - began
    return name, seed, problem.reference, hits, seconds


def _quiet() -> None:
    optuna.logging.set_verbosity(logging.ERROR)
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")  # sklearn's GP convergence chatter inside nvidia-tao-automl


def _cost(value: int | None, cap: int) -> int:
    return value if value is not None else cap


def _cell(values: list[int | None], cap: int) -> str:
    reached = [v for v in values if v is not None]
    if not reached:
        return f">{cap}"
    median = statistics.median(_cost(v, cap) for v in values)
    return f"{median:.0f}" + (f"*{len(values) - len(reached)}" if len(reached) < len(values) else "")


def print_tables(table: dict[str, dict[str, list[int | None]]], surfaces: dict[str, Surface], names: list[str],
                 cap: int, seeds: int) -> None:
    print(f"\nGPU-epochs to within 1% of a {REFERENCE_TRIALS}-trial random search's best (median over {seeds} seeds;"
          f" sum = all seeds; cap {cap} = {cap // MAX_EPOCHS} trials x {MAX_EPOCHS} epochs; *N: N seeds hit the cap,"
          f" counted at it)")
    for name in table:
        model, metric, direction, _ = surfaces[name]
        random_sum = sum(_cost(v, cap) for v in table[name]["random"]) if "random" in table[name] else None
        print(f"\n{name}  ({model} space, {metric} {direction[:3]})")
        print(f"  {'method':<18}{'median':>10}{'sum':>8}{'reached':>9}{'vs random':>11}")
        for method in names:
            values = table[name][method]
            total = sum(_cost(v, cap) for v in values)
            ratio = f"{total / random_sum:.2f}" if random_sum else "-"
            print(f"  {method:<18}{_cell(values, cap):>10}{total:>8}{sum(v is not None for v in values):>6}/{seeds}"
                  f"{ratio:>11}")


def totals_line(table: dict[str, dict[str, list[int | None]]], names: list[str], cap: int) -> str:
    """`TOTAL ours/random=<x> ours/nvidia-best=<y> worst-surface ours/random=<z>` (n/a: a method not run)."""
    totals = {m: sum(_cost(v, cap) for name in table for v in table[name][m]) for m in names}
    nv = {m: t for m, t in totals.items() if m.startswith("nv-")}
    ours, rnd = totals.get("ours"), totals.get("random")
    best = min(nv, key=nv.get) if nv else None
    if best:
        print(f"best nvidia-tao-automl method: {best} ({nv[best]} GPU-epochs in all; ours {ours}, random {rnd})")
    plain = totals.get("ours-no-baseline")
    if plain is not None and rnd:
        print(f"without the baseline trial: ours-no-baseline/random={plain / rnd:.2f}"
              + (f" ours-no-baseline/nvidia-best={plain / nv[best]:.2f}" if best else ""))
    worst = "n/a"
    if ours is not None and rnd is not None:
        ratios = {n: sum(_cost(v, cap) for v in table[n]["ours"]) / sum(_cost(v, cap) for v in table[n]["random"])
                  for n in table}
        worst = f"{max(ratios.values()):.2f}"
    return (f"TOTAL ours/random={ours / rnd:.2f}" if ours is not None and rnd is not None else "TOTAL ours/random=n/a") \
        + (f" ours/nvidia-best={ours / nv[best]:.2f}" if ours is not None and best else " ours/nvidia-best=n/a") \
        + f" worst-surface ours/random={worst}"


# ------------------------------------------------------------------------------------------------ predict

def predict_tune(args: argparse.Namespace) -> None:
    """The sweep `taoflow tune MODEL --trials N --concurrency C --max-epochs E --seed S` runs on the emulator,
    replayed on the virtual clock with the emulator's own KPIs: trials, prunes and GPU-epochs."""
    from taoflow.automl.sweep import SweepOptions, run_sweep
    from taoflow.datasets import write_sample_data
    from taoflow.dotted import parse_assignment
    from taoflow.planner import PipelineRequest
    from taoflow.store import ArtifactStore

    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data"
        write_sample_data(args.predict_tune, data)
        overrides: dict[str, dict[str, Any]] = {}
        for item in args.set:
            key, value = parse_assignment(item)
            overrides.setdefault("*", {})[key] = value
        request = PipelineRequest(model=args.predict_tune, data={p.name: str(p) for p in sorted(data.iterdir())},
                                  overrides=overrides, store=str(Path(folder) / "store"), emulate=True)
        store = ArtifactStore(request.store)
        options = SweepOptions(max_trials=args.trials, max_concurrent=args.concurrency, max_epochs=args.max_epochs,
                               seed=args.seed, parameters=list(args.param))
        result = run_sweep(load_skill(args.predict_tune), request, store, VirtualLauncher(emulator_kpis), options)
    for row in result.trials:
        rungs = " ".join(f"{k}:{v:.4f}" for k, v in row["kpi_per_rung"].items())
        print(f"  trial {row['number']:>3} {row['state']:<9} epochs {row['epochs']:>3}  starts at clock "
              f"{row['clock_start']:>4}  {result.metric} at rungs {rungs}")
    print(f"predicted: {result.gpu_epochs} GPU-epochs, {sum(r['state'] == 'PRUNED' for r in result.trials)} pruned, "
          f"best trial {result.best_number} {result.metric}={result.best_value}")


# ------------------------------------------------------------------------------------------------ main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--surfaces-from", default=str(CATALOG), help="a .py file defining SURFACES")
    parser.add_argument("--surface", action="append", default=[], help="only this surface (repeatable)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--methods", default=None,
                        help="comma-separated, e.g. ours,random,nv-hyperband-log; `all` adds nv-asha and nv-asha-log")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (one (surface, seed) each)")
    parser.add_argument("--cap-trials", type=int, default=CAP_TRIALS, help="budget cap in full trials")
    parser.add_argument("--skip-cpu", action="store_true", help="skip the controller CPU measurement")
    parser.add_argument("--predict-tune", metavar="MODEL", help="predict a `taoflow tune` on the emulator")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-epochs", type=int, default=9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], help="KEY=VALUE spec override (as tune --set)")
    parser.add_argument("--param", action="append", default=[], help="KEY=LOW:HIGH[:log] (as tune --param)")
    args = parser.parse_args()
    _quiet()
    if args.predict_tune:
        predict_tune(args)
        return

    began = time.time()
    surfaces = load_surfaces(args.surfaces_from)
    selected = args.surface or list(surfaces)
    missing = [s for s in selected if s not in surfaces]
    if missing:
        fail(f"no surface {', '.join(missing)} in {args.surfaces_from}; known: {', '.join(surfaces)}")
    requested = [m.strip() for m in args.methods.split(",")] if args.methods else None
    names = list(method_table(requested))
    cap = args.cap_trials * MAX_EPOCHS
    table = {name: {m: [None] * args.seeds for m in names} for name in selected}
    seconds = {m: 0.0 for m in names}
    jobs = [(args.surfaces_from, name, seed, cap, names) for name in selected for seed in range(args.seeds)]
    load = os.getloadavg()[0]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        cpu_job = None if args.skip_cpu else pool.submit(cpu_figures)  # thread CPU time: load does not bend it
        for name, seed, reference, hits, cpu in pool.map(solve, jobs):
            for method in names:
                table[name][method][seed] = hits[method]
                seconds[method] += cpu[method]
            print(f"  {name} seed {seed}: reference {reference:.4f}; "
                  + ", ".join(f"{m}={hits[m]}" for m in names), flush=True)
    print_tables(table, surfaces, names, cap, args.seeds)
    print("\nCPU seconds per method (all problems): " + ", ".join(f"{m} {s:.1f}" for m, s in seconds.items()))
    if cpu_job is not None:
        print("\n" + cpu_job.result())
    print(f"\nwall time {time.time() - began:.0f} s; load average at start {load:.1f}, at end {os.getloadavg()[0]:.1f} "
          f"({os.cpu_count()} CPUs)")
    print(totals_line(table, names, cap))


if __name__ == "__main__":
    main()
