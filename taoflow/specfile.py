"""Reading spec files the way TAO does: OmegaConf's YAML rules and `${...}` interpolations.

TAO loads a spec with Hydra/OmegaConf (omegaconf 2.3.0, the version nvidia-tao-core 7.3.0 pins), not with
PyYAML's YAML 1.1 rules: `1e-4` is a float (PyYAML reads a string), `2025-01-01` stays a string (PyYAML reads a
date), a duplicate key is an error, and a string holding `${...}` is an interpolation resolved when TAO reads
the key. Everything in tao-flows that reads a spec (spec validate, spec render --overrides, the pipeline
preflight, the emulator) reads it through this module, so all of them see what TAO sees.

Interpolations: `${a.b}` (another key of the spec, else TAO's default for it), `${..sibling}` and
`${oc.env:VAR}` / `${oc.env:VAR,default}` are resolved as OmegaConf resolves them. Two resolvers exist only
inside TAO's container and are left for run time: `eval` (registered by TAO's hydra_runner,
tao_pytorch_backend:nvidia_tao_pytorch/core/hydra/hydra_runner.py:30) and Hydra's `hydra:`; so is `oc.env` of a
variable that is not set here (the encryption key arrives as `${oc.env:TAO_ENCRYPTION_KEY}` and is set only in
the container).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from taoflow.errors import UserError

MISSING_VALUE = "???"  # OmegaConf's MISSING: a value TAO requires, failing only when it is read
# NVIDIA's tutorial specs mark values to fill in with '??' (tao_tutorials:
# notebooks/tao_launcher_starter_kit/action_recognition_net/specs/experiment_rgb_3d_finetune.yaml)
PLACEHOLDER = "??"
RUNTIME_RESOLVERS = ("eval", "hydra")  # registered only inside TAO's container (see the module docstring)
_SIMPLE_REF = re.compile(r"^\$\{(\.*)([A-Za-z_][\w\-]*(?:\.[A-Za-z_][\w\-]*|\[\d+\])*)\}$")
_SIMPLE_ENV = re.compile(r"^\$\{oc\.env:([A-Za-z_][A-Za-z0-9_]*)\}$")
_RESOLVER = re.compile(r"\$\{\s*([A-Za-z_][\w.]*)\s*:")
_NOT_FOUND = object()


def _omegaconf_loader() -> Any:
    """OmegaConf's own YAML loader (SafeLoader + its float rule, no timestamps, duplicate keys refused).

    omegaconf is pinned to 2.3.0 (TAO Core's pin), so its loader is taken rather than copied."""
    from omegaconf._utils import get_yaml_loader

    return get_yaml_loader()


def parse_yaml(text: str, where: str) -> Any:
    """YAML text as OmegaConf reads it; a syntax error is a UserError naming `where`."""
    try:
        return yaml.load(text, Loader=_omegaconf_loader())
    except yaml.YAMLError as exc:
        raise UserError(f"{where} is not valid YAML: {exc}") from None


def load_mapping(path: str | Path, what: str = "spec file", holding: str = "TAO sections") -> dict[str, Any]:
    """A YAML file that must hold a mapping (an empty file is an empty one), read as TAO reads it."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read {what} {file}: {exc.strerror or exc}") from None
    data = parse_yaml(text, f"{what} {file}")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{what} {file} must hold a YAML mapping of {holding}, not {type(data).__name__}")
    return data


def parse_value(raw: str) -> Any:
    """A `KEY=VALUE` override value as TAO's Hydra reads it: a YAML scalar or flow value with OmegaConf's
    rules (`1e-4` float, `[1, 2]`, `{a: 1}`, `null`); text that is not YAML stays text."""
    text = raw.strip()
    if text == "":
        return ""
    try:
        return yaml.load(text, Loader=_omegaconf_loader())
    except yaml.YAMLError:
        return raw


# ------------------------------------------------------------------ values
def is_interpolation(value: Any) -> bool:
    """OmegaConf's test: any string holding `${` is an interpolation (resolved when read)."""
    return isinstance(value, str) and "${" in value


def iter_interpolations(tree: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(dotted key, interpolation string) for every interpolation in a spec, lists included."""
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            yield from iter_interpolations(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from iter_interpolations(value, f"{prefix}[{i}]")
    elif is_interpolation(tree):
        yield prefix, tree


def resolvers_used(value: str) -> list[str]:
    """Names of the resolvers an interpolation calls (`oc.env`, `eval`, ...)."""
    return _RESOLVER.findall(value)


# ------------------------------------------------------------------ resolution
class Unresolved(Exception):
    """An interpolation that cannot be resolved now. `kind` says why:

    - `missing`: it points at a value still `???` (fine until TAO reads it; the target's type is known);
    - `runtime`: it needs something only the container has (an unset `oc.env` variable, `eval`, `hydra:`);
    - `dangling`: it points at a key neither the spec nor TAO's defaults have (TAO fails when it reads it);
    - `error`: anything else OmegaConf refuses (bad syntax, an unknown resolver, a loop)."""

    def __init__(self, kind: str, message: str, target: str | None = None):
        super().__init__(message)
        self.kind = kind
        self.target = target


@dataclass
class Resolver:
    """Resolves a spec's interpolations against the spec itself, then TAO's defaults (`default_of(key)`
    returns a key's default or raises KeyError), with `env` for `oc.env`."""

    spec: Mapping[str, Any]
    default_of: Callable[[str], Any] | None = None
    env: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        self._env = os.environ if self.env is None else self.env
        self._config: Any = None

    def resolve(self, key: str, value: str) -> Any:
        """The value `value` (found at dotted `key`) resolves to; raises Unresolved."""
        return self._resolve(key, value, depth=0)

    def _resolve(self, key: str, value: str, depth: int) -> Any:
        if depth > 20:
            raise Unresolved("error", f"interpolation loop through {key}")
        env = _SIMPLE_ENV.match(value)
        if env:
            name = env.group(1)
            if name in self._env:
                return self._env[name]
            raise Unresolved("runtime", f"environment variable {name} is not set here (TAO reads it at run time)")
        ref = _SIMPLE_REF.match(value)
        if ref:
            target = _absolute(key, ref.group(1), ref.group(2))
            found = self.lookup(target)
            if found is _NOT_FOUND:
                raise Unresolved("dangling", f"{value} points at {target}, which neither the spec nor TAO's "
                                 "defaults have", target)
            if found == MISSING_VALUE:
                raise Unresolved("missing", f"{value} points at {target}, which is still ??? (mandatory)", target)
            if is_interpolation(found):
                return self._resolve(target, found, depth + 1)
            return found
        return self._resolve_with_omegaconf(key, value)

    def lookup(self, dotted: str) -> Any:
        """The spec's value at `dotted` (list indexes as `[i]`), else TAO's default, else _NOT_FOUND."""
        node: Any = self.spec
        for part in _parts(dotted):
            if isinstance(part, int):
                if not isinstance(node, list) or part >= len(node):
                    node = _NOT_FOUND
                    break
                node = node[part]
            elif isinstance(node, Mapping) and part in node:
                node = node[part]
            else:
                node = _NOT_FOUND
                break
        if node is not _NOT_FOUND:
            return node
        if self.default_of is None:
            return _NOT_FOUND
        try:
            return self.default_of(dotted)
        except KeyError:
            return _NOT_FOUND

    def _resolve_with_omegaconf(self, key: str, value: str) -> Any:
        """Anything but a plain reference or `oc.env` (string interpolation, defaults, nested, oc.* resolvers)
        goes through OmegaConf itself, on a copy of the spec with the defaults of the keys it names."""
        from omegaconf import OmegaConf
        from omegaconf import errors as oc_errors

        names = [n for n in resolvers_used(value) if n.split(".")[0] in RUNTIME_RESOLVERS]
        if names:
            raise Unresolved("runtime", f"{value} uses {names[0]}:, which TAO resolves inside its container")
        try:
            cfg = self._omegaconf_config(value)
            OmegaConf.update(cfg, key, value, force_add=True)
            resolved = OmegaConf.select(cfg, key, throw_on_missing=True)
            if OmegaConf.is_config(resolved):
                resolved = OmegaConf.to_container(resolved, resolve=True)
            return resolved
        except oc_errors.InterpolationToMissingValueError as exc:
            raise Unresolved("missing", f"{value} points at a value that is still ???: {_first_line(exc)}") from None
        except oc_errors.InterpolationKeyError as exc:
            raise Unresolved("dangling", f"{value}: {_first_line(exc)}") from None
        except oc_errors.UnsupportedInterpolationType as exc:
            raise Unresolved("error", f"{value}: {_first_line(exc)}") from None
        except Exception as exc:  # OmegaConf's grammar and resolver errors
            message = _first_line(exc)
            if "Environment variable" in message and "not found" in message:
                raise Unresolved("runtime", f"{value}: {message} here (TAO reads it at run time)") from None
            raise Unresolved("error", f"{value}: {message}") from None

    def _omegaconf_config(self, value: str) -> Any:
        from omegaconf import OmegaConf

        if self._config is None:
            data = _plain_copy(self.spec)
            self._config = OmegaConf.create(data)
        for target in re.findall(r"\$\{([A-Za-z_][\w\-.\[\]]*)\}", value):
            if OmegaConf.select(self._config, target, default=_NOT_FOUND) is _NOT_FOUND:
                found = self.lookup(target)
                if found is not _NOT_FOUND:
                    OmegaConf.update(self._config, target, found, force_add=True)
        return self._config


def resolve_all(spec: dict[str, Any], default_of: Callable[[str], Any] | None = None,
                env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A copy of `spec` with every interpolation replaced by its value, as TAO reads them at run time;
    Unresolved for the first one that cannot be resolved."""
    resolver = Resolver(spec, default_of, env)
    out = _plain_copy(spec)
    for key, value in list(iter_interpolations(spec)):
        set_path(out, key, resolver.resolve(key, value))
    return out


# ------------------------------------------------------------------ dotted paths with list indexes
def _parts(dotted: str) -> list[str | int]:
    parts: list[str | int] = []
    for piece in dotted.split("."):
        name, *indexes = re.split(r"\[(\d+)\]", piece)
        if name:
            parts.append(name)
        parts += [int(i) for i in indexes if i != ""]
    return parts


def _absolute(key: str, dots: str, target: str) -> str:
    """OmegaConf's relative interpolation: `${.x}` is a sibling of `key`, each further dot one level up."""
    if not dots:
        return target
    parent = key.split(".")[: -len(dots)] if len(dots) <= key.count(".") + 1 else []
    return ".".join([*parent, target])


def set_path(tree: Any, dotted: str, value: Any) -> None:
    """Set a dotted key with list indexes (`a.b[0].c`) in place."""
    parts = _parts(dotted)
    node = tree
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value


def drop_path(tree: Any, dotted: str) -> None:
    """Remove a dotted key with list indexes, when it is a key of a mapping."""
    parts = _parts(dotted)
    node = tree
    for part in parts[:-1]:
        node = node[part]
    if isinstance(node, dict):
        node.pop(parts[-1], None)


def _plain_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_copy(v) for v in value]
    return value


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
