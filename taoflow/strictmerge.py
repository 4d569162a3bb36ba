"""What TAO Core's strict merge accepts, decided without TAO Core.

TAO loads a spec with `OmegaConf.merge(OmegaConf.structured(ExperimentConfig), spec)` (omegaconf 2.3.0).
That merge refuses unknown keys and values it cannot convert, and it converts what it can: `"10"` becomes
10 for an int, 5 becomes "5" for a string, `"yes"` becomes True for a bool. Running the merge itself costs
~0.1 s per spec (TAO's configs have ~1,000 fields), too slow for a preflight over a whole pipeline, and TAO
Core is not a runtime dependency. So this module walks the spec beside the generated schema, whose
`x-tao-type` on every property is the field's Python annotation in TAO Core, and applies OmegaConf's rules:
scalars through OmegaConf's own node classes (IntegerNode, FloatNode, ...), containers by the rules of
OmegaConf's `_map_merge` / `_list_merge`, including their quirks (a list or mapping given as an item of a
`List[int]`, or as a new value of a `Dict[str, str]`, is kept unchecked; the items of nested typed lists are
checked strictly: `[[1, 2]]` is not a `List[List[float]]`). tests/test_strictmerge.py compares every rule
with OmegaConf's real merge, and tests/test_corpus.py compares whole spec files with TAO Core's.

The result: the issues (dotted key, value, what TAO allows), the spec as TAO holds it after the merge
(converted values; `???` left out and listed as missing; interpolations listed for resolution).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from taoflow.specfile import MISSING_VALUE, is_interpolation

_DROP = object()


# ------------------------------------------------------------------ TAO Core's annotations
@dataclass(frozen=True)
class TaoType:
    """A field's type as TAO Core annotates it: `kind` is any, int, float, bool, str, union, list, dict or
    object (a dataclass); `args` are the list item type, the dict key and value types, or union members."""

    kind: str
    optional: bool = False
    args: tuple[TaoType, ...] = ()
    name: str = ""

    @property
    def item(self) -> TaoType:
        return self.args[0] if self.args else ANY

    @property
    def value(self) -> TaoType:
        return self.args[1] if len(self.args) > 1 else ANY

    @property
    def key_is_str(self) -> bool:
        return bool(self.args) and self.args[0].kind == "str"

    def text(self) -> str:
        """What a user is told the field must be."""
        words = {
            "int": "an integer", "float": "a number", "bool": "a boolean (true/false)", "str": "a string",
            "any": "any value", "list": "a list", "dict": "a mapping", "object": f"a mapping of {self.name} keys",
        }
        if self.kind == "union":
            return " or ".join(m.text() for m in self.args)
        if self.kind == "list" and self.args and self.item.kind != "any":
            return f"a list of {_plural(self.item)}"
        if self.kind == "dict" and len(self.args) > 1 and self.value.kind != "any":
            return f"a mapping of names to {_plural(self.value)}"
        return words[self.kind]


ANY = TaoType("any", optional=True)
_SCALARS = {"int": "int", "float": "float", "bool": "bool", "str": "str", "Any": "any", "list": "list",
            "dict": "dict", "Path": "str"}


def _plural(t: TaoType) -> str:
    return {"int": "integers", "float": "numbers", "bool": "booleans", "str": "strings", "list": "lists",
            "dict": "mappings", "object": f"{t.name} mappings"}.get(t.kind, t.text())


@lru_cache(maxsize=512)
def parse_type(text: str) -> TaoType:
    """`Optional[List[Dict[str, str]]]` → TaoType. Names that are not typing names are dataclasses."""
    tokens = re.findall(r"[A-Za-z_][\w.]*|[\[\],]", text)
    pos = 0

    def parse() -> TaoType:
        nonlocal pos
        name = tokens[pos]
        pos += 1
        args: list[TaoType] = []
        if pos < len(tokens) and tokens[pos] == "[":
            pos += 1
            while tokens[pos] != "]":
                args.append(parse())
                if tokens[pos] == ",":
                    pos += 1
            pos += 1
        return _build(name, args)

    result = parse()
    if pos != len(tokens):
        raise ValueError(f"cannot read type annotation {text!r}")
    return result


def _build(name: str, args: list[TaoType]) -> TaoType:
    if name == "Optional":
        inner = args[0]
        return TaoType(inner.kind, True, inner.args, inner.name)
    if name == "Union":
        members = [a for a in args if a.kind != "none"]
        optional = len(members) < len(args)
        if len(members) == 1:
            return TaoType(members[0].kind, optional, members[0].args, members[0].name)
        return TaoType("union", optional, tuple(members))
    if name == "NoneType":
        return TaoType("none", True)
    if name in ("List", "Tuple"):
        return TaoType("list", False, tuple(args[:1]))
    if name == "Dict":
        return TaoType("dict", False, tuple(args))
    if name in _SCALARS:
        kind = _SCALARS[name]
        return TaoType(kind, kind == "any")
    return TaoType("object", False, (), name)


# ------------------------------------------------------------------ results
@dataclass(frozen=True)
class Issue:
    """A value TAO's merge refuses. `kind`: unknown (key), type, null, key_type."""

    key: str
    value: Any
    kind: str
    message: str
    allowed: tuple[str, ...] = ()  # unknown key: the keys allowed at that level


@dataclass(frozen=True)
class Interpolation:
    """An interpolation found during the merge: its key, string, the schema of the field that holds it and
    whether the merge itself already resolves it (a whole section or list given as `${...}`)."""

    key: str
    value: str
    schema: Mapping[str, Any]
    resolved_by_merge: bool


@dataclass
class MergeResult:
    issues: list[Issue] = field(default_factory=list)
    merged: dict[str, Any] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    interpolations: list[Interpolation] = field(default_factory=list)


def type_of(schema: Mapping[str, Any]) -> TaoType:
    text = schema.get("x-tao-type")
    return parse_type(text) if isinstance(text, str) else ANY


# ------------------------------------------------------------------ the merge
def strict_merge(spec: Mapping[str, Any], schema: Mapping[str, Any]) -> MergeResult:
    """Merge `spec` into the ExperimentConfig `schema` describes, the way OmegaConf 2.3.0 does."""
    result = MergeResult()
    if not isinstance(spec, Mapping):
        result.issues.append(Issue("(spec)", spec, "type", "the spec must be a mapping of TAO sections"))
        return result
    merged = _object(spec, schema, "", result)
    result.merged = merged if isinstance(merged, dict) else {}
    return result


def _join(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def assign(value: Any, schema: Mapping[str, Any], key: str, default: Any, result: MergeResult) -> Any:
    """A value assigned to a field of type `schema` (its TAO default `default`): the merged value, or _DROP."""
    t = type_of(schema)
    if value == MISSING_VALUE:
        result.missing.append(key)
        return value
    if is_interpolation(value):
        by_merge = t.kind == "object" or (t.kind in ("list", "dict") and default is None)
        result.interpolations.append(Interpolation(key, value, schema, by_merge))
        return value
    if value is None or t.kind == "object":
        return _null_or_object(value, schema, t, key, result)
    if t.kind == "list":
        return _list(value, schema, t, key, result)
    if t.kind == "dict":
        return _dict(value, schema, t, key, default, result)
    return _scalar(value, t, key, result)


def _null_or_object(value: Any, schema: Mapping[str, Any], t: TaoType, key: str, result: MergeResult) -> Any:
    """null (only where the field is Optional) or a dataclass section (only a mapping of its keys)."""
    if value is None:
        if t.optional:
            return None
        result.issues.append(Issue(key, value, "null", f"must not be null: must be {t.text()}"))
        return _DROP
    if isinstance(value, Mapping):
        return _object(value, schema, key, result)
    result.issues.append(Issue(key, value, "type", f"must be {t.text()}"))
    return _DROP


def _object(value: Mapping[str, Any], schema: Mapping[str, Any], key: str, result: MergeResult) -> Any:
    props = schema.get("properties") or {}
    out: dict[str, Any] = {}
    for name, sub in value.items():
        child = _join(key, name)
        if not isinstance(name, str) or name not in props:
            result.issues.append(Issue(child, sub, "unknown", "unknown key", tuple(props)))
            continue
        merged = assign(sub, props[name], child, props[name].get("default"), result)
        if merged is not _DROP:
            out[name] = merged
    return out


def _list(value: Any, schema: Mapping[str, Any], t: TaoType, key: str, result: MergeResult) -> Any:
    if not isinstance(value, list):
        result.issues.append(Issue(key, value, "type", f"must be {t.text()}"))
        return _DROP
    item_t = t.item
    item_schema = schema.get("items") if isinstance(schema.get("items"), Mapping) else {}
    out = []
    failed = False
    for i, item in enumerate(value):
        child = f"{key}[{i}]"
        merged = _list_item(item, item_t, item_schema, child, result)
        if merged is _DROP:
            failed = True
        else:
            out.append(merged)
    return _DROP if failed else out


def _list_item(item: Any, t: TaoType, schema: Mapping[str, Any], key: str, result: MergeResult) -> Any:
    """One item appended to a typed list (OmegaConf's _list_merge)."""
    if item == MISSING_VALUE:
        return item
    if is_interpolation(item):
        result.interpolations.append(Interpolation(key, item, _item_schema(schema, t), t.kind == "object"))
        return item
    if item is None or t.kind == "object":
        return _null_or_object(item, schema, t, key, result)
    if t.kind == "list":
        if not isinstance(item, list):
            result.issues.append(Issue(key, item, "type", f"must be {t.text()}"))
            return _DROP
        return _strict_items(item, t.item, key, result)
    if t.kind == "dict":
        if not isinstance(item, Mapping):
            result.issues.append(Issue(key, item, "type", f"must be {t.text()}"))
            return _DROP
        return _strict_mapping(item, t, key, result)
    if isinstance(item, (list, dict)):
        return item  # OmegaConf keeps a container given as an item of a list of scalars unchecked
    return _scalar(item, t, key, result)


def _item_schema(schema: Mapping[str, Any], t: TaoType) -> Mapping[str, Any]:
    return schema if schema.get("x-tao-type") else {**schema, "x-tao-type": _type_text(t)}


def _type_text(t: TaoType) -> str:
    names = {"int": "int", "float": "float", "bool": "bool", "str": "str", "any": "Any"}
    if t.kind in names:
        text = names[t.kind]
    elif t.kind == "list":
        text = f"List[{_type_text(t.item)}]" if t.args else "list"
    elif t.kind == "dict":
        text = f"Dict[{_type_text(t.args[0])}, {_type_text(t.value)}]" if t.args else "dict"
    elif t.kind == "union":
        text = "Union[" + ", ".join(_type_text(m) for m in t.args) + "]"
    else:
        text = t.name
    return f"Optional[{text}]" if t.optional and t.kind not in ("any",) else text


def _strict_items(items: list[Any], t: TaoType, key: str, result: MergeResult) -> Any:
    """Items of a nested typed list: OmegaConf checks their Python type without converting
    (`_shallow_validate_type_hint`): a float list refuses 1, an int list accepts True."""
    failed = False
    for i, item in enumerate(items):
        if not _strict_ok(item, t):
            failed = True
            result.issues.append(Issue(f"{key}[{i}]", item, "type", _strict_message(t)))
    return _DROP if failed else list(items)


def _strict_ok(item: Any, t: TaoType) -> bool:
    if item == MISSING_VALUE or is_interpolation(item) or t.kind == "any":
        return True
    if item is None:
        return t.optional
    python = {"int": int, "float": float, "bool": bool, "str": str}
    if t.kind in python:
        return isinstance(item, python[t.kind])
    return isinstance(item, list) if t.kind == "list" else isinstance(item, Mapping)


def _strict_message(t: TaoType) -> str:
    hint = " (TAO reads it without converting: write 1.0, not 1)" if t.kind == "float" else ""
    return f"must be {t.text()}{hint}"


def _strict_mapping(item: Mapping[Any, Any], t: TaoType, key: str, result: MergeResult) -> Any:
    """A mapping given as an item of a list of typed mappings: its values are checked without converting."""
    failed = False
    for name, sub in item.items():
        child = _join(key, name)
        if t.key_is_str and not isinstance(name, str):
            result.issues.append(Issue(child, sub, "key_type", f"key {name!r} must be a string"))
            failed = True
        elif not _strict_ok(sub, t.value):
            result.issues.append(Issue(child, sub, "type", _strict_message(t.value)))
            failed = True
    return _DROP if failed else dict(item)


def _dict(value: Any, schema: Mapping[str, Any], t: TaoType, key: str, default: Any, result: MergeResult) -> Any:
    if not isinstance(value, Mapping):
        result.issues.append(Issue(key, value, "type", f"must be {t.text()}"))
        return _DROP
    existing = default if isinstance(default, Mapping) else {}
    value_t = t.value
    out: dict[Any, Any] = {}
    failed = False
    for name, sub in value.items():
        child = _join(key, name)
        if t.key_is_str and not isinstance(name, str):
            result.issues.append(Issue(child, sub, "key_type", f"key {name!r} must be a string"))
            failed = True
            continue
        if sub == MISSING_VALUE or is_interpolation(sub):
            if is_interpolation(sub):
                result.interpolations.append(Interpolation(child, sub, {"x-tao-type": _type_text(value_t)}, False))
            out[name] = sub
            continue
        if sub is None:
            if value_t.optional or value_t.kind == "any":
                out[name] = None
                continue
            result.issues.append(Issue(child, sub, "null", f"must not be null: must be {value_t.text()}"))
            failed = True
            continue
        if isinstance(sub, (list, dict)):
            if value_t.kind == "any" or name not in existing:
                out[name] = sub  # a new key keeps a container unchecked (OmegaConf's __setitem__)
                continue
            result.issues.append(Issue(child, sub, "type", f"must be {value_t.text()}"))
            failed = True
            continue
        merged = _scalar(sub, value_t, child, result)
        if merged is _DROP:
            failed = True
        else:
            out[name] = merged
    return _DROP if failed else out


def _scalar(value: Any, t: TaoType, key: str, result: MergeResult) -> Any:
    """A scalar through the node class OmegaConf uses for the field (conversion or a ValidationError)."""
    if t.kind == "any":
        return value
    if t.kind == "union":
        for member in t.args:
            if _strict_instance(value, member):
                return value
        result.issues.append(Issue(key, value, "type", f"must be {t.text()}"))
        return _DROP
    if isinstance(value, (list, dict)):
        result.issues.append(Issue(key, value, "type", f"must be {t.text()}"))
        return _DROP
    try:
        return convert(value, t.kind)
    except ValueError:
        result.issues.append(Issue(key, value, "type", f"must be {t.text()}"))
        return _DROP


def _strict_instance(value: Any, t: TaoType) -> bool:
    if t.kind == "float":
        return type(value) is float
    if t.kind == "int":
        return type(value) is int
    if t.kind == "bool":
        return type(value) is bool
    if t.kind == "str":
        return isinstance(value, str)
    return t.kind == "any"


def convert(value: Any, kind: str) -> Any:
    """OmegaConf's conversion of a scalar for an int/float/bool/str field; ValueError when it refuses."""
    from omegaconf.errors import ValidationError
    from omegaconf.nodes import BooleanNode, FloatNode, IntegerNode, StringNode

    node_class = {"int": IntegerNode, "float": FloatNode, "bool": BooleanNode, "str": StringNode}[kind]
    try:
        return node_class(value=value)._value()
    except ValidationError as exc:
        raise ValueError(str(exc)) from None
