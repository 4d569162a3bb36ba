"""Response surfaces: what an emulated training run reports epoch by epoch (emulator and benchmark data).

- `tao`: one surface per TAO model, over its spec keys, with TAO's metric names (`kpis`) — what the
  emulator's train action reports;
- `curves`: a family of learning-curve shapes taken from published training curves (slow starters,
  plateaus, optima at range edges, ridges, two optima, noisy and minimised metrics), for
  benchmarks/automl.py;
- `catalog`: every surface in the benchmark's plug-in form, `SURFACES = {name: (model, metric,
  direction, fn)}`.
"""

from taoflow.emulator.surfaces.tao import defaults, kpis, metric_names, models

__all__ = ["defaults", "kpis", "metric_names", "models"]
