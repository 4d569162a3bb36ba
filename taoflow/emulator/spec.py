"""Loading a spec the way TAO does: YAML, `key=value` overrides, then a strict structured merge.

TAO merges the user's YAML into its ExperimentConfig dataclass with OmegaConf, so unknown keys and wrong
types fail at load with `omegaconf.errors.ConfigKeyError` / `ValidationError` and a `full_key:` line. TAO
Core is not a runtime dependency, so the emulator checks against the JSON schemas generated from those
dataclasses (`skills/<model>/schemas/<action>.schema.json`) and reproduces OmegaConf's messages.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import yaml

from taoflow.dotted import get_dotted, set_dotted

_MISSING = object()


class ConfigError(Exception):
    """An OmegaConf-style load failure; `kind` is the omegaconf exception class name."""

    def __init__(self, kind: str, message: str, full_key: str, object_type: str):
        self.kind = kind
        super().__init__(f"{message}\n    full_key: {full_key}\n    object_type={object_type}")


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Hydra-style `a.b=value` overrides; values are YAML scalars (`10` → int, `true` → bool)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"override {item.split('=')[0]!r} must look like key=value")
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        out[key.strip()] = value
    return out








def load_spec(path: str | Path, overrides: dict[str, Any]) -> dict[str, Any]:
    text = Path(path).read_text(encoding="utf-8")
    spec = yaml.safe_load(text) or {}
    if not isinstance(spec, dict):
        raise TypeError(f"{path}: the spec must be a YAML mapping")
    for key, value in overrides.items():
        set_dotted(spec, key, value)
    return resolve_env_references(spec)


_ENV_REFERENCE = re.compile(r"^\$\{oc\.env:([A-Za-z_][A-Za-z0-9_]*)(?:,(.*))?\}$")


def resolve_env_references(value: Any) -> Any:
    """`${oc.env:VAR}` / `${oc.env:VAR,default}` values as TAO's OmegaConf loader reads them (the built-in
    `oc.env` resolver): the variable's value, else the default. An unset variable without a default stays as
    written (OmegaConf fails only when the key is read)."""
    if isinstance(value, dict):
        return {k: resolve_env_references(v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_env_references(v) for v in value]
    if isinstance(value, str):
        match = _ENV_REFERENCE.match(value)
        if match:
            name, default = match.groups()
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default.strip()
    return value


def schema_path(model: str, action: str) -> Path | None:
    """The generated schema of a TAO action (dataset_convert's under its own or TAO's `convert` name)."""
    env = os.environ.get("TAOFLOW_SKILLS_DIR")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / "skills"
    for name in (action, "convert" if action == "dataset_convert" else "dataset_convert"):
        candidate = root / model / "schemas" / f"{name}.schema.json"
        if candidate.is_file():
            return candidate
    return None


def load_schema(model: str, action: str) -> dict[str, Any] | None:
    path = schema_path(model, action)
    return json.loads(path.read_text(encoding="utf-8")) if path else None


def _class_name(schema: dict[str, Any], key: str) -> str:
    for name in (schema.get("x-tao-class"), schema.get("title")):  # TAO's dataclass name when recorded
        if isinstance(name, str) and name and " " not in name:
            return name
    return "".join(p.capitalize() for p in key.split("_")) + "Config" if key else "ExperimentConfig"


def _types(schema: dict[str, Any]) -> list[str]:
    declared = schema.get("type")
    if isinstance(declared, str):
        types = [declared]
    elif isinstance(declared, list):
        types = list(declared)
    else:
        types = []
    for variant in schema.get("anyOf", []) + schema.get("oneOf", []):
        if isinstance(variant, dict):
            types += _types(variant)
    return types


_BOOL_STRINGS = {"true", "false", "yes", "no", "on", "off", "1", "0", "y", "n"}


def _convertible(value: Any, kind: str) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool) or (isinstance(value, str) and value.lower() in _BOOL_STRINGS) or (
            isinstance(value, int) and value in (0, 1))
    if kind == "integer":
        if isinstance(value, bool):
            return False
        if isinstance(value, int):
            return True
        if isinstance(value, float):
            return value.is_integer()
        if isinstance(value, str):
            try:
                int(value)
                return True
            except ValueError:
                return False
        return False
    if kind == "number":
        if isinstance(value, bool):
            return False
        if isinstance(value, (int, float)):
            return True
        if isinstance(value, str):
            try:
                float(value)
                return True
            except ValueError:
                return False
        return False
    if kind == "string":
        return isinstance(value, (str, int, float, bool))
    if kind == "array":
        return isinstance(value, (list, tuple))
    if kind == "object":
        return isinstance(value, dict)
    return True


_OMEGA_TYPE = {"integer": "Integer", "number": "Float", "boolean": "Boolean", "string": "String"}


def check_against_schema(spec: dict[str, Any], schema: dict[str, Any]) -> None:
    """Raise ConfigError for the first unknown key or unconvertible value, as OmegaConf's merge would."""
    _check_node(spec, schema, "", "")


def _check_node(value: Any, schema: dict[str, Any], full_key: str, name: str) -> None:
    props = schema.get("properties")
    if isinstance(value, dict) and isinstance(props, dict):
        object_type = _class_name(schema, name)
        closed = schema.get("additionalProperties") is False or (
            "additionalProperties" not in schema and props)
        for key, child in value.items():
            child_key = f"{full_key}.{key}" if full_key else str(key)
            if key not in props:
                if closed:
                    raise ConfigError("ConfigKeyError", f"Key '{key}' not in '{object_type}'", child_key,
                                      object_type)
                continue
            _check_value(child, props[key], child_key, str(key), object_type)
        return


def _check_value(value: Any, schema: dict[str, Any], full_key: str, name: str, parent_type: str) -> None:
    if not isinstance(schema, dict):
        return
    types = _types(schema)
    if value is None:
        return  # OmegaConf accepts None for Optional fields and MISSING checks happen on read
    if isinstance(value, str) and value == "???":
        return
    if types and not any(_convertible(value, t) for t in types):
        if any(t in ("object",) for t in types) and not isinstance(value, dict):
            raise ConfigError("ValidationError",
                              f"Invalid type assigned: {type(value).__name__} is not a subclass of "
                              f"{_class_name(schema, name)}. value: {value}", full_key, parent_type)
        if "array" in types:
            raise ConfigError("ValidationError",
                              f"Invalid value assigned: {type(value).__name__} is not a ListConfig, list or "
                              "tuple.", full_key, parent_type)
        target = next((_OMEGA_TYPE[t] for t in types if t in _OMEGA_TYPE), types[0])
        if target == "Boolean":
            message = f"Value '{value}' is not a valid bool (type {type(value).__name__})"
        else:
            message = f"Value '{value}' of type '{type(value).__name__}' could not be converted to {target}"
        raise ConfigError("ValidationError", message, full_key, parent_type)
    # Enums are not checked here: OmegaConf's merge does not enforce TAO's `valid_options` (the entrypoint
    # fails later, or not at all); taoflow's own spec validation reports them before launch.
    if isinstance(value, dict):
        _check_node(value, schema, full_key, name)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            if isinstance(item, dict):
                _check_node(item, schema["items"], f"{full_key}[{i}]", name)


def schema_default(schema: dict[str, Any] | None, key: str) -> Any:
    """The default the schema records for a dotted key (what TAO's dataclass would fill in)."""
    if not schema:
        return _MISSING
    default = schema.get("default")
    if isinstance(default, dict):
        found = get_dotted(default, key, _MISSING)
        if found is not _MISSING:
            return found
    node: Any = schema
    for part in key.split("."):
        props = node.get("properties") if isinstance(node, dict) else None
        if not isinstance(props, dict) or part not in props:
            return _MISSING
        node = props[part]
    return node.get("default", _MISSING) if isinstance(node, dict) else _MISSING


class Spec:
    """The merged spec with TAO's defaults: `spec.get("train.num_epochs", 10)` reads the user's value, else
    the schema's default, else the given fallback."""

    def __init__(self, data: dict[str, Any], schema: dict[str, Any] | None):
        self.data = data
        self.schema = schema

    def get(self, key: str, fallback: Any = None) -> Any:
        value = get_dotted(self.data, key, _MISSING)
        if value is _MISSING:
            value = schema_default(self.schema, key)
        if value == "???":  # OmegaConf's MISSING: fails when read, not at merge
            parent = key.rsplit(".", 1)[0] if "." in key else ""
            node = self.schema or {}
            for part in parent.split(".") if parent else []:
                node = (node.get("properties") or {}).get(part, {}) if isinstance(node, dict) else {}
            raise ConfigError("MissingMandatoryValue", f"Missing mandatory value: {key}", key,
                              _class_name(node if isinstance(node, dict) else {}, parent.rsplit(".", 1)[-1]))
        return fallback if value is _MISSING or value is None else value

    def has(self, key: str) -> bool:
        return get_dotted(self.data, key, _MISSING) not in (_MISSING, None)
