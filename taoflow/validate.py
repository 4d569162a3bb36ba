"""Spec validation: the action's JSON schema plus the model's rules, every problem reported at once.

A spec mistake found here costs milliseconds on a CPU; found by TAO it costs a scheduled GPU job, often
an hour in (a CUDA device-side assert from a category id above `num_classes`). Each problem names the
dotted key, the value, and what is allowed. Schemas (`skills/<model>/schemas/<tao_action>.schema.json`,
draft 2020-12, TAO metadata under `x-tao-*`) are compiled once per file version and cached.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from taoflow.dotted import get_dotted
from taoflow.errors import UserError
from taoflow.skill import Skill

MISSING_VALUE = "???"
# The value of a Problem about a key that is not in the spec at all (printed without "(got ...)").
ABSENT = object()
_ABSENT = ABSENT
_JSON_TYPES = {
    "integer": "an integer", "number": "a number", "string": "a string", "boolean": "a boolean (true/false)",
    "array": "a list", "object": "a mapping", "null": "null",
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec: the dotted key, the offending value, and what is allowed."""

    key: str
    value: Any
    message: str

    def __str__(self) -> str:
        if self.value is _ABSENT:
            return f"{self.key}: {self.message}"
        return f"{self.key}: {self.message} (got {_show(self.value)})"


def _show(value: Any, limit: int = 80) -> str:
    if value is _ABSENT:
        return "nothing"
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ------------------------------------------------------------------ schemas
def schema_path(skill: Skill, action: str) -> Path | None:
    """The schema of the action's TAO action (`convert` for Sparse4D's dataset_convert, either name)."""
    act = skill.action(action)
    folder = skill.directory / "schemas"
    names = [act.tao_action, action]
    if "dataset_convert" in names or "convert" in names:
        names += ["dataset_convert", "convert"]
    for name in dict.fromkeys(names):
        candidate = folder / f"{name}.schema.json"
        if candidate.is_file():
            return candidate
    return None


class CompiledSchema:
    """A schema, its compiled validator, and indexes for suggestions and mandatory keys."""

    def __init__(self, schema: dict[str, Any]):
        self.schema = schema
        # No check_schema here (0.4 s on the big schemas): the generator's tests check the files.
        self.validator = Draft202012Validator(schema)
        self.all_keys: list[str] = sorted(_property_paths(schema))
        # Keys with named sub-keys (TAO sections); free-form maps such as label_map are not among them.
        self.sections: frozenset[str] = frozenset(k.rsplit(".", 1)[0] for k in self.all_keys if "." in k)
        self.mandatory: list[str] = sorted(_mandatory_paths(schema))


@lru_cache(maxsize=64)
def _compile(path: str, mtime: float) -> CompiledSchema:
    with open(path, encoding="utf-8") as fh:
        return CompiledSchema(json.load(fh))


def load_schema(skill: Skill, action: str) -> CompiledSchema | None:
    path = schema_path(skill, action)
    return _compile(str(path), path.stat().st_mtime) if path else None


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow a local `$ref` (`#/$defs/X`) so indexes see through references."""
    seen = 0
    while isinstance(schema, Mapping) and "$ref" in schema and seen < 20:
        ref = schema["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/"):
            break
        node: Any = root
        for part in ref[2:].split("/"):
            node = node.get(part, {}) if isinstance(node, Mapping) else {}
        schema, seen = node, seen + 1
    return schema


def _object_branches(schema: Mapping[str, Any], root: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The object-shaped schemas a node allows (itself, or its anyOf/oneOf/allOf branches)."""
    schema = _resolve(schema, root)
    out = [schema] if "properties" in schema else []
    for combinator in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(combinator, []) or []:
            out += _object_branches(branch, root)
    return out


def _properties(schema: Mapping[str, Any], root: Mapping[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for branch in _object_branches(schema, root):
        props.update(branch.get("properties") or {})
    return props


def _property_paths(schema: Mapping[str, Any], root: Mapping[str, Any] | None = None, prefix: str = "",
                    depth: int = 0) -> Iterable[str]:
    root = root if root is not None else schema
    if depth > 12:
        return
    for name, sub in _properties(schema, root).items():
        dotted = f"{prefix}{name}"
        yield dotted
        yield from _property_paths(sub, root, dotted + ".", depth + 1)


def _is_mandatory(schema: Mapping[str, Any]) -> bool:
    return schema.get("x-tao-missing") is True or schema.get("default") == MISSING_VALUE


def _mandatory_paths(schema: Mapping[str, Any], root: Mapping[str, Any] | None = None, prefix: str = "",
                     depth: int = 0) -> Iterable[str]:
    """Leaves TAO leaves as `???` (MISSING): they must hold a value when the action reads them."""
    root = root if root is not None else schema
    if depth > 12:
        return
    for name, sub in _properties(schema, root).items():
        dotted = f"{prefix}{name}"
        resolved = _resolve(sub, root)
        if _is_mandatory(resolved):
            yield dotted
        yield from _mandatory_paths(resolved, root, dotted + ".", depth + 1)


# ------------------------------------------------------------------ schema errors → problems
def _dotted(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _suggest(name: str, prefix: str, allowed: list[str], compiled: CompiledSchema) -> str:
    close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
    if close:
        return f"did you mean {_join(prefix, close[0])!r}?"
    # The right name at another level (`train.lr` for `train.optim.lr`).
    elsewhere = [k for k in compiled.all_keys if k.rsplit(".", 1)[-1] == name and k.startswith(prefix)]
    if elsewhere:
        return f"did you mean {elsewhere[0]!r}?"
    shown = ", ".join(sorted(allowed)[:12]) + (", ..." if len(allowed) > 12 else "")
    return f"allowed keys{' under ' + prefix if prefix else ''}: {shown}"


def _type_text(types: Any) -> str:
    names = [types] if isinstance(types, str) else list(types or [])
    return " or ".join(_JSON_TYPES.get(t, t) for t in names) or "another type"


def _accepts_type(schema: Mapping[str, Any], instance: Any) -> bool:
    declared = schema.get("type")
    if declared is None:
        return True
    names = [declared] if isinstance(declared, str) else declared
    for name in names:
        if name == "null" and instance is None:
            return True
        if name == "boolean" and isinstance(instance, bool):
            return True
        if isinstance(instance, bool):
            continue
        if name == "integer" and isinstance(instance, int):
            return True
        if name == "number" and isinstance(instance, (int, float)):
            return True
        if name == "string" and isinstance(instance, str):
            return True
        if name == "array" and isinstance(instance, list):
            return True
        if name == "object" and isinstance(instance, dict):
            return True
    return False


def _branch_types(branches: list[Mapping[str, Any]], root: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for branch in branches:
        branch = _resolve(branch, root)
        declared = branch.get("type")
        if isinstance(declared, str):
            out.append(declared)
        elif isinstance(declared, list):
            out += declared
        elif "enum" in branch:
            out.append("one of " + ", ".join(map(str, branch["enum"])))
        elif "const" in branch:
            out.append(repr(branch["const"]))
    return list(dict.fromkeys(out))


def _problems_from_error(err: ValidationError, compiled: CompiledSchema, complete: bool) -> list[Problem]:
    key = _dotted(err.absolute_path)
    kind = err.validator
    value = err.instance
    root = compiled.schema
    if kind == "additionalProperties" and isinstance(value, dict):
        schema = err.schema if isinstance(err.schema, Mapping) else {}
        allowed = list((schema.get("properties") or {}).keys())
        patterns = list((schema.get("patternProperties") or {}).keys())
        out = []
        for name in value:
            if name in allowed or any(re.search(p, name) for p in patterns):
                continue
            hint = _suggest(str(name), key, allowed, compiled)
            out.append(Problem(_join(key, str(name)), value[name], f"unknown key; {hint}"))
        return out
    if kind == "required":
        # TAO fills absent sections and keys from its dataclass defaults; what must really be given is
        # what TAO leaves MISSING (`???`), checked by missing_problems() when `complete`.
        return []
    if kind == "type":
        return [Problem(key, value, f"must be {_type_text(err.validator_value)}")]
    if kind == "enum":
        options = ", ".join(json.dumps(v) if not isinstance(v, str) else v for v in err.validator_value)
        return [Problem(key, value, f"must be one of: {options}")]
    if kind == "const":
        return [Problem(key, value, f"must be {_show(err.validator_value)}")]
    bounds = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    if kind in bounds:
        return [Problem(key, value, f"must be {bounds[kind]} {err.validator_value}")]
    if kind in ("minItems", "maxItems"):
        word = "at least" if kind == "minItems" else "at most"
        return [Problem(key, value, f"must have {word} {err.validator_value} item(s)")]
    if kind in ("minLength", "maxLength"):
        word = "at least" if kind == "minLength" else "at most"
        return [Problem(key, value, f"must have {word} {err.validator_value} character(s)")]
    if kind in ("anyOf", "oneOf"):
        branches = list(err.validator_value or [])
        fitting = [i for i, b in enumerate(branches) if _accepts_type(_resolve(b, root), value)]
        if fitting:
            # The value has a permitted type: report what is wrong inside the branch it was meant for.
            inner = [e for e in err.context or [] if e.relative_schema_path and e.relative_schema_path[0] == fitting[0]]
            out = []
            for sub in inner:
                out += _problems_from_error(sub, compiled, complete)
            if out:
                return out
        return [Problem(key, value, f"must be {' or '.join(_type_text(t) for t in _branch_types(branches, root))}")]
    return [Problem(key, value, err.message)]


def schema_problems(compiled: CompiledSchema, spec: Mapping[str, Any], *, complete: bool = False) -> list[Problem]:
    problems: list[Problem] = []
    for err in compiled.validator.iter_errors(spec):
        problems += _problems_from_error(err, compiled, complete)
    return problems


# ------------------------------------------------------------------ completeness
def _get(spec: Mapping[str, Any], key: str) -> Any:
    return get_dotted(spec, key, _ABSENT)


def _leaves_with_missing(spec: Mapping[str, Any], prefix: str = "") -> Iterable[str]:
    for name, value in spec.items():
        dotted = _join(prefix, str(name))
        if isinstance(value, Mapping):
            yield from _leaves_with_missing(value, dotted)
        elif value == MISSING_VALUE:
            yield dotted


def missing_problems(skill: Skill, action: str, spec: Mapping[str, Any],
                     compiled: CompiledSchema | None) -> list[Problem]:
    """Mandatory values (`???`) still missing in the sections the action reads."""
    act = skill.action(action)
    sections = set(act.sections)
    ignored = set(act.ignore_missing)

    def read_by_action(key: str) -> bool:
        top = key.split(".", 1)[0]
        return "." not in key or not sections or top in sections

    keys = set(_leaves_with_missing(spec))
    if compiled is not None:
        keys |= {k for k in compiled.mandatory if _get(spec, k) is _ABSENT}
    return [
        Problem(k, _get(spec, k), f"required by {skill.name} {action}: TAO marks it mandatory (???); give a value")
        for k in sorted(keys)
        if k not in ignored and read_by_action(k)
    ]


# ------------------------------------------------------------------ entry points
def validate_spec(
    skill: Skill,
    action: str,
    spec: Mapping[str, Any],
    *,
    complete: bool = False,
    force: Iterable[str] | None = None,
    read_data: bool = True,
) -> list[Problem]:
    """Every problem of `spec` for `skill`'s `action`: schema (unknown keys with a suggestion, types,
    bounds, enums), the model's rules, and with `complete` the mandatory values still missing.

    `force` names rule checks the user overrides on purpose (e.g. `export_shape`); `read_data` lets rules
    read small dataset files (COCO annotations, label maps) when reachable."""
    from taoflow.rules import RuleContext, run_rules

    skill.action(action)  # unknown action → UserError
    if not isinstance(spec, Mapping):
        return [Problem("(spec)", spec, "the spec must be a mapping of TAO sections")]
    compiled = load_schema(skill, action)
    problems = schema_problems(compiled, spec, complete=complete) if compiled else []
    if complete:
        seen = {p.key for p in problems}
        problems += [p for p in missing_problems(skill, action, spec, compiled) if p.key not in seen]
    ctx = RuleContext(skill=skill, action=action, spec=spec, force=frozenset(force or ()), complete=complete,
                      read_data=read_data)
    problems += run_rules(ctx)
    return _dedupe(problems)


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[str, str]] = set()
    out = []
    for p in problems:
        if (p.key, p.message) not in seen:
            seen.add((p.key, p.message))
            out.append(p)
    return out


def check_spec(
    skill: Skill,
    action: str,
    spec: Mapping[str, Any],
    *,
    complete: bool = False,
    force: Iterable[str] | None = None,
    read_data: bool = True,
) -> None:
    """Raise one UserError listing every problem (nothing when the spec is valid)."""
    problems = validate_spec(skill, action, spec, complete=complete, force=force, read_data=read_data)
    if problems:
        raise UserError(
            f"the {skill.name} {action} spec has {len(problems)} problem(s)", [str(p) for p in problems]
        )
