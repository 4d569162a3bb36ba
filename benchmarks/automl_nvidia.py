"""nvidia-tao-automl 7.2.0 as a reference method for benchmarks/automl.py (a benchmark-only dependency:
`pip install nvidia-tao-automl==7.2.0`; never a dependency of tao-flows).

Driven through its ask/tell `AutoML` API with our parameters and bounds (`custom_param_ranges`), one
recommendation at a time as its runner does. `log=True` hands it every log-scaled parameter of our space
(rates, weight decay) as log10 of the value, so it samples rates on a log scale too.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile
from typing import Any

from optuna.distributions import CategoricalDistribution, IntDistribution

from taoflow.automl.space import SearchSpace
from taoflow.spec import load_template


def nvidia_ranges(space: SearchSpace, log: bool) -> dict[str, dict[str, Any]]:
    ranges: dict[str, dict[str, Any]] = {}
    for key, p in space.params.items():
        d = p.distribution
        if isinstance(d, CategoricalDistribution):
            ranges[key] = {"valid_options": list(d.choices)}
        elif log and p.log:
            ranges[key] = {"valid_min": math.log10(d.low), "valid_max": math.log10(d.high)}
        else:
            ranges[key] = {"valid_min": d.low, "valid_max": d.high}
    return ranges


def _coerce(space: SearchSpace, specs: dict[str, Any], log: bool) -> dict[str, Any]:
    """The searched keys of a recommendation, clipped into the space (its samplers can step outside)."""
    out: dict[str, Any] = {}
    for key, p in space.params.items():
        if key not in specs:
            continue
        d, value = p.distribution, specs[key]
        if isinstance(d, CategoricalDistribution):
            out[key] = value
            continue
        value = float(value)
        if log and p.log:
            value = 10.0 ** value
        value = min(max(value, d.low), d.high)
        out[key] = round(value) if isinstance(d, IntDistribution) else value
    return out


def run_nvidia(problem: Any, algorithm: str, log: bool = False, *, max_epochs: int, recommendations: int
               ) -> int | None:
    """GPU-epochs until a recommendation's value is good (`problem.good`), None within `problem.cap`."""
    from tao_automl import AutoML

    template = load_template(problem.skill, "train")
    template.setdefault("train", {})["num_epochs"] = max_epochs
    spent, session = 0, 0
    while spent < problem.cap and session <= 50:
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None  # its state files: keep them off the disk
        with tempfile.TemporaryDirectory(dir=shm) as workspace, contextlib.redirect_stdout(io.StringIO()):
            automl = AutoML(
                workspace, problem.model, template,
                settings={"algorithm": algorithm, "metric": problem.metric, "direction": problem.direction,
                          "automl_max_recommendations": recommendations, "automl_max_epochs": max_epochs,
                          "automl_reduction_factor": 3,
                          # It seeds numpy/random from hash(session_id): make that differ per seed.
                          "session_id": f"bench-{problem.name}-{problem.seed}-{session}"},
                automl_hyperparameters=sorted(problem.space.params),
                custom_param_ranges=nvidia_ranges(problem.space, log),
            )
            idle = 0
            while spent < problem.cap and not automl.is_complete() and idle < 5:
                recs = automl.next_recommendation()
                if not recs:
                    idle += 1
                    continue
                idle = 0
                for rec in recs:
                    epochs = int(rec.specs.get("train.num_epochs") or max_epochs)
                    start = int(rec.resume_from_epoch or 0)
                    values = _coerce(problem.space, rec.specs, log)
                    flat = problem.spec(problem.space.overrides(values))
                    value = problem.value(flat, epochs)
                    spent += max(epochs - start, 0)
                    if problem.good(value) and spent <= problem.cap:
                        return spent
                    automl.report_result(rec.id, value)
                    if spent >= problem.cap:
                        break
        session += 1
    return None
