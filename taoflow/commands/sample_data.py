"""`taoflow sample-data MODEL DIR`: write a small valid dataset for MODEL, one folder per dataset role, so
`--data train=DIR/train --data eval=DIR/eval` works as is (demo, tests, first steps without real data)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from taoflow.cli import app
from taoflow.datasets import preflight_dataset, write_sample_data


@app.command("sample-data")
def sample_data(
    model: Annotated[str, typer.Argument(help="Model: rtdetr, centerpose, action_recognition, sparse4d, nvpanoptix3d")],
    directory: Annotated[Path, typer.Argument(help="Folder to write DIR/<role>/… into")],
) -> None:
    """Write a small valid dataset for MODEL under DIR (one folder per dataset role)."""
    roles = write_sample_data(model, directory)
    for role_dir in roles:
        summary = preflight_dataset(model, role_dir.name, str(role_dir))
        typer.echo(f"{role_dir.name:<12} {role_dir}  ({summary})")
    flags = " ".join(f"--data {r.name}={r}" for r in roles)
    typer.echo(f"use: {flags}")
