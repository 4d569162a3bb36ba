"""What a sweep prints: the values the best trial trained with (after clamps) as a `--set` line that
`taoflow run` reads back to the same values, the search space's origin, and a trials table that fits an
80-column terminal."""

from __future__ import annotations

import hashlib
import io
import shlex
from typing import Any

import pytest
from rich.console import Console

from flows.cli import parse_sets
from taoflow.automl.controller import SweepController
from taoflow.automl.report import best_summary, set_line, space_summary, trials_table
from taoflow.automl.space import build_space
from taoflow.automl.study import make_pruner, make_sampler, settings_for
from taoflow.automl.virtual import VirtualLauncher, emulator_kpis
from taoflow.dotted import expand
from taoflow.errors import UserError
from taoflow.runs import ActionRun, canonical_json
from taoflow.skill import load_skill


def _sweep(params: list[str], trials: int = 10) -> list[dict[str, Any]]:
    import optuna

    skill = load_skill("rtdetr")
    space = build_space(skill, params)
    settings = settings_for(skill, max_trials=trials, max_concurrent=4, max_epochs=9, seed=2)
    study = optuna.create_study(direction=settings.direction, sampler=make_sampler(settings, space),
                                pruner=make_pruner(settings))

    def make_run(overrides: dict[str, Any], number: int) -> ActionRun:
        key = hashlib.sha256(canonical_json(overrides).encode()).hexdigest()[:12]
        return ActionRun(model="rtdetr", action="train", spec=expand(overrides), image="x", run_key=key,
                         results_uri=f"memory://{key}")

    return SweepController(study, space, settings, skill, VirtualLauncher(emulator_kpis), make_run).run().trials


def test_the_best_trial_is_printed_with_the_values_it_trained_with() -> None:
    """RT-DETR's num_select may not exceed num_queries (x-tao-depends-on): the sampler proposes values above
    it, the spec gets the clamped value, and the printed --set line carries what the spec had."""
    rows = _sweep(["model.num_queries=10:40"])
    clamped = [r for r in rows if r["params"]["model.num_select"] > r["trained_with"]["model.num_select"]]
    assert clamped, "no trial was clamped: the test shows nothing"
    for row in rows:
        assert row["trained_with"]["model.num_select"] <= row["trained_with"]["model.num_queries"]
        assert set(row["trained_with"]) == set(row["params"])

    text = best_summary("rtdetr", rows)
    best = max((r for r in rows if r["state"] == "COMPLETE"), key=lambda r: r["value"])
    line = text.splitlines()[2].strip()
    assert line == set_line(best["trained_with"])
    items = shlex.split(line)
    assert items[::2] == ["--set"] * len(best["trained_with"])
    read_back = parse_sets(items[1::2], list(load_skill("rtdetr").actions))
    assert read_back == {"train": best["trained_with"]}  # `taoflow run ... <line>` trains with these values
    assert f"best trial {best['number']}: val_mAP = " in text and "GPU-epochs trained in all" in text


def test_param_says_whether_it_replaces_or_extends_and_space_none_makes_it_explicit() -> None:
    extended = build_space("rtdetr", ["train.optim.lr=1e-5:1e-3:log", "train.optim.warmup_steps=0:2000"])
    assert len(extended.params) == 15 and extended.replaced == ["train.optim.lr"]
    assert extended.added == ["train.optim.warmup_steps"]
    text = space_summary(extended)
    assert "replaced the range of train.optim.lr" in text and "added train.optim.warmup_steps" in text
    assert "--param extends the default space" in text

    alone = build_space("rtdetr", ["train.optim.lr=1e-5:1e-3:log"], base="none")
    assert list(alone.params) == ["train.optim.lr"]
    assert "only the --param ranges" in space_summary(alone)
    with pytest.raises(UserError, match="--space none searches only --param ranges"):
        build_space("rtdetr", [], base="none")
    with pytest.raises(UserError, match="--space 'all'"):
        build_space("rtdetr", [], base="all")


def test_the_trials_table_fits_80_columns() -> None:
    rows = _sweep([], trials=40)
    rows[3] = {**rows[3], "state": "RUNNING", "epochs": 4, "value": None}
    rows[-2] = {**rows[-2], "state": "FAIL", "value": None}  # the latest trials are shown
    for width in (80, 200):  # a wider terminal gets the same 80 columns
        out = io.StringIO()
        Console(file=out, width=width, color_system=None).print(trials_table("rtdetr", rows))
        lines = out.getvalue().splitlines()
        assert max(len(line) for line in lines) <= 80, max(lines, key=len)
        assert "run 4/9" in out.getvalue() and "pruned@" in out.getvalue() and "failed" in out.getvalue()
        assert "more trial(s) not shown" in out.getvalue()
        assert len(lines) < 40
