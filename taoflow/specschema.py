"""The generated spec schemas: finding, compiling and indexing `skills/<model>/schemas/<action>.schema.json`.

Schemas are draft 2020-12 with TAO metadata under `x-tao-*` (scripts/generate_schemas.py writes them). They
are compiled once per file version. Besides the validator, the index gives what the rest of the validation
needs: every dotted key (suggestions), the mandatory (`???`) keys, TAO's default of any key (interpolations
that point at a key the spec leaves out), and the keywords that are advisory (TAO metadata nobody enforces).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from taoflow.skill import Skill

MISSING_VALUE = "???"


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
    """A schema, its compiled validator, and indexes for suggestions, mandatory keys and defaults."""

    def __init__(self, schema: dict[str, Any]):
        self.schema = schema
        # No check_schema here (0.4 s on the big schemas): the generator's tests check the files.
        self.validator = Draft202012Validator(schema)
        self.all_keys: list[str] = sorted(_property_paths(schema))
        # Keys with named sub-keys (TAO sections); free-form maps such as label_map are not among them.
        self.sections: frozenset[str] = frozenset(k.rsplit(".", 1)[0] for k in self.all_keys if "." in k)
        self.mandatory: list[str] = sorted(_mandatory_paths(schema))
        # TAO metadata that neither OmegaConf nor TAO's code enforces (valid_min/valid_max, math_cond, pattern):
        # a value outside it is a warning.
        self.advisory: frozenset[str] = frozenset(schema.get("x-tao-advisory-keywords") or ())

    def node(self, dotted: str) -> Mapping[str, Any] | None:
        """The schema of a dotted key (list items as `[i]` or `.i` are the `items` schema), else None."""
        node: Mapping[str, Any] = self.schema
        for part in _key_parts(dotted):
            if isinstance(part, int):
                child = node.get("items")
            else:
                child = _properties(node, self.schema).get(part)
                if child is None and isinstance(node.get("additionalProperties"), Mapping):
                    child = node["additionalProperties"]  # a key of a free-form mapping
            if not isinstance(child, Mapping):
                return None
            node = _resolve(child, self.schema)
        return node

    def default_of(self, dotted: str) -> Any:
        """TAO's default for a dotted key (a section's defaults as a mapping); KeyError when it has none."""
        node = self.node(dotted)
        if node is None:
            raise KeyError(dotted)
        return _default(node, self.schema)


def _default(node: Mapping[str, Any], root: Mapping[str, Any]) -> Any:
    if "default" in node:
        return node["default"]
    if node.get("x-tao-missing"):
        return MISSING_VALUE
    props = _properties(node, root)
    if props:
        out = {}
        for name, sub in props.items():
            try:
                out[name] = _default(_resolve(sub, root), root)
            except KeyError:
                continue
        return out
    raise KeyError("no default")


@lru_cache(maxsize=64)
def _compile(path: str, mtime: float) -> CompiledSchema:
    with open(path, encoding="utf-8") as fh:
        return CompiledSchema(json.load(fh))


def load_schema(skill: Skill, action: str) -> CompiledSchema | None:
    path = schema_path(skill, action)
    return _compile(str(path), path.stat().st_mtime) if path else None


def _key_parts(dotted: str) -> list[str | int]:
    parts: list[str | int] = []
    for piece in dotted.replace("]", "").replace("[", ".").split("."):
        if piece:
            parts.append(int(piece) if piece.isdigit() else piece)
    return parts


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


def object_branches(schema: Mapping[str, Any], root: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The object-shaped schemas a node allows (itself, or its anyOf/oneOf/allOf branches)."""
    schema = _resolve(schema, root)
    out = [schema] if "properties" in schema else []
    for combinator in ("anyOf", "oneOf", "allOf"):
        for branch in schema.get(combinator, []) or []:
            out += object_branches(branch, root)
    return out


def _properties(schema: Mapping[str, Any], root: Mapping[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    for branch in object_branches(schema, root):
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


resolve_schema = _resolve
