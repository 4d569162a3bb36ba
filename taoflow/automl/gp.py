"""A small Gaussian-process sampler (expected improvement) in numpy, for `--sampler gp` without torch.

Optuna's own GPSampler needs torch, which the controller image does not carry; this one is enough for
the few-dimensional spaces TAO sweeps: parameters are scaled to [0, 1] (log where the distribution is
log), an RBF kernel's length scale is picked by marginal likelihood from a small grid, and the next point
maximises expected improvement over random candidates plus perturbations of the best points. Running
trials are added as "liars" at the current best value, so parallel trials spread out (as TPE's constant
liar does). Random sampling until `n_startup_trials` trials have finished.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

_ERF = np.vectorize(math.erf)


def _encode(value: Any, dist: BaseDistribution) -> float:
    if isinstance(dist, CategoricalDistribution):
        n = len(dist.choices)
        return dist.choices.index(value) / max(n - 1, 1)
    lo, hi, v = float(dist.low), float(dist.high), float(value)
    if getattr(dist, "log", False):
        lo, hi, v = math.log(lo), math.log(hi), math.log(v)
    return 0.0 if hi == lo else (v - lo) / (hi - lo)


def _decode(x: float, dist: BaseDistribution) -> Any:
    x = min(max(float(x), 0.0), 1.0)
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[round(x * (len(dist.choices) - 1))]
    lo, hi = float(dist.low), float(dist.high)
    log = getattr(dist, "log", False)
    value = math.exp(math.log(lo) + x * (math.log(hi) - math.log(lo))) if log else lo + x * (hi - lo)
    if isinstance(dist, IntDistribution):
        step = dist.step or 1
        return int(min(max(round((value - lo) / step) * step + lo, lo), hi))
    if isinstance(dist, FloatDistribution) and dist.step:
        value = round((value - lo) / dist.step) * dist.step + lo
    return float(min(max(value, lo), hi))


def _kernel(a: np.ndarray, b: np.ndarray, length: float) -> np.ndarray:
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.exp(-0.5 * d2 / length**2)


class NumpyGPSampler(optuna.samplers.BaseSampler):
    def __init__(self, seed: int | None = None, n_startup_trials: int = 10, n_candidates: int = 1024):
        self._rng = np.random.RandomState(seed)
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._startup = n_startup_trials
        self._n_candidates = n_candidates

    def reseed_rng(self) -> None:
        self._rng.seed()
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        space = optuna.search_space.intersection_search_space(
            study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
        return {k: d for k, d in sorted(space.items()) if not d.single()}

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if all(k in t.params for k in search_space)]
        if len(done) < self._startup:
            return {}
        keys = list(search_space)
        sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
        X = np.array([[_encode(t.params[k], search_space[k]) for k in keys] for t in done])
        y = np.array([sign * float(t.value) for t in done])
        running = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                   if t.number != trial.number and all(k in t.params for k in search_space)]
        if running:  # constant liar: pretend running trials already scored the best value
            X = np.vstack([X, [[_encode(t.params[k], search_space[k]) for k in keys] for t in running]])
            y = np.concatenate([y, np.full(len(running), y.min())])
        mean, std = y.mean(), y.std() or 1.0
        z = (y - mean) / std
        length, chol, alpha = self._fit(X, z)
        best = z.min()
        top = X[np.argsort(z)[: min(5, len(X))]]
        cands = np.vstack([
            self._rng.rand(self._n_candidates, len(keys)),
            np.clip(top[self._rng.randint(len(top), size=self._n_candidates)]
                    + self._rng.normal(0, 0.05, (self._n_candidates, len(keys))), 0, 1),
        ])
        k_star = _kernel(cands, X, length)
        mu = k_star @ alpha
        v = np.linalg.solve(chol, k_star.T)
        sigma = np.sqrt(np.clip(1.0 - (v**2).sum(0), 1e-12, None))
        gap = best - mu
        u = gap / sigma
        ei = gap * 0.5 * (1 + _ERF(u / math.sqrt(2))) + sigma * np.exp(-0.5 * u**2) / math.sqrt(2 * math.pi)
        choice = cands[int(np.argmax(ei))]
        return {k: _decode(x, search_space[k]) for k, x in zip(keys, choice, strict=True)}

    @staticmethod
    def _fit(X: np.ndarray, z: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """Pick the RBF length scale with the best log marginal likelihood (noise fixed small)."""
        best: tuple[float, float, np.ndarray, np.ndarray] | None = None
        for length in (0.05, 0.1, 0.2, 0.4, 0.8):
            K = _kernel(X, X, length) + 1e-3 * np.eye(len(X))
            try:
                chol = np.linalg.cholesky(K)
            except np.linalg.LinAlgError:
                continue
            alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, z))
            lml = -0.5 * z @ alpha - np.log(np.diag(chol)).sum()
            if best is None or lml > best[0]:
                best = (lml, length, chol, alpha)
        assert best is not None
        return best[1], best[2], best[3]

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)
