"""The Optuna side of a sweep: settings, sampler, pruner, rungs, storage and the study's durable name.

- Samplers: `auto` (default: `gp` for a space of up to `GP_MAX_PARAMETERS` parameters, else `tpe`), `gp`
  (`taoflow.automl.gp.GPSampler`: a multi-fidelity Gaussian process that learns from every rung value,
  pruned trials included), `tpe` (seeded, one Parzen estimator per parameter, constant liar so parallel
  trials do not all crowd the same spot), `random`, `grid` (ranges become `grid_points` values each).
- Pruners: `asha` (default), `hyperband`, `none`, decided by `pruning.RungPruner` in memory with Optuna's
  rules and the rung check (a rung prunes only while it ranks trials as their ends do). Steps are *epochs
  completed* (TAO's 0-based epoch + 1). Rungs at `min_resource × reduction_factor^k`: a grace period of
  max_epochs // 9 and a factor of 2 (3, 6, 12, 24 for 27 epochs; 1, 2, 4, 8 for 9).
- Why these defaults (benchmarks/automl.py, on the five model surfaces and the learning-curve family of
  taoflow/emulator/surfaces/curves.py, tuned on seeds other than the reported ones): with the rung check,
  ASHA keeps its savings where early ranks hold and stops pruning where curves cross (slow starters,
  plateaus, a loss that falls faster at higher rates — the case Hyperband was the default for on training
  losses before); halving (factor 2) rather than keeping a third loses fewer late bloomers; independent
  TPE beat multivariate TPE on the 14-parameter RT-DETR space (a narrow ridge and a plateau among
  unimportant keys) and tied elsewhere.
- Storage: SQLite beside a local store (`<store>/automl/<model>/<study>.db`), or any SQLAlchemy URL
  (Postgres for a shared controller); both open in optuna-dashboard.
- Study name: `<model>-<hash of the sweep's identity>`; the identity leaves out `max_trials` and
  `max_concurrent`, so running the same sweep again (or with a bigger budget) attaches to the same study.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import optuna

from taoflow.automl.space import SearchSpace
from taoflow.errors import UserError
from taoflow.runs import canonical_json
from taoflow.skill import Skill

SAMPLERS = ("auto", "gp", "tpe", "random", "grid")
GP_MAX_PARAMETERS = 8  # `auto` beyond this: TPE (see the module docstring)
# The study storage URL a deployment's work pool gives its pipelines (a remote store has no SQLite beside it).
STORAGE_ENV = "TAOFLOW_AUTOML_STORAGE"
PRUNERS = ("asha", "hyperband", "none")


@dataclass(frozen=True)
class SweepSettings:
    model: str
    metric: str
    direction: Literal["maximize", "minimize"]
    sampler: str = "auto"
    pruner: str = "asha"
    max_trials: int = 16
    max_concurrent: int = 4
    max_epochs: int = 27
    seed: int = 0
    min_resource: int = 1
    reduction_factor: int = 2
    grid_points: int = 3
    rung_check: bool = True  # a rung prunes only while it ranks trials as their ends do (pruning.py)
    baseline: bool = True  # a fresh study's first trial trains the run's own values (controller.py)

    def check(self) -> SweepSettings:
        problems = []
        if self.sampler not in SAMPLERS:
            problems.append(f"--sampler {self.sampler!r}: choose one of {', '.join(SAMPLERS)}")
        if self.pruner not in PRUNERS:
            problems.append(f"--pruner {self.pruner!r}: choose one of {', '.join(PRUNERS)}")
        if self.direction not in ("maximize", "minimize"):
            problems.append(f"direction {self.direction!r}: maximize or minimize")
        for name in ("max_trials", "max_concurrent", "max_epochs", "min_resource"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name}={getattr(self, name)}: must be at least 1")
        if self.reduction_factor < 2:
            problems.append(f"reduction_factor={self.reduction_factor}: must be at least 2")
        if self.grid_points < 2:
            problems.append(f"grid_points={self.grid_points}: must be at least 2")
        if self.min_resource > self.max_epochs:
            problems.append(f"min_resource={self.min_resource} exceeds max_epochs={self.max_epochs}")
        if problems:
            raise UserError("invalid AutoML settings", problems)
        return self

    def identity(self) -> dict[str, Any]:
        """What makes two sweeps the same study (the budget is not part of it, nor whether a fresh study
        starts with the baseline trial: a study made before it existed is still the same sweep)."""
        data = asdict(self)
        data.pop("max_trials")
        data.pop("max_concurrent")
        data.pop("baseline")
        return data


def default_pruner(metric: str) -> str:
    """`asha` for every metric: the rung check stops it pruning where a metric's early ranks mislead."""
    del metric
    return "asha"


def default_min_resource(max_epochs: int) -> int:
    """The first rung: a grace period of a ninth of the training (3 epochs of 27; see the module docstring)."""
    return max(1, int(max_epochs) // 9)


def settings_for(skill: Skill, **options: Any) -> SweepSettings:
    """Settings with the skill's AutoML metric and direction (options override any field; a pruner or
    min_resource of None means the default for the metric / the epoch budget)."""
    values: dict[str, Any] = {"model": skill.name, "metric": skill.automl.metric,
                              "direction": skill.automl.direction}
    values.update({k: v for k, v in options.items() if v is not None})
    values.setdefault("pruner", default_pruner(values["metric"]))
    values.setdefault("min_resource", default_min_resource(values.get("max_epochs", SweepSettings.max_epochs)))
    return SweepSettings(**values).check()


# ------------------------------------------------------------------------------------------- rungs

def rung_epochs(settings: SweepSettings) -> list[int]:
    """Epoch counts at which ASHA/Hyperband decide (1, 3, 9, 27 by default); always ends at max_epochs."""
    rungs, resource = [], settings.min_resource
    while resource < settings.max_epochs:
        rungs.append(resource)
        resource *= settings.reduction_factor
    rungs.append(settings.max_epochs)
    return rungs


def trial_overrides(skill: Skill, space: SearchSpace, values: Mapping[str, Any],
                    settings: SweepSettings) -> dict[str, Any]:
    """Spec overrides of one trial: the skill's AutoML overrides, the trial's values, the epoch budget and
    checkpoint/validation intervals that divide every rung (a pruning decision needs the metric at the
    rung; a preempted trial resumes from a checkpoint no older than the last rung)."""
    interval = 0
    for rung in rung_epochs(settings):
        interval = math.gcd(interval, rung)
    out: dict[str, Any] = dict(skill.automl.overrides)
    out.update(space.overrides(values))
    out["train.num_epochs"] = settings.max_epochs
    if settings.pruner != "none":
        out["train.checkpoint_interval"] = interval
        out["train.validation_interval"] = interval
    return out


# ------------------------------------------------------------------------------------------- optuna parts

def make_sampler(settings: SweepSettings, space: SearchSpace, *, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
    """The sampler. `seed_offset` (the number of trials already in the study) keeps a reattached sweep from
    replaying the first suggestions of its seed; a fresh sweep uses the seed as given."""
    seed = settings.seed if seed_offset == 0 else _mix(settings.seed, seed_offset)
    startup = max(4, min(10, settings.max_trials // 2))  # Optuna's 10, fewer for small sweeps
    sampler = sampler_for(settings, space)
    if sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=False, constant_liar=True,
                                          n_startup_trials=startup)
    if sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if sampler == "grid":
        return optuna.samplers.GridSampler(space.grid(settings.grid_points), seed=seed)
    from taoflow.automl.gp import GPSampler

    return GPSampler(seed=seed, n_startup_trials=startup, max_epochs=settings.max_epochs)


def sampler_for(settings: SweepSettings, space: SearchSpace) -> str:
    """The sampler `settings.sampler` names; `auto`: the GP on a small space, TPE on a big one."""
    if settings.sampler != "auto":
        return settings.sampler
    return "gp" if len(space.distributions()) <= GP_MAX_PARAMETERS else "tpe"


def _mix(seed: int, offset: int) -> int:
    return int(hashlib.sha256(f"{seed}:{offset}".encode()).hexdigest()[:8], 16)


def make_pruner(settings: SweepSettings) -> optuna.pruners.BasePruner:
    """The study's own pruner: none. `SweepController` decides from in-memory rung tables (pruning.py),
    with the rules of Optuna's SuccessiveHalvingPruner/HyperbandPruner, at a constant cost per decision."""
    del settings
    return optuna.pruners.NopPruner()


def study_name(settings: SweepSettings, space: SearchSpace, base: Mapping[str, Any] | None = None) -> str:
    """`<model>-<hash>` of the settings' identity, the space, and the caller's base (datasets, overrides)."""
    identity = {"settings": settings.identity(), "space": space.describe(), "base": dict(base or {})}
    return f"{settings.model}-{hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:12]}"


def default_storage(store_root: str | Path, model: str, name: str, storage: str | None = None) -> str:
    """The study's storage URL: `storage` (the run's), else `$TAOFLOW_AUTOML_STORAGE` (a deployment's work
    pool sets it), else a SQLite file beside a local store, `<store>/automl/<model>/<study>.db`."""
    explicit = storage or os.environ.get(STORAGE_ENV, "").strip()
    if explicit:
        return explicit
    problem = storage_problem(store_root)
    if problem:
        raise UserError(problem)
    root = str(store_root)
    folder = Path(root.removeprefix("file://")).absolute() / "automl" / model
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / (name + '.db')}"


def storage_problem(store_root: str | Path | None, storage: str | None = None) -> str | None:
    """Why a sweep on this store has nowhere to keep its study (a remote store and no storage URL), else None."""
    root = str(store_root or "")
    if storage or os.environ.get(STORAGE_ENV, "").strip() or "://" not in root or root.startswith("file://"):
        return None
    return (f"the store {root} is remote, so an AutoML study needs a database its controller reaches: pass "
            f"--storage / automl_storage (e.g. postgresql://user@host/optuna) or set {STORAGE_ENV}; "
            "or train directly (--automl off, automl_policy: off)")


def display_url(url: str | None) -> str | None:
    """A storage URL fit for logs and artifacts: a password in it is masked."""
    if not url:
        return url
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a SQLAlchemy URL: say nothing of it but its scheme
        return url.split("://", 1)[0] + "://…"


def open_storage(url: str) -> optuna.storages.BaseStorage:
    if url.startswith("sqlite:"):
        # A waiting writer beats "database is locked" when optuna-dashboard reads the same file.
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})
    return optuna.storages.RDBStorage(url)


def open_study(settings: SweepSettings, space: SearchSpace, *, storage: str, name: str) -> optuna.Study:
    """Create the study or attach to it (same name → same study, its finished trials kept)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the sweep announces itself (report.space_summary)
    backend = open_storage(storage)
    try:
        existing = optuna.load_study(study_name=name, storage=backend)
        offset = len(existing.get_trials(deepcopy=False))
    except KeyError:
        offset = 0
    study = optuna.create_study(
        storage=backend, study_name=name, direction=settings.direction, load_if_exists=True,
        sampler=make_sampler(settings, space, seed_offset=offset), pruner=make_pruner(settings),
    )
    if offset == 0:
        study.set_user_attr("model", settings.model)
        study.set_user_attr("metric", settings.metric)
        study.set_user_attr("settings", asdict(settings))
        study.set_user_attr("space", space.describe())
    return study
