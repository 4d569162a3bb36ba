"""TAO Core's metadata (bounds, options, math_cond, AutoML hints) onto a JSON Schema node."""

from __future__ import annotations

import math
from typing import Any

from schemagen.common import ANNOTATION_KEYS, MATH_COND, MISSING
from schemagen.typeschema import _accepts, _json_safe

# ------------------------------------------------------------------------------------ TAO metadata


def _apply_tao_metadata(schema: dict, meta: dict, is_missing: bool, default: Any) -> dict:
    """Decorate a structural property schema with TAO's metadata (bounds, enum, math_cond, AutoML)."""
    for key in ("title", "description"):
        if meta.get(key):
            schema[key] = meta[key]
    if meta.get("examples"):
        schema["examples"] = _json_safe(meta["examples"])
    tao_type = meta.get("type")
    if isinstance(tao_type, str):
        schema["x-tao-value-type"] = tao_type
    types_ = schema.get("type")
    type_list = types_ if isinstance(types_, list) else [types_]
    target = schema
    if "array" in type_list:
        target = dict(schema.get("items") or {})
    numeric = bool({"integer", "number"} & set(target.get("type") if isinstance(target.get("type"), list)
                                                else [target.get("type")]))
    if target is not schema and not target.get("type"):
        numeric = True  # untyped list items: bounds still apply to numbers only (JSON Schema semantics)
    if "enum" in meta:
        target["enum"] = list(meta["enum"])
        if "null" in type_list and target is schema:
            target["enum"].append(None)
    for tao_key, std_key, x_key in (("minimum", "minimum", "x-tao-valid-min"),
                                    ("maximum", "maximum", "x-tao-valid-max")):
        if tao_key in meta and meta[tao_key] is not None:
            bound = meta[tao_key]
            schema[x_key] = _json_safe(bound)
            if numeric and isinstance(bound, (int, float)) and not isinstance(bound, bool) \
                    and math.isfinite(bound):
                target[std_key] = bound
    if meta.get("math_cond"):
        cond = str(meta["math_cond"])
        schema["x-tao-math-cond"] = cond
        match = MATH_COND.match(cond)
        if match and numeric:
            op, num = match.group(1), float(match.group(2))
            value: int | float = int(num) if num.is_integer() and "integer" in str(target.get("type")) else num
            if op == ">":
                target["exclusiveMinimum"] = value
                if target.get("minimum") is not None and target["minimum"] <= value:
                    del target["minimum"]
            elif op == "<":
                target["exclusiveMaximum"] = value
                if target.get("maximum") is not None and target["maximum"] >= value:
                    del target["maximum"]
            elif op == ">=":
                target["minimum"] = max(value, target.get("minimum", value))
            elif op == "<=":
                target["maximum"] = min(value, target.get("maximum", value))
    if target is not schema and target:
        schema["items"] = target
    if meta.get("pattern") and "string" in type_list:
        schema["pattern"] = meta["pattern"]
    if meta.get("option_weights") is not None:
        schema["x-tao-option-weights"] = _json_safe(meta["option_weights"])
    if meta.get("depends_on"):
        schema["x-tao-depends-on"] = meta["depends_on"]
    if meta.get("parent_param"):
        schema["x-tao-parent-param"] = meta["parent_param"]
    if "automl_enabled" in meta:
        schema["x-tao-automl-enabled"] = bool(meta["automl_enabled"])
    if is_missing:
        schema["x-tao-missing"] = True
        if "default" in meta and meta["default"] not in (None, "", MISSING):
            schema["x-tao-default"] = _json_safe(meta["default"])
    else:
        schema["default"] = _json_safe(default)
        if "default" in meta and _json_safe(meta["default"]) != _json_safe(default):
            schema["x-tao-default"] = _json_safe(meta["default"])
    return schema


def _wrap_missing(schema: dict) -> dict:
    """Let a MISSING property hold the literal '???' even when its type is not a string."""
    if _accepts({k: v for k, v in schema.items() if not k.startswith("x-")}, MISSING):
        return schema
    annotations = {k: v for k, v in schema.items() if k in ANNOTATION_KEYS or k.startswith("x-")}
    validation = {k: v for k, v in schema.items() if k not in annotations}
    return {**annotations, "anyOf": [{"const": MISSING}, validation]}


def _admit_default(schema: dict, dotted: str) -> dict:
    """TAO's own default must validate: where it breaks a TAO bound (centerpose
    `evaluate.eval_num_symmetry` 1 with valid_min 3, nvpanoptix3d `train.optim.warmup_iters` 0 with
    math_cond "> 0") the bound is widened to the default and `x-tao-default-outside-bounds` set."""
    validation = {k: v for k, v in schema.items() if k != "default" and not k.startswith("x-")}
    default = schema.get("default")
    if _accepts(validation, default):
        return schema
    target = schema["items"] if isinstance(default, list) and "items" in schema else schema
    values = default if isinstance(default, list) else [default]
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if numbers:
        low, high = min(numbers), max(numbers)
        for key, broken in (("minimum", lambda b: low < b), ("exclusiveMinimum", lambda b: low <= b)):
            if key in target and broken(target[key]):
                del target[key]
                target["minimum"] = low
        for key, broken in (("maximum", lambda b: high > b), ("exclusiveMaximum", lambda b: high >= b)):
            if key in target and broken(target[key]):
                del target[key]
                target["maximum"] = high
        schema["x-tao-default-outside-bounds"] = True
    validation = {k: v for k, v in schema.items() if k != "default" and not k.startswith("x-")}
    if not _accepts(validation, default):
        raise SystemExit(f"{dotted}: TAO's default {default!r} does not fit the derived schema {validation}")
    return schema
