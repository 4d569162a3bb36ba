"""JSON Schema for a Python/OmegaConf type annotation, as OmegaConf's strict merge treats it."""

from __future__ import annotations

import dataclasses
import enum
import math
import pathlib
import types
import typing
from typing import Any

from schemagen.common import Collected
from schemagen.tao import tao_schema

# --------------------------------------------------------------------------------------- type schemas


def _json_safe(value: Any) -> Any:
    """Infinite floats are not JSON: TAO's unbounded limits become the strings "inf"/"-inf"."""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def annotation_text(tp: Any) -> str:
    """TAO Core's annotation of a field as text (`Optional[List[Dict[str, str]]]`): the `x-tao-type` that
    taoflow/strictmerge.py reads to apply OmegaConf's merge rules without TAO Core."""
    if tp is Any:
        return "Any"
    if tp is type(None):
        return "NoneType"
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        if len(members) == 1 and len(args) == 2:
            return f"Optional[{annotation_text(members[0])}]"
        inner = "Union[" + ", ".join(annotation_text(m) for m in members) + "]"
        return f"Optional[{inner}]" if len(members) < len(args) else inner
    if origin in (list, tuple):
        name = "List" if origin is list else "Tuple"
        return f"{name}[{', '.join(annotation_text(a) for a in args)}]" if args else name.lower()
    if origin is dict:
        return f"Dict[{annotation_text(args[0])}, {annotation_text(args[1])}]" if args else "dict"
    if tp in (list, tuple, dict):
        return tp.__name__
    if isinstance(tp, type):
        return "Path" if issubclass(tp, pathlib.PurePath) else tp.__name__
    raise TypeError(f"no text for type annotation {tp!r}")


def field_annotations(cls: Any) -> dict[str, Any]:
    """The annotations of a dataclass's fields, forward references resolved."""
    return typing.get_type_hints(cls) if _is_dataclass_type(cls) else {}


def allow_null(schema: dict) -> dict:
    """Let a property also be null (Optional in TAO's dataclass)."""
    if not schema:
        return schema
    if "anyOf" in schema:
        if {"type": "null"} not in schema["anyOf"]:
            schema["anyOf"].append({"type": "null"})
        return schema
    if "type" in schema:
        types_ = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if "null" not in types_:
            schema["type"] = [*types_, "null"]
    if "enum" in schema and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]
    return schema


def type_schema(tp: Any) -> dict:
    """JSON Schema for a Python type annotation (as OmegaConf would enforce it)."""
    if tp is Any or tp is object or tp is None:
        return {}
    if tp is type(None):
        return {"type": "null"}
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(tp)
        schemas = [type_schema(m) for m in members if m is not type(None)]
        if any(not s for s in schemas):
            return {}
        if all(set(s) == {"type"} and isinstance(s["type"], str) for s in schemas):
            out: dict = {"type": [s["type"] for s in schemas]}
        else:
            out = {"anyOf": schemas}
        if type(None) in members:
            out = allow_null(out)
        if isinstance(out.get("type"), list) and len(out["type"]) == 1:
            out["type"] = out["type"][0]
        return out
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp in (str, bytes, pathlib.Path):
        return {"type": "string"}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"type": "string", "enum": [m.name for m in tp]}
    if tp in (list, tuple) or origin in (list, tuple):
        args = typing.get_args(tp)
        out = {"type": "array"}
        item = type_schema(args[0]) if args else {}
        if item:
            out["items"] = item
        return out
    if tp is dict or origin is dict:
        args = typing.get_args(tp)
        out = {"type": "object"}
        value = type_schema(args[1]) if len(args) == 2 else {}
        if value:
            out["additionalProperties"] = value
        return out
    if _is_dataclass_type(tp):
        from schemagen.walk import DataclassWalker  # the walk builds nested dataclasses' schemas: mutual recursion

        return DataclassWalker(tao_schema(tp)).object_schema_for_type(tp, [], Collected())
    raise TypeError(f"no JSON Schema mapping for type annotation {tp!r}")


def _accepts(schema: dict, value: Any) -> bool:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema).is_valid(value)
