"""Spec builder: template ⊕ fixed values ⊕ data sources ⊕ handoffs ⊕ user overrides → TAO-shaped dict.

Every layer names its fields with dotted keys; the result is the nested YAML TAO reads. The skill says
where each dataset role's files go (`data_sources`), the caller supplies handoff values (resolved
elsewhere) and user overrides (a YAML file first, then `--set KEY=VALUE` items). URIs are joined with
'/' so `s3://` URIs keep their scheme (never os.path).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from taoflow.dotted import get_dotted, parse_assignments, set_dotted
from taoflow.errors import UserError
from taoflow.skill import Action, DataSource, Skill
from taoflow.specfile import load_mapping
from taoflow.specschema import load_schema

MISSING_VALUE = "???"


def join_uri(base: str, relative: str) -> str:
    """`s3://b/train` + `images` → `s3://b/train/images`; an empty relative path gives the base itself."""
    if not relative:
        return base.rstrip("/") if base.rstrip("/") else base
    return base.rstrip("/") + "/" + relative.lstrip("/")


def template_path(skill: Skill, action: str) -> Path | None:
    """`skills/<model>/templates/<action>.yaml` (or TAO's action name), None when not generated yet."""
    folder = skill.directory / "templates"
    for name in (action, skill.action(action).tao_action):
        candidate = folder / f"{name}.yaml"
        if candidate.is_file():
            return candidate
    return None


@lru_cache(maxsize=256)
def _read_template(path: str, mtime: float) -> dict[str, Any]:
    return load_mapping(path, "spec template", "TAO sections")


def load_template(skill: Skill, action: str) -> dict[str, Any]:
    """A fresh copy of the action's template ({} until the templates exist)."""
    path = template_path(skill, action)
    if path is None:
        return {}
    return copy.deepcopy(_read_template(str(path), path.stat().st_mtime))


def load_yaml_mapping(path: str | Path, what: str, holding: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping, read as TAO reads it (taoflow.specfile); `what` names it in errors."""
    return load_mapping(path, what, holding)


def load_overrides_file(path: str | Path) -> dict[str, Any]:
    """A YAML mapping of overrides (nested sections and/or dotted keys)."""
    return load_yaml_mapping(path, "overrides file", "spec keys")


def apply_overrides(
    spec: dict[str, Any], overrides: Mapping[str, Any], prefix: str = "", sections: frozenset[str] | None = None
) -> None:
    """Apply overrides in place. A dotted key names the field it replaces (`dataset.label_map={...}` replaces
    the whole map); a nested mapping under a plain key merges key by key into a TAO section (`sections`:
    keys with named sub-keys in the schema; None = every mapping), and replaces a free-form map."""
    for key, value in overrides.items():
        if not isinstance(key, str):
            raise UserError(f"override key {key!r} must be a string")
        dotted = f"{prefix}{key}"
        is_section = sections is None or dotted in sections
        if "." not in key and isinstance(value, Mapping) and value and is_section \
                and isinstance(get_dotted(spec, dotted), dict):
            apply_overrides(spec, value, dotted + ".", sections)
        else:
            set_dotted(spec, dotted, copy.deepcopy(value))


def _normalise_overrides(overrides: Mapping[str, Any] | list[str] | None) -> dict[str, Any]:
    if overrides is None:
        return {}
    if isinstance(overrides, list):
        return parse_assignments(overrides)
    return dict(overrides)


def _run_role(skill: Skill, action_name: str, action: Action, data: Mapping[str, str], role: str | None) -> str | None:
    """The role of a per-role run (Sparse4D convert): the given one, else the first supplied one."""
    if not action.per_role:
        if role is not None:
            raise UserError(f"{skill.name} {action_name} does not run per dataset role (got role {role!r})")
        return None
    if role is not None:
        if role not in action.per_role:
            raise UserError(
                f"{skill.name} {action_name} runs per role for {', '.join(action.per_role)}; not for {role!r}"
            )
        return role
    for candidate in action.per_role:
        if candidate in data:
            return candidate
    raise UserError(f"{skill.name} {action_name} needs one of the datasets {', '.join(action.per_role)} (--data ROLE=URI)")


def _upstream_uri(skill: Skill, ds: DataSource, role: str, upstream: Mapping[str, str]) -> str | None:
    assert ds.from_action is not None
    exact = upstream.get(f"{ds.from_action}:{role}")
    if exact:
        return exact
    if not skill.actions[ds.from_action].per_role:
        return upstream.get(ds.from_action)
    return None


def data_source_value(
    skill: Skill, ds: DataSource, *, data: Mapping[str, str], upstream: Mapping[str, str], run_role: str | None
) -> tuple[bool, Any, str]:
    """(found, value, what is missing) for one data source."""
    roles = [run_role] if run_role else [ds.role, *ds.fallback]
    chosen = next((r for r in roles if r in data), None)
    if chosen is None:
        return False, None, f"dataset role {' or '.join(roles)} (--data {roles[0]}=URI)"
    path = ds.fallback_path if (ds.fallback_path is not None and chosen != ds.role and not run_role) else ds.path
    if ds.from_action:
        base = _upstream_uri(skill, ds, chosen, upstream)
        if base is None:
            return False, None, (
                f"the results of {ds.from_action} for the {chosen} dataset "
                f"(--upstream {ds.from_action}:{chosen}=URI)"
            )
    else:
        base = data[chosen]
    if ds.fields:
        value: Any = {field: join_uri(base, rel) for field, rel in ds.fields.items()}
    else:
        value = join_uri(base, path)
    if ds.is_list:
        value = [value]
    return True, value, ""


def build_spec(
    skill: Skill,
    action: str,
    *,
    data: Mapping[str, str] | None = None,
    handoffs: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | list[str] | None = None,
    overrides_file: str | Path | None = None,
    upstream: Mapping[str, str] | None = None,
    role: str | None = None,
) -> dict[str, Any]:
    """The action's spec: template ⊕ skill values ⊕ data sources ⊕ handoffs ⊕ per-role overrides ⊕
    overrides file ⊕ `overrides` (dotted or nested dict, or `KEY=VALUE` strings).

    Missing required dataset roles or upstream results are one UserError listing all of them."""
    act = skill.action(action)
    data = dict(data or {})
    upstream = dict(upstream or {})
    unknown_roles = [r for r in data if r not in ("train", "eval", "inference", "calibration")]
    if unknown_roles:
        raise UserError(
            f"unknown dataset role(s) {', '.join(unknown_roles)}; roles are train, eval, inference, calibration"
        )
    run_role = _run_role(skill, action, act, data, role)

    spec = load_template(skill, action)
    for key, value in act.values.items():
        set_dotted(spec, key, copy.deepcopy(value))

    file_overrides = load_overrides_file(overrides_file) if overrides_file is not None else {}
    user_overrides = _normalise_overrides(overrides)
    # A value the user gives for a data source's key satisfies it (an anchor_init.npy or ann_file from
    # elsewhere needs no --data or --upstream).
    given = _given_keys(handoffs or {}) | _given_keys(file_overrides) | _given_keys(user_overrides)
    missing: list[str] = []
    for ds in act.data_sources:
        found, value, need = data_source_value(skill, ds, data=data, upstream=upstream, run_role=run_role)
        if found:
            set_dotted(spec, ds.key, value)
        elif ds.required and not _is_given(ds.key, given):
            missing.append(f"{ds.key} needs {need}, or a value of its own (--set {ds.key}=...)")
    if missing:
        raise UserError(f"{skill.name} {action}: inputs are missing", missing)

    for key, value in (handoffs or {}).items():
        set_dotted(spec, key, copy.deepcopy(value))
    compiled = load_schema(skill, action)
    sections = compiled.sections if compiled else None
    if run_role and act.per_role:
        apply_overrides(spec, act.per_role.get(run_role) or {}, sections=sections)
    apply_overrides(spec, file_overrides, sections=sections)
    apply_overrides(spec, user_overrides, sections=sections)
    return spec


def _given_keys(overrides: Mapping[str, Any], prefix: str = "") -> set[str]:
    """Every dotted key an overrides mapping sets (nested mappings spelled out, their parents too)."""
    out: set[str] = set()
    for key, value in overrides.items():
        dotted = f"{prefix}{key}"
        out.add(dotted)
        if isinstance(value, Mapping):
            out |= _given_keys(value, dotted + ".")
    return out


def _is_given(key: str, given: set[str]) -> bool:
    """`key`, or a mapping above it, is set by the user."""
    parts = key.split(".")
    return any(".".join(parts[:i]) in given for i in range(1, len(parts) + 1))


def dump_spec_yaml(spec: Mapping[str, Any]) -> str:
    """YAML as TAO reads it, keys in the template's order (no sorting)."""
    return yaml.safe_dump(_plain(spec), sort_keys=False, default_flow_style=False, allow_unicode=True, width=120)


def _plain(value: Any) -> Any:
    """Plain dict/list copies so safe_dump accepts mapping subclasses and tuples."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
