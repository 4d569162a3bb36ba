"""Launchers run one ActionRun somewhere. `get_launcher` picks one by name; the Prefect work-pool launcher
lives in `tasks/` because it needs Prefect."""

from __future__ import annotations

from typing import Any

from taoflow.errors import UserError
from taoflow.launchers.base import Launcher

ENGINE_LAUNCHERS = ("local", "docker", "kubernetes")


def get_launcher(name: str, **options: Any) -> Launcher:
    if name == "local":
        from taoflow.launchers.local import LocalLauncher

        return LocalLauncher(**options)
    if name == "docker":
        from taoflow.launchers.docker import DockerLauncher

        return DockerLauncher(**options)
    if name == "kubernetes":
        from taoflow.launchers.kubernetes import KubernetesLauncher

        return KubernetesLauncher(**options)
    raise UserError(f"unknown launcher {name!r}; choose one of {', '.join(ENGINE_LAUNCHERS)} or workpool")
