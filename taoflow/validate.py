"""Spec validation: TAO's strict merge, the action's schema and the model's rules, every problem at once.

A spec mistake found here costs milliseconds on a CPU; found by TAO it costs a scheduled GPU job, often
an hour in (a CUDA device-side assert from a category id above `num_classes`). The checks, in order:

1. TAO's strict merge (taoflow/strictmerge.py): unknown keys and values OmegaConf cannot convert, with
   OmegaConf's conversions (`"10"` is 10 for an int key, `1e-4` a float);
2. interpolations (`${...}`), resolved as TAO resolves them, their values checked like any value;
3. the schema, on the merged values: TAO's options (case-insensitive where TAO lower-cases the value),
   the shapes TAO's code reads; TAO's valid_min/valid_max/math_cond metadata gives warnings only (OmegaConf
   and TAO's code do not enforce it);
4. with `complete`, the values TAO marks mandatory (`???`) and NVIDIA's tutorial placeholders (`??`);
5. the model's rules (taoflow/rules.py).

Each problem names the dotted key, the value, and what is allowed. Errors fail validation; warnings are
printed and never change the exit code.
"""

from __future__ import annotations

import copy
import difflib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from jsonschema.exceptions import ValidationError

from taoflow.dotted import get_dotted
from taoflow.errors import UserError
from taoflow.skill import Skill
from taoflow.specfile import PLACEHOLDER, Resolver, Unresolved, drop_path, set_path
from taoflow.specschema import CompiledSchema, load_schema, resolve_schema, schema_path
from taoflow.strictmerge import MergeResult, strict_merge, type_of
from taoflow.strictmerge import assign as merge_value

__all__ = ["ABSENT", "MISSING_VALUE", "Problem", "Report", "check_spec", "load_schema", "schema_path",
           "validate_spec", "validation_report"]

MISSING_VALUE = "???"
# The value of a Problem about a key that is not in the spec at all (printed without "(got ...)").
ABSENT = object()
_ABSENT = ABSENT
_JSON_TYPES = {
    "integer": "an integer", "number": "a number", "string": "a string", "boolean": "a boolean (true/false)",
    "array": "a list", "object": "a mapping", "null": "null",
}
_BOUNDS = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
ERROR, WARNING = "error", "warning"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec: the dotted key, the offending value, and what is allowed."""

    key: str
    value: Any
    message: str
    severity: str = ERROR

    def __str__(self) -> str:
        if self.value is _ABSENT:
            return f"{self.key}: {self.message}"
        return f"{self.key}: {self.message} (got {_show(self.value)})"


@dataclass
class Report:
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def raise_errors(self, skill: Skill, action: str) -> None:
        """One UserError listing every error (nothing when there is none)."""
        if self.errors:
            raise UserError(
                f"the {skill.name} {action} spec has {len(self.errors)} problem(s)", [str(p) for p in self.errors]
            )


def _show(value: Any, limit: int = 80) -> str:
    if value is _ABSENT:
        return "nothing"
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


# ------------------------------------------------------------------ 1. the strict merge
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


def _merge_problems(merge: MergeResult, compiled: CompiledSchema) -> list[Problem]:
    out = []
    for issue in merge.issues:
        if issue.kind == "unknown":
            prefix, _, name = issue.key.rpartition(".")
            hint = _suggest(name, re.sub(r"\[\d+\]", "", prefix), list(issue.allowed), compiled)
            out.append(Problem(issue.key, issue.value, f"unknown key; {hint}"))
        elif issue.value == PLACEHOLDER:
            out.append(Problem(issue.key, issue.value, f"is NVIDIA's '??' placeholder: give a value ({issue.message})"))
        else:
            out.append(Problem(issue.key, issue.value, issue.message))
    return out


# ------------------------------------------------------------------ 2. interpolations
def _resolve_interpolations(merge: MergeResult, compiled: CompiledSchema, report: Report) -> dict[str, Any]:
    """Resolve the spec's interpolations like TAO does when it reads them; returns the merged spec with the
    resolved values (unresolvable ones left out: their value is not known before run time)."""
    merged = merge.merged
    if not merge.interpolations:
        return merged
    resolver = Resolver(merged, compiled.default_of, env={})
    resolved = copy.deepcopy(merged)
    for interp in merge.interpolations:
        target_type = type_of(interp.schema)
        try:
            value = resolver.resolve(interp.key, interp.value)
        except Unresolved as why:
            _unresolved(interp, why, target_type, compiled, report)
            drop_path(resolved, interp.key)
            continue
        check = MergeResult()
        converted = merge_value(value, interp.schema, interp.key, None, check)
        if check.issues:
            report.errors.append(Problem(interp.key, interp.value, f"resolves to {_show(value)}, but {interp.key} "
                                         f"{check.issues[0].message}"))
            drop_path(resolved, interp.key)
        else:
            set_path(resolved, interp.key, converted)
    return resolved


def _unresolved(interp: Any, why: Unresolved, holder: Any, compiled: CompiledSchema, report: Report) -> None:
    if why.kind in ("dangling", "error"):
        report.errors.append(Problem(interp.key, interp.value, f"cannot be resolved: {why} (TAO fails when it reads "
                                     f"{interp.key})"))
        return
    if why.kind == "missing" and why.target:
        # Checked as the type of its target: fine when TAO could hold the target's value in this key.
        target = compiled.node(why.target)
        if target is not None and not _compatible(type_of(target).kind, holder.kind):
            report.errors.append(Problem(interp.key, interp.value, f"points at {why.target}, {type_of(target).text()}, "
                                         f"but {interp.key} must be {holder.text()}"))
        return
    if why.kind == "runtime" and holder.kind not in ("str", "any"):
        report.warnings.append(Problem(interp.key, interp.value, f"is resolved only at run time ({why}); TAO then "
                                       f"needs {holder.text()} here", WARNING))


def _compatible(source: str, holder: str) -> bool:
    """Whether OmegaConf can hold a value of kind `source` in a key of kind `holder`."""
    if source == holder or holder in ("any", "str") or source == "any":
        return True
    return (source, holder) in {("int", "float"), ("int", "bool"), ("str", "int"), ("str", "float"), ("str", "bool")}


# ------------------------------------------------------------------ 3. the schema on merged values
def _without_missing(tree: Any) -> Any:
    """The merged spec without `???` values: the schema checks values, `???` is a value still to come."""
    if isinstance(tree, Mapping):
        return {k: _without_missing(v) for k, v in tree.items() if v != MISSING_VALUE}
    if isinstance(tree, list):
        return [_without_missing(v) for v in tree]
    return tree


def _dotted(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out


def _type_text(types: Any) -> str:
    names = [types] if isinstance(types, str) else list(types or [])
    return " or ".join(_JSON_TYPES.get(t, t) for t in names) or "another type"


def _accepts_type(schema: Mapping[str, Any], instance: Any) -> bool:
    declared = schema.get("type")
    if declared is None:
        return True
    for name in [declared] if isinstance(declared, str) else declared:
        if name == "null" and instance is None:
            return True
        if name == "boolean" and isinstance(instance, bool):
            return True
        if isinstance(instance, bool):
            continue
        python = {"integer": int, "number": (int, float), "string": str, "array": list, "object": dict}.get(name)
        if python and isinstance(instance, python):
            return True
    return False


def _branch_types(branches: list[Mapping[str, Any]], root: Mapping[str, Any]) -> list[str]:
    out: list[str] = []
    for branch in branches:
        branch = resolve_schema(branch, root)
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


def _enum_matches(schema: Mapping[str, Any], value: Any) -> bool:
    """TAO lower-cases some options before comparing (`x-tao-ignore-case`, with the NVIDIA source)."""
    if not schema.get("x-tao-ignore-case") or not isinstance(value, str):
        return False
    return value.lower() in {str(o).lower() for o in schema.get("enum") or [] if o is not None}


def _schema_problems(err: ValidationError, compiled: CompiledSchema) -> list[Problem]:
    key = _dotted(err.absolute_path)
    kind = err.validator
    value = err.instance
    schema = err.schema if isinstance(err.schema, Mapping) else {}
    if kind in ("additionalProperties", "required"):
        # Unknown keys are the strict merge's finding; TAO fills absent keys from its defaults (what must
        # really be given is what TAO leaves `???`, checked when validation is complete).
        return []
    if kind in compiled.advisory:
        bound = f"{_BOUNDS[kind]} {err.validator_value}" if kind in _BOUNDS else f"match {err.validator_value}"
        return [Problem(key, value, f"outside TAO's suggested values (should be {bound}); TAO does not enforce "
                        "this metadata, so the value is used as given", WARNING)]
    if kind == "type":
        return [Problem(key, value, f"must be {_type_text(err.validator_value)}")]
    if kind == "enum":
        if _enum_matches(schema, value):
            return []
        options = ", ".join(json.dumps(v) if not isinstance(v, str) else v for v in err.validator_value)
        case = " (any case)" if schema.get("x-tao-ignore-case") else ""
        if schema.get("x-tao-unread"):
            return [Problem(key, value, f"is not one of TAO's options ({options}), but TAO never reads this key",
                            WARNING)]
        return [Problem(key, value, f"must be one of: {options}{case}")]
    if kind == "const":
        return [Problem(key, value, f"must be {_show(err.validator_value)}")]
    if kind in _BOUNDS:
        return [Problem(key, value, f"must be {_BOUNDS[kind]} {err.validator_value}")]
    if kind in ("minItems", "maxItems"):
        word = "at least" if kind == "minItems" else "at most"
        return [Problem(key, value, f"must have {word} {err.validator_value} item(s)")]
    if kind in ("anyOf", "oneOf"):
        return _branch_problems(err, compiled, key, value)
    return [Problem(key, value, err.message)]


def _branch_problems(err: ValidationError, compiled: CompiledSchema, key: str, value: Any) -> list[Problem]:
    """anyOf/oneOf: report what is wrong inside the first branch whose type fits the value."""
    root = compiled.schema
    branches = list(err.validator_value or [])
    for index, branch in enumerate(branches):
        if not _accepts_type(resolve_schema(branch, root), value):
            continue
        inner = [e for e in err.context or [] if e.relative_schema_path and e.relative_schema_path[0] == index]
        found = [p for sub in inner for p in _schema_problems(sub, compiled)]
        if found or inner:
            return found  # nothing found: reported by the strict merge already
    return [Problem(key, value, f"must be {' or '.join(_type_text(t) for t in _branch_types(branches, root))}")]


# ------------------------------------------------------------------ 4. missing values
def _leaves(tree: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for name, value in tree.items():
        dotted = _join(prefix, str(name))
        if isinstance(value, Mapping):
            yield from _leaves(value, dotted)
        else:
            yield dotted, value


def _missing_problems(skill: Skill, action: str, spec: Mapping[str, Any], compiled: CompiledSchema | None,
                      complete: bool) -> list[Problem]:
    """`???` and `??` left in the sections the action reads (and, with `complete`, mandatory keys left out):
    errors when validation is complete, `??` placeholders are warnings otherwise."""
    act = skill.action(action)
    sections = set(act.sections)
    ignored = set(act.ignore_missing)

    def read_by_action(key: str) -> bool:
        return ("." not in key or not sections or key.split(".", 1)[0] in sections) and key not in ignored

    leaves = dict(_leaves(spec))
    out: list[Problem] = []
    if complete:
        keys = {k for k, v in leaves.items() if v == MISSING_VALUE}
        if compiled is not None:
            keys |= {k for k in compiled.mandatory if get_dotted(spec, k, _ABSENT) is _ABSENT}
        out += [Problem(k, get_dotted(spec, k, _ABSENT), f"required by {skill.name} {action}: TAO marks it mandatory "
                        "(???); give a value") for k in sorted(keys) if read_by_action(k)]
    for key in sorted(k for k, v in leaves.items() if v == PLACEHOLDER and read_by_action(k)):
        out.append(Problem(key, PLACEHOLDER, "is NVIDIA's '??' placeholder, a missing value: give one (TAO would "
                           "read '??' as the value)", ERROR if complete else WARNING))
    return out


# ------------------------------------------------------------------ entry points
def validation_report(
    skill: Skill,
    action: str,
    spec: Mapping[str, Any],
    *,
    complete: bool = False,
    force: Iterable[str] | None = None,
    read_data: bool = True,
) -> Report:
    """Every problem of `spec` for `skill`'s `action` (see the module docstring), errors and warnings."""
    from taoflow.rules import RuleContext, run_rules

    skill.action(action)  # unknown action → UserError
    report = Report()
    if not isinstance(spec, Mapping):
        report.errors.append(Problem("(spec)", spec, "the spec must be a mapping of TAO sections"))
        return report
    compiled = load_schema(skill, action)
    merged: Mapping[str, Any] = spec
    if compiled is not None:
        merge = strict_merge(spec, compiled.schema)
        report.errors += _merge_problems(merge, compiled)
        merged = _resolve_interpolations(merge, compiled, report)
        for err in compiled.validator.iter_errors(_without_missing(merged)):
            for problem in _schema_problems(err, compiled):
                (report.warnings if problem.severity == WARNING else report.errors).append(problem)
    reported = {p.key for p in report.errors}
    for problem in _missing_problems(skill, action, spec, compiled, complete):
        if problem.key not in reported:
            (report.warnings if problem.severity == WARNING else report.errors).append(problem)
    ctx = RuleContext(skill=skill, action=action, spec=merged, force=frozenset(force or ()), complete=complete,
                      read_data=read_data)
    for problem in run_rules(ctx):
        (report.warnings if problem.severity == WARNING else report.errors).append(problem)
    report.errors = _dedupe(report.errors)
    report.warnings = _dedupe([w for w in report.warnings if w.key not in {e.key for e in report.errors}])
    return report


def validate_spec(
    skill: Skill,
    action: str,
    spec: Mapping[str, Any],
    *,
    complete: bool = False,
    force: Iterable[str] | None = None,
    read_data: bool = True,
) -> list[Problem]:
    """The errors of `spec` (what makes TAO fail); `validation_report` also gives the warnings.

    `force` names rule checks the user overrides on purpose (e.g. `export_shape`); `read_data` lets rules
    read small dataset files (COCO annotations, label maps) when reachable."""
    return validation_report(skill, action, spec, complete=complete, force=force, read_data=read_data).errors


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
) -> list[Problem]:
    """Raise one UserError listing every error; return the warnings (nothing to raise for them)."""
    report = validation_report(skill, action, spec, complete=complete, force=force, read_data=read_data)
    report.raise_errors(skill, action)
    return report.warnings
