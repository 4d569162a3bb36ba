"""The train action policy: whether a pipeline's train step is an AutoML sweep or one direct train run.

NVIDIA's notes for the five models ("Train Action Policy") make every one of them AutoML-enabled at the model
layer: a train step goes through an AutoML sweep by default (`automl_policy: on`, which the CenterPose and
Sparse4D notes call `auto` — the same thing), and `automl_policy: off` trains directly for that run only
(the per-run choice never changes the model's metadata). The sweep needs the model's train schema and spec
template (here `skills/<model>/schemas/train.schema.json` and `skills/<model>/templates/train.yaml`, NVIDIA's
`schemas/train.schema.json` and `references/spec_template_train.yaml`); without them a model trains directly
and says that AutoML is enabled but not runnable until schemas are generated.

The policy in force (`on`: a sweep, `off`: direct) is part of the train step's run key (planner.prepare_run),
so a model trained one way never answers a run asked the other way, and everything downstream follows.
No Optuna here: the planner, the dry run and the CLI's preflight read this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from taoflow.errors import UserError
from taoflow.skill import Skill

PolicyName = Literal["on", "auto", "off"]
POLICIES: tuple[str, ...] = ("on", "auto", "off")
# The sweep budget when a run names none: on the emulator, with the demo's 6 epochs, 8 trials 4 at a time
# take about 11.5 s (the AutoML author's measurement), so `taoflow demo` stays quick; `--trials`,
# `--concurrency` (automl_trials, automl_concurrency) change it.
DEFAULT_TRIALS = 8
DEFAULT_CONCURRENCY = 4


@dataclass(frozen=True)
class TrainPolicy:
    """How one run trains. `asked` is the policy as asked (or the skill's default when the run named none),
    `sweep` whether train runs as an AutoML sweep, `warning` why AutoML cannot run although it was asked."""

    model: str
    asked: str
    from_skill: bool
    sweep: bool
    warning: str | None = None

    @property
    def in_force(self) -> str:
        """`on` (a sweep) or `off` (one train run): what the run key records."""
        return "on" if self.sweep else "off"

    @property
    def notice(self) -> str | None:
        """The warning as the plan, the board and the model card say it (None: nothing to warn of)."""
        return f"{self.warning}; train runs directly" if self.warning else None

    @property
    def source(self) -> str:
        return f"the {self.model} skill's default" if self.from_skill else "this run's choice"

    def describe(self, trials: int | None = None, concurrency: int | None = None) -> str:
        """One line for the plan, the board and the model card, e.g. `train: AutoML sweep of 8 trials, 4 at a
        time (automl_policy on, the rtdetr skill's default)`."""
        asked = f"automl_policy {self.asked}, {self.source}"
        if self.sweep:
            budget = f" of {trials} trials, {concurrency} at a time" if trials and concurrency else ""
            return f"train: AutoML sweep{budget} ({asked})"
        if self.warning:
            return f"train: one train run ({asked}, but AutoML cannot run)"
        return f"train: one train run ({asked})"

    @property
    def hint(self) -> str | None:
        """How to switch for one run (None when there is nothing to switch)."""
        if self.sweep:
            return "`--automl off` (automl_policy: off) trains directly for one run"
        if self.asked == "off":
            return "`--automl on` trains through an AutoML sweep"
        return None


def not_runnable(skill: Skill) -> str | None:
    """Why the model's AutoML cannot run (its train schema or template is missing), else None."""
    from taoflow.spec import template_path
    from taoflow.specschema import schema_path

    if "train" not in skill.actions:
        return None
    missing = [what for what, path in (("schemas/train.schema.json", schema_path(skill, "train")),
                                       ("templates/train.yaml", template_path(skill, "train"))) if path is None]
    if not missing:
        return None
    return (f"AutoML is enabled but not runnable for {skill.name} until schemas are generated "
            f"(skills/{skill.name}/{' and '.join(missing)} missing; scripts/generate_schemas.py writes them)")


def check_policy(asked: str | None) -> str | None:
    if asked is not None and asked not in POLICIES:
        raise UserError(f"--automl / automl_policy {asked!r}: choose on, auto (the same as on) or off")
    return asked


def resolve_policy(skill: Skill, asked: str | None) -> TrainPolicy:
    """The policy in force for a run of `skill` that asked for `asked` (None: the skill's default)."""
    check_policy(asked)
    from_skill = asked is None
    policy = skill.automl.policy if from_skill else asked
    if policy == "off" or not skill.automl.enabled or "train" not in skill.actions:
        return TrainPolicy(skill.name, policy, from_skill, sweep=False)
    warning = not_runnable(skill)
    return TrainPolicy(skill.name, policy, from_skill, sweep=warning is None, warning=warning)


def sweep_problems(skill: Skill, store_root: str | None, *, parameters: list[str] | tuple[str, ...] = (),
                   space: str = "default", storage: str | None = None) -> list[str]:
    """What stops a sweep before it starts: a search space that does not build (a bad `--param`), or a
    study with nowhere to live (a remote store without a storage URL). For preflight, on the CPU."""
    import os

    from taoflow.automl.space import build_space
    from taoflow.automl.study import storage_problem

    problems: list[str] = []
    try:
        build_space(skill, list(parameters), base=space)
    except UserError as exc:
        problems += [f"AutoML: {p}" for p in exc.problems or [str(exc)]]
    problem = storage_problem(store_root or os.environ.get("TAOFLOW_STORE"), storage)
    if problem:
        problems.append(f"AutoML: {problem}")
    return problems


def check_sweep(skill: Skill, store_root: str | None, **options: object) -> None:
    """`sweep_problems` as one UserError (nothing has started yet)."""
    problems = sweep_problems(skill, store_root, **options)  # type: ignore[arg-type]
    if problems:
        raise UserError(f"the {skill.name} AutoML sweep cannot start; nothing was started", problems)
