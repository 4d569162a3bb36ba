"""A multi-fidelity Gaussian-process sampler in numpy (`--sampler gp`): it learns from every rung.

Why not Optuna's GPSampler: it needs torch, which the controller image does not carry, and it models only
finished trials — under ASHA most trials are pruned, so it would learn from a few. This one models every
value a trial reported (its rung values, and its final value at `max_epochs`) with the training length as
one more input, and picks the next trial by expected improvement *at full training*:

- inputs: each parameter scaled to [0, 1] (log where the distribution is log; a categorical by its index),
  plus `log(epochs) / log(max_epochs)`; outputs standardised, negated when maximising;
- kernel: Matérn 5/2 with one length scale per input (ARD: a parameter that does not matter gets a long
  one), its length scales and noise by marginal likelihood (Adam on the log-likelihood's gradient,
  warm-started from the previous ask, so each ask costs a few dozen small steps);
- acquisition: expected improvement over the best posterior mean at full training among the trials seen,
  over random candidates and perturbations of the five best; running trials are added as "liars" at that
  best value, so parallel trials spread out (as TPE's constant liar does);
- random sampling until `n_startup_trials` trials have reported;
- a bounded model: the `MAX_MODEL_TRIALS` latest and best trials (their rung values), so an ask costs the
  same in a study of 1,000 trials as in one of 60.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

MAX_MODEL_TRIALS = 64  # trials in the model: the 32 latest and the 32 best (see `_model_trials`)
FIT_STEPS = 40  # Adam steps on the marginal likelihood per ask
CANDIDATES = 2000  # random candidates per ask, and as many perturbations of the best trials
_SQRT2 = math.sqrt(2.0)


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


def _erf(x: np.ndarray) -> np.ndarray:
    """erf, vectorised (Abramowitz and Stegun 7.1.26, error below 1.5e-7): numpy has none."""
    sign, x = np.sign(x), np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t
    return sign * (1.0 - poly * np.exp(-x * x))


def _matern(a: np.ndarray, b: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    r = np.sqrt(5.0 * (((a[:, None, :] - b[None, :, :]) / lengths) ** 2).sum(-1))
    return (1.0 + r + r * r / 3.0) * np.exp(-r)


def _neg_lml_gradient(theta: np.ndarray, z_in: np.ndarray, z: np.ndarray) -> np.ndarray | None:
    """Gradient of the negative log marginal likelihood in (log length scales..., log noise)."""
    lengths, noise = np.exp(theta[:-1]), math.exp(theta[-1])
    diff = (z_in[:, None, :] - z_in[None, :, :]) / lengths
    r = np.sqrt(5.0 * (diff**2).sum(-1))
    decay = np.exp(-r)
    k = (1.0 + r + r * r / 3.0) * decay + (noise + 1e-6) * np.eye(len(z))
    try:
        chol = np.linalg.cholesky(k)
    except np.linalg.LinAlgError:
        return None
    inv_chol = np.linalg.solve(chol, np.eye(len(z)))
    k_inv = inv_chol.T @ inv_chol
    alpha = k_inv @ z
    w = np.outer(alpha, alpha) - k_inv  # d(log likelihood)/dK = w / 2
    base = (5.0 / 3.0) * decay * (1.0 + r)  # dK/d(log length_j) = base * diff_j^2
    grad = np.array([0.5 * (w * base * diff[:, :, j] ** 2).sum() for j in range(z_in.shape[1])]
                    + [0.5 * np.trace(w) * noise])
    return -grad


class GPSampler(optuna.samplers.BaseSampler):
    """See the module docstring. `max_epochs` is the sweep's full training (where EI is taken)."""

    def __init__(self, seed: int | None = None, n_startup_trials: int = 8, max_epochs: int = 27):
        self._rng = np.random.RandomState(seed)
        self._random = optuna.samplers.RandomSampler(seed=seed)
        self._startup = n_startup_trials
        self._max_epochs = max(int(max_epochs), 2)
        self._theta: np.ndarray | None = None

    def reseed_rng(self) -> None:
        self._rng.seed()
        self._random.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        for seen in study.get_trials(deepcopy=False):
            if seen.distributions:
                return {k: d for k, d in sorted(seen.distributions.items()) if not d.single()}
        return {}

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        if not search_space:
            return {}
        keys = list(search_space)
        trials = [t for t in study.get_trials(deepcopy=False) if all(k in t.params for k in keys)]
        reported = [t for t in trials if _observations(t, self._max_epochs)]
        if len(reported) < self._startup:
            return {}
        sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
        rows, values = [], []
        for t in _model_trials(reported, sign, self._max_epochs):
            x = [_encode(t.params[k], search_space[k]) for k in keys]
            for epochs, value in _observations(t, self._max_epochs):
                rows.append([*x, math.log(epochs) / math.log(self._max_epochs)])
                values.append(sign * value)
        z_in, y = np.array(rows), np.array(values)
        z = (y - y.mean()) / (y.std() or 1.0)
        running = [[_encode(t.params[k], search_space[k]) for k in keys] + [1.0]
                   for t in trials if t.state == TrialState.RUNNING and t.number != trial.number]
        try:
            choice = self._propose(z_in, z, np.array(running).reshape(-1, len(keys) + 1))
        except np.linalg.LinAlgError:  # a degenerate model (should not happen with the noise floor): sample at random
            return {}
        return {k: _decode(x, search_space[k]) for k, x in zip(keys, choice, strict=True)}

    # ------------------------------------------------------------------ the model
    def _propose(self, z_in: np.ndarray, z: np.ndarray, running: np.ndarray) -> np.ndarray:
        theta = self._fit(z_in, z)
        lengths, noise = np.exp(theta[:-1]), math.exp(theta[-1])
        configs = np.unique(z_in[:, :-1], axis=0)
        full = np.column_stack([configs, np.ones(len(configs))])
        chol, alpha = _posterior(z_in, z, lengths, noise)
        seen_means = _matern(full, z_in, lengths) @ alpha
        best = float(seen_means.min())
        if len(running):  # constant liar: running trials as if they had reached the best value
            z_in = np.vstack([z_in, running])
            z = np.concatenate([z, np.full(len(running), best)])
            chol, alpha = _posterior(z_in, z, lengths, noise)
        dims = configs.shape[1]
        top = configs[np.argsort(seen_means)[:5]]
        nudge = self._rng.normal(0, 0.05, (CANDIDATES, dims)) * (self._rng.rand(CANDIDATES, dims) < 0.5)
        candidates = np.vstack([self._rng.rand(CANDIDATES, dims),
                                np.clip(top[self._rng.randint(len(top), size=CANDIDATES)] + nudge, 0, 1)])
        k_star = _matern(np.column_stack([candidates, np.ones(len(candidates))]), z_in, lengths)
        mean = k_star @ alpha
        v = np.linalg.solve(chol, k_star.T)
        sigma = np.sqrt(np.clip(1.0 - (v**2).sum(0), 1e-12, None))
        gap = best - mean
        u = gap / sigma
        ei = gap * 0.5 * (1.0 + _erf(u / _SQRT2)) + sigma * np.exp(-0.5 * u**2) / math.sqrt(2.0 * math.pi)
        return candidates[int(np.argmax(ei))]

    def _fit(self, z_in: np.ndarray, z: np.ndarray) -> np.ndarray:
        """Length scales and noise by marginal likelihood: Adam, warm-started from the previous ask."""
        dims = z_in.shape[1]
        theta = self._theta if self._theta is not None and len(self._theta) == dims + 1 else \
            np.concatenate([np.full(dims, math.log(0.5)), [math.log(1e-2)]])
        m, v = np.zeros_like(theta), np.zeros_like(theta)
        for step in range(1, FIT_STEPS + 1):
            grad = _neg_lml_gradient(theta, z_in, z)
            if grad is None:
                break
            m = 0.9 * m + 0.1 * grad
            v = 0.999 * v + 0.001 * grad * grad
            theta = theta - 0.05 * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
            theta[:-1] = np.clip(theta[:-1], math.log(0.02), math.log(20.0))
            theta[-1] = np.clip(theta[-1], math.log(1e-4), math.log(0.5))
        self._theta = theta
        return theta


def _posterior(z_in: np.ndarray, z: np.ndarray, lengths: np.ndarray, noise: float) -> tuple[np.ndarray, np.ndarray]:
    k = _matern(z_in, z_in, lengths) + (noise + 1e-6) * np.eye(len(z))
    chol = np.linalg.cholesky(k)
    return chol, np.linalg.solve(chol.T, np.linalg.solve(chol, z))


def _observations(t: FrozenTrial, max_epochs: int) -> list[tuple[int, float]]:
    """(epochs, value) a trial reported: its rung values, and its final value at `max_epochs`."""
    out = [(int(step), float(value)) for step, value in sorted(t.intermediate_values.items())
           if 0 < int(step) < max_epochs and value is not None and math.isfinite(value)]
    if t.state == TrialState.COMPLETE and t.value is not None and math.isfinite(t.value):
        out.append((max_epochs, float(t.value)))
    return out


def _model_trials(trials: list[FrozenTrial], sign: float, max_epochs: int) -> list[FrozenTrial]:
    """The trials the model sees: all of them, or the latest and the best half of `MAX_MODEL_TRIALS` each
    (best: the furthest reported, then the best value there), so a big study costs what a small one does."""
    if len(trials) <= MAX_MODEL_TRIALS:
        return trials
    half = MAX_MODEL_TRIALS // 2
    latest = trials[-half:]

    def rank(t: FrozenTrial) -> tuple[int, float]:
        epochs, value = _observations(t, max_epochs)[-1]
        return (-epochs, sign * value)

    best = sorted(trials[:-half], key=rank)[:half]
    return sorted(best + latest, key=lambda t: t.number)
