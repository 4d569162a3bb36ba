"""Secrets (`encryption_key`): the `key` handoff's reference, and how the value reaches TAO.

How a secret (`encryption_key`) reaches TAO without a command line or a file holding its value.

The spec TAO reads names the variable — `${oc.env:VAR}`, an OmegaConf env interpolation that TAO's Hydra
loader resolves from the process environment when the key is read — and the value travels in the process
environment (local), the container environment (docker) or a Secret-backed env var (Kubernetes). `ps` shows
every user's argv; the environment is readable only by the process's own user.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from taoflow.errors import UserError
from taoflow.runs import ActionRun

DEFAULT_KEY_ENV = "TAO_ENCRYPTION_KEY"

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


# ------------------------------------------------------------------------------ the `key` handoff
SecretSource = Callable[[str], "str | None"]


def env_secret_source(name: str) -> str | None:
    """The default secret source: an environment variable."""
    return os.environ.get(name) or None


@dataclass(frozen=True)
class SecretRef:
    """A reference to a secret, safe to log, store and put in ActionRun: it never holds the value.

    `env` is the environment variable the launcher expands at launch (`ActionRun.secret_overrides` maps a
    spec key to it); `name` is what the source knows the secret as (the env var itself, or e.g. a Prefect
    Secret block name); `source` says which source that is."""

    env: str
    name: str
    source: str = "env"

    def override_for(self, spec_key: str) -> dict[str, str]:
        """The `ActionRun.secret_overrides` entry for `spec_key`."""
        return {spec_key: self.env}

    def reveal(self, secret_source: SecretSource | None = None) -> str:
        """The value, for the launcher to put into the process environment (never into a spec or log)."""
        value = (secret_source or env_secret_source)(self.name)
        if not value:
            raise UserError(f"the encryption key secret {self.name!r} ({self.source}) is not set")
        return value

    def __str__(self) -> str:
        return f"${{{self.env}}}"


def key(
    name: str = DEFAULT_KEY_ENV,
    *,
    secret_source: SecretSource | None = None,
    source_label: str | None = None,
    env: str | None = None,
) -> SecretRef:
    """A reference to the encryption key, checked to exist in its source but never carrying its value.

    Default: the environment variable `name`. With `secret_source` (a callable name → value, e.g. one that
    loads a Prefect Secret block — the engine never imports Prefect), `name` is the source's name and the
    launcher receives the value in the environment variable `env` (default TAO_ENCRYPTION_KEY)."""
    source = secret_source or env_secret_source
    label = source_label or ("env" if secret_source is None else getattr(secret_source, "__name__", "source"))
    if not source(name):
        hint = f"set the environment variable {name}" if secret_source is None else f"create the secret {name!r}"
        raise UserError(f"encryption_key: the secret {name!r} ({label}) is not set; {hint}")
    return SecretRef(env=env or (name if secret_source is None else DEFAULT_KEY_ENV), name=name, source=label)
