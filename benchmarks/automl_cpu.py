"""The controller's CPU figures for benchmarks/automl.py: CPU per trial-epoch with 32 and 1,000 trials (a
SQLite study as `taoflow tune` keeps it, ASHA, 8 at a time, 9 epochs, the random sampler so that only the
controller counts), and the default sampler's CPU per ask in studies of those sizes."""

from __future__ import annotations

import tempfile
import time
from typing import Any

import optuna

from taoflow.automl.controller import SweepController
from taoflow.automl.space import build_space
from taoflow.automl.study import make_pruner, make_sampler, settings_for
from taoflow.automl.virtual import VirtualLauncher, emulator_kpis
from taoflow.dotted import expand, flatten
from taoflow.runs import ActionRun
from taoflow.skill import load_skill
from taoflow.spec import load_template


def controller_cpu(trials: int, concurrency: int = 8, epochs: int = 9) -> tuple[float, int]:
    """(controller CPU per trial-epoch, trial-epochs) of one sweep of `trials` trials on the RT-DETR emulator
    surface, its study in SQLite as `taoflow tune` keeps it, ASHA pruning. The random sampler keeps the
    sampler's own cost out of it (`sampler_cpu` measures that): this is the controller's cost per event."""
    skill = load_skill("rtdetr")
    space = build_space(skill)
    settings = settings_for(skill, max_trials=trials, max_concurrent=concurrency, max_epochs=epochs, seed=0,
                            sampler="random")
    template = flatten(load_template(skill, "train"))
    with tempfile.TemporaryDirectory() as folder:
        study = optuna.create_study(storage=f"sqlite:///{folder}/cpu.db", direction=settings.direction,
                                    sampler=make_sampler(settings, space), pruner=make_pruner(settings))

        def make_run(overrides: dict[str, Any], number: int) -> ActionRun:
            return ActionRun(model="rtdetr", action="train", spec=expand({**template, **overrides}), image="virtual",
                             run_key=f"cpu-{number}", results_uri=f"virtual://cpu/{number}")

        controller = SweepController(study, space, settings, skill, VirtualLauncher(emulator_kpis), make_run)
        began = time.thread_time()
        result = controller.run()
        total = time.thread_time() - began
    trial_epochs = sum(int(r["epochs"]) for r in result.trials)
    return total / trial_epochs, trial_epochs


def cpu_figures() -> str:
    """The CPU section of the report (run in a worker while the tables are computed)."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    lines = ["controller CPU per trial-epoch (rtdetr surface, SQLite study, ASHA, 8 at a time, 9 epochs; "
             "random sampler, so only the controller counts):"]
    for trials in (32, 1000):
        per_epoch, trial_epochs = controller_cpu(trials)
        lines.append(f"  {trials:>5} trials: {per_epoch * 1000:.2f} ms per trial-epoch, "
                     f"{per_epoch * trial_epochs / trials * 1000:.1f} ms per trial ({trial_epochs / trials:.1f} "
                     "epochs per trial: a bigger study prunes more, so fewer epochs share each trial's start)")
    lines.append("default sampler, CPU per ask (once per trial): TPE on the 14 RT-DETR parameters (it fits every "
                 "finished trial): " + ", ".join(f"{n} trials {sampler_cpu(n, 'rtdetr') * 1000:.1f} ms" for n in (32, 1000))
                 + "; the GP on the 2 CenterPose parameters (it models at most 64 trials): "
                 + ", ".join(f"{n} trials {sampler_cpu(n, 'centerpose') * 1000:.1f} ms" for n in (32, 1000)))
    return "\n".join(lines)


def sampler_cpu(trials: int, model: str, asks: int = 10) -> float:
    """CPU seconds of one ask of the default sampler on `model`'s space (`auto`: TPE on RT-DETR's 14
    parameters, the GP on CenterPose's 2), in a study that already holds `trials` finished trials (in memory:
    the sampler's own work, not the storage's)."""
    skill = load_skill(model)
    space = build_space(skill)
    settings = settings_for(skill, max_trials=trials + asks, seed=0)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    distributions = dict(sorted(space.distributions().items()))
    for number in range(trials):
        trial = study.ask(distributions)
        study.tell(trial, float(number % 97))
    study.sampler = make_sampler(settings, space)
    began = time.thread_time()
    for _ in range(asks):
        study.tell(study.ask(distributions), 1.0)
    return (time.thread_time() - began) / asks
