"""Datasets: format readers shared with the emulator, per-role preflight, and sample data per model."""

from __future__ import annotations

from pathlib import Path

from taoflow.datasets.preflight import preflight_dataset


def write_sample_data(model: str, directory: str | Path) -> list[Path]:
    """Write a small valid dataset for `model`, one folder per dataset role (see sample_data.py)."""
    from taoflow.datasets import sample_data

    return sample_data.write(model, directory)


__all__ = ["preflight_dataset", "write_sample_data"]
