"""How a secret (`encryption_key`) reaches TAO without a command line or a file holding its value.

The spec TAO reads names the variable — `${oc.env:VAR}`, an OmegaConf env interpolation that TAO's Hydra
loader resolves from the process environment when the key is read — and the value travels in the process
environment (local), the container environment (docker) or a Secret-backed env var (Kubernetes). `ps` shows
every user's argv; the environment is readable only by the process's own user.
"""

from __future__ import annotations

import os
import re

from taoflow.errors import UserError
from taoflow.runs import ActionRun

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def env_reference(var: str) -> str:
    """`${oc.env:VAR}` (OmegaConf's built-in `oc.env` resolver; tests/test_secrets.py checks it with OmegaConf)."""
    if not ENV_NAME.match(var):
        raise UserError(f"{var!r} is not an environment variable name (secret variables must match "
                        f"{ENV_NAME.pattern})")
    return "${oc.env:" + var + "}"


def secret_environment(run: ActionRun) -> dict[str, str]:
    """The secret variables the run names (`secret_overrides`), with their values, from the run's env or
    this process's; a variable that is not set is left out (TAO's key then keeps its default)."""
    out = {}
    for var in run.secret_overrides.values():
        value = run.env.get(var) if var in run.env else os.environ.get(var)
        if value:
            out[var] = value
    return out
