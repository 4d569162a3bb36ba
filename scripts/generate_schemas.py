#!/usr/bin/env python3
"""Generate `skills/<model>/schemas/*.schema.json` and `skills/<model>/templates/*.yaml` from TAO Core.

Why: TAO's specs are OmegaConf structured configs (`nvidia_tao_core.config.<network>.default_config.
ExperimentConfig`). TAO Core's own `dataclass2json_converter` turns them into a JSON-schema-like document
with non-standard types (`int`, `collection`, `categorical`, `ordered_int`, ...), `Infinity` bounds and
AutoML metadata. tao-flows needs a *real* JSON Schema that `jsonschema` can validate with, that rejects
the same unknown keys and wrong types OmegaConf rejects, and that still carries TAO's AutoML metadata.
So this script walks the OmegaConf structure (the ground truth of what TAO's merge accepts: node types,
Optional, element types of lists and dicts) and decorates it with the metadata from TAO's converter.

Usage: `python scripts/generate_schemas.py` (write) or `--check` (regenerate in memory, exit 1 listing
files that differ or are stale). Output is byte-for-byte reproducible for one nvidia-tao-core version.

Files per model (`skills/<model>/`):
- `schemas/<tao_action>.schema.json` — one per TAO action the skill runs (`actions.<step>.tao_action` of
  `skill.yaml`; Sparse4D's `dataset_convert` step is TAO network `annotations`, action `convert`, so its
  schema is `convert.schema.json` and describes the `annotations` ExperimentConfig).
- `templates/<step>.yaml` — one per action key (step) of the skill, e.g. `train`, `trt_evaluate`.
- `schemas/manifest.json` — generator, nvidia-tao-core version, per step its tao_action, network, schema,
  template and sections, and the sha256 of every generated file.

Schema conventions (what the validator and the AutoML search space may rely on):
- Dialect `$schema` = draft 2020-12. Standard keywords only for validation; TAO metadata under `x-tao-*`
  (annotations, ignored by validators).
- The whole ExperimentConfig is described in every action's schema (TAO loads the full config for every
  action). Per action only the top-level `required` differs: the sections that action reads
  (`actions.<step>.sections` of the skill; the intersection when two steps share a TAO action, e.g.
  `evaluate` and `trt_evaluate`).
- Every object built from a dataclass has `properties` and `additionalProperties: false` (unknown keys are
  errors at every level). Free-form dicts stay open: `Dict[str, X]` has `additionalProperties: <schema of X>`,
  `dict`/`Dict[str, Any]` has no `additionalProperties`. Optional dataclass sections whose default is null
  (rtdetr `distill`) are described by their dataclass and typed `["object", "null"]`.
- Every dataclass-backed object (the root too) has `x-tao-class`: the dataclass name, e.g.
  `ExperimentConfig`, `OptimConfig` (what OmegaConf's own error messages name).
- Leaf types: `integer`, `number` (accepts integers too, as OmegaConf does), `boolean`, `string`, `array`
  (with `items` from the element type), `object`. Optional fields carry a type list `[<type>, "null"]` and,
  when they have an `enum`, `null` in the enum. Unions carry a type list (nvpanoptix3d
  `train.clip_grad_norm_type`: `["number", "string"]`). String fields do not accept numbers (stricter
  than OmegaConf, which converts them): builders should quote or coerce.
- `enum` = TAO's `valid_options` (typed; for arrays it is under `items`). `minimum`/`maximum` = TAO's
  `valid_min`/`valid_max` when finite (numbers and integers only; for arrays under `items`).
  `math_cond` `"> v"`/`"< v"` become `exclusiveMinimum`/`exclusiveMaximum` (a `minimum` <= v is then
  dropped as redundant), `">= v"`/`"<= v"` tighten `minimum`/`maximum`; every `math_cond` is also kept
  verbatim as `x-tao-math-cond` (e.g. `"/ 8"` divisible by 8, `"^ 2"` power of two: not expressible).
- `default` = the value OmegaConf gives the key (the dataclass default), on leaves, lists and free-form
  dicts (not on dataclass objects). `x-tao-default` = TAO's UI `default_value` where it differs.
- Mandatory values (`???`, OmegaConf MISSING) are not schema errors: such a property has
  `"x-tao-missing": true` and no `default`; the literal `"???"` is accepted (for non-string types through
  `anyOf: [{"const": "???"}, <type schema>]`, annotations staying at the property level).
- Per property metadata, present only when TAO has it: `title`, `description`, `examples`, `pattern`
  (TAO regex), `x-tao-value-type` (TAO's type name: int, float, bool, string, list, list_2, collection,
  categorical, ordered_int, ...), `x-tao-automl-enabled` (bool), `x-tao-option-weights` (as TAO gives
  them, aligned with `enum`), `x-tao-math-cond` (string), `x-tao-depends-on` (string, dotted key),
  `x-tao-parent-param` (string), `x-tao-valid-min`/`x-tao-valid-max` (TAO's bounds as numbers, or the
  strings `"inf"`/`"-inf"` where TAO has an infinite bound), `x-tao-default-outside-bounds` (true where
  TAO's own default breaks its bound; the standard bound is then widened to the default, which TAO loads).
- Top level: `x-tao-network`, `x-tao-action`, `x-tao-core-version`, `x-tao-steps` (steps of the skill
  using this schema), and sorted lists of dotted keys: `x-tao-automl-default-parameters` (TAO's default
  AutoML search parameters), `x-tao-automl-disabled-parameters`, `x-tao-popular`, `x-tao-required`
  (TAO's `required: yes` keys) and `x-tao-missing-parameters` (the `???` keys inside the required
  sections and among the top-level scalars: what a complete spec must fill).

Template conventions: YAML with a comment header; top-level scalars except `results_dir`, `model_name`,
`encryption_key` (those are left out: handoffs fill them, secrets never live in a spec file), then the
sections the step reads, in dataclass order, with TAO's defaults; `???` kept where TAO has MISSING.
A null Optional dataclass section the step reads (rtdetr `distill`) is filled with its dataclass defaults.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import enum
import hashlib
import importlib
import importlib.metadata
import json
import logging
import math
import pathlib
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
SKILLS_DIR = REPO / "skills"
MODELS = ("rtdetr", "centerpose", "action_recognition", "sparse4d", "nvpanoptix3d")
GENERATOR = "scripts/generate_schemas.py"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
MISSING = "???"
# Top-level keys a template never fills: handoffs set them, and encryption_key is a secret.
TEMPLATE_OMITTED = ("results_dir", "model_name", "encryption_key")
# Sections per TAO action, used only when a model has no skill.yaml yet.
FALLBACK_SECTIONS = {
    "train": ["model", "dataset", "train"],
    "distill": ["model", "dataset", "train", "distill"],
    "evaluate": ["model", "dataset", "evaluate"],
    "inference": ["model", "dataset", "inference"],
    "export": ["model", "dataset", "export"],
    "quantize": ["model", "dataset", "quantize"],
    "gen_trt_engine": ["dataset", "gen_trt_engine"],
}
NETWORK_CONFIGS = "microservices/handlers/network_configs"
ANNOTATION_KEYS = ("title", "description", "examples", "default")
MATH_COND = re.compile(r"^\s*(>=|<=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")

# ------------------------------------------------------------------------ how TAO really reads a spec
# TAO Core's dataclasses say less than TAO's code does. These rules, each checked in NVIDIA's source (cited),
# make the schemas accept what TAO accepts. Sources: tao_pytorch_backend / tao_deploy are NVIDIA's GitHub
# repositories (release 6.25.10 / 6.25.11); NVPanoptix3D is not in them, its code is read from the
# nvidia-tao-pytorch 7.3.0 wheel on PyPI.

# TAO Core metadata that OmegaConf's merge ignores and TAO's code does not check: valid_min/valid_max and
# math_cond (minimum/maximum/exclusive*) and TAO's regex patterns. A value outside them is a warning (NVIDIA's
# own specs break them: centerpose gen_trt_engine max_batch_size 4 / opt_batch_size 2 against valid_min 8 / 4,
# nvidia_tao_core/config/centerpose/deploy.py:36-53 vs tao_deploy:nvidia_tao_deploy/cv/centerpose/specs/
# gen_trt_engine.yaml). The validator reads this list from each schema (`x-tao-advisory-keywords`).
ADVISORY_KEYWORDS = ["exclusiveMaximum", "exclusiveMinimum", "maximum", "minimum", "pattern"]

# Options TAO compares after `.lower()`: any case of a valid option is accepted (`x-tao-ignore-case`).
_TRT_DATA_TYPE = "tao_deploy:nvidia_tao_deploy/cv/common/initialize_experiments.py:54"
_QUANT_MODE = ("tao_pytorch_backend:nvidia_tao_pytorch/core/quantization/backends/modelopt/modelopt.py:105, "
               "torchao/torchao.py:209")
_QUANT_ALGORITHM = "tao_pytorch_backend:nvidia_tao_pytorch/core/quantization/backends/modelopt/utils.py:226"
_PANOPTIX = "nvidia-tao-pytorch 7.3.0 (PyPI):nvidia_tao_pytorch/cv/nvpanoptix3d/"
CASE_INSENSITIVE_OPTIONS: dict[str, dict[str, str]] = {
    "rtdetr": {
        "train.precision": "tao_pytorch_backend:nvidia_tao_pytorch/cv/rtdetr/scripts/train.py:93-97",
        # train.py lower-cases it to pick the Lightning strategy; pl_rtdetr_model.py:205 and distiller.py:328
        # compare "fsdp" as written, so FSDP in upper case would also need lower case there (DDP is fine).
        "train.distributed_strategy": "tao_pytorch_backend:nvidia_tao_pytorch/cv/rtdetr/scripts/train.py:107-111",
        "gen_trt_engine.tensorrt.data_type": _TRT_DATA_TYPE,
        "quantize.mode": _QUANT_MODE,
        "quantize.algorithm": _QUANT_ALGORITHM,
    },
    "centerpose": {"gen_trt_engine.tensorrt.data_type": _TRT_DATA_TYPE},
    "sparse4d": {
        "train.precision": "tao_pytorch_backend:nvidia_tao_pytorch/cv/sparse4d/scripts/train.py:42-46",
        "quantize.mode": _QUANT_MODE,
        "quantize.algorithm": _QUANT_ALGORITHM,
    },
    "nvpanoptix3d": {
        "train.optim.lr_scheduler": _PANOPTIX + "utils/helper.py:370,379 (NVIDIA's specs write WarmupPoly)",
        "train.optim.type": _PANOPTIX + "utils/helper.py:354",
        "train.precision": _PANOPTIX + "scripts/train.py:38",
        "train.distributed_strategy": _PANOPTIX + "scripts/train.py:46",
        # Not model.mode nor dataset.name: pl_model_2d.py:53,77 lower-case them, but model/model_2d.py:245 and
        # model/reconstruction/decoder.py:95 compare them as written.
    },
}

# Options TAO's code takes beyond TAO Core's valid_options.
EXTRA_OPTIONS: dict[str, dict[str, tuple[list[Any], str]]] = {
    "nvpanoptix3d": {"train.optim.type": (["SGD"], _PANOPTIX + "utils/helper.py:354-359 (sgd and adamw)")},
}

# Options of keys TAO's code never reads: a value outside TAO Core's list is a warning (`x-tao-unread`).
UNREAD_OPTIONS: dict[str, dict[str, str]] = {
    "nvpanoptix3d": {
        "inference.mode": _PANOPTIX + " reads model.mode, never inference.mode (no reference in cv/nvpanoptix3d)",
    },
}

# Keys TAO's code reads in more shapes than the dataclass annotation says. `key[]` means each item of a list.
# The strict merge lets both shapes through (a container is not checked as an item of a list of ints, nor as
# a new value of a Dict[str, str]); the schema then accepts exactly the shapes TAO's code reads.
EXTRA_SHAPES: dict[str, dict[str, tuple[dict[str, Any], str]]] = {
    "rtdetr": {
        "dataset.infer_data_sources.image_dir": (
            {"type": "array", "items": {"type": "string"}},
            "tao_pytorch_backend:nvidia_tao_pytorch/cv/rtdetr/dataloader/pl_od_data_module.py:107-109 "
            "(a string becomes a one-item list)",
        ),
        "dataset.augmentation.multi_scales[]": (
            {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
            "tao_pytorch_backend:nvidia_tao_pytorch/cv/rtdetr/model/pl_rtdetr_model.py:236-247 "
            "(an int is a square size, a [h, w] pair a rectangle)",
        ),
    },
}


@dataclass(frozen=True)
class Step:
    """One action key of a skill: which TAO network/action it runs and which sections it reads."""

    name: str
    tao_action: str
    network: str
    sections: tuple[str, ...]
    # `template_defaults` of the skill (and of the action), dotted key → value: where NVIDIA's pretrained
    # models need other values than TAO Core's dataclass defaults.
    template_defaults: tuple[tuple[str, Any], ...] = ()


@dataclass
class Collected:
    """Dotted keys gathered while walking one ExperimentConfig."""

    missing: list[str] = field(default_factory=list)
    popular: set[str] = field(default_factory=set)
    required: set[str] = field(default_factory=set)


# ---------------------------------------------------------------------------------------------- TAO


def tao_version() -> str:
    return importlib.metadata.version("nvidia-tao-core")


def _tao_converter():
    # TAO's converter module configures root logging on import; keep our output quiet.
    logging.getLogger("nvidia_tao_core").setLevel(logging.WARNING)
    from nvidia_tao_core.api_utils import dataclass2json_converter

    return dataclass2json_converter


def experiment_config(network: str) -> type:
    return importlib.import_module(f"nvidia_tao_core.config.{network}.default_config").ExperimentConfig


def tao_schema(dataclass_obj: Any) -> dict:
    """TAO Core's own (non-standard) schema of a dataclass instance (a class is instantiated)."""
    conv = _tao_converter()
    if isinstance(dataclass_obj, type):
        dataclass_obj = dataclass_obj()
    return conv.create_json_schema(conv.dataclass_to_json(dataclass_obj))


def tao_network_actions(network: str) -> list[str]:
    import nvidia_tao_core

    path = Path(nvidia_tao_core.__file__).parent / NETWORK_CONFIGS / f"{network}.config.json"
    return list(json.loads(path.read_text())["api_params"]["actions"])


# --------------------------------------------------------------------------------------------- skills


def skill_steps(model: str) -> list[Step]:
    """Steps from `skills/<model>/skill.yaml`, else TAO Core's declared actions with default sections."""
    path = SKILLS_DIR / model / "skill.yaml"
    if path.is_file():
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        network = data.get("network") or model
        steps = []
        for name, action in data["actions"].items():
            sections = action.get("sections") or FALLBACK_SECTIONS.get(action["tao_action"], [])
            defaults = {**(data.get("template_defaults") or {}), **(action.get("template_defaults") or {})}
            steps.append(
                Step(name, action["tao_action"], action.get("network") or network, tuple(sections),
                     tuple(defaults.items()))
            )
        return steps
    steps = []
    for name in tao_network_actions(model):
        if name == "dataset_convert":  # Sparse4D: TAO runs the annotations converter
            steps.append(Step(name, "convert", "annotations", ("data", "aicity")))
        else:
            steps.append(Step(name, name, model, tuple(FALLBACK_SECTIONS[name])))
    return steps


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
        return DataclassWalker(tao_schema(tp)).object_schema_for_type(tp, [], Collected())
    raise TypeError(f"no JSON Schema mapping for type annotation {tp!r}")


def _accepts(schema: dict, value: Any) -> bool:
    from jsonschema import Draft202012Validator

    return Draft202012Validator(schema).is_valid(value)


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


# ------------------------------------------------------------------------------------ OmegaConf walk


class DataclassWalker:
    """Walks an OmegaConf structured config next to TAO's schema of the same dataclass."""

    def __init__(self, tao: dict):
        self.tao = tao

    def object_schema_for_type(self, tp: type, path: list[str], found: Collected) -> dict:
        from omegaconf import OmegaConf

        return self.object_schema(OmegaConf.structured(tp), self.tao, path, found)

    def object_schema(self, cfg: Any, tao: dict | None, path: list[str], found: Collected) -> dict:
        """Schema of a structured DictConfig: every field known, unknown keys rejected."""
        from omegaconf import DictConfig, ListConfig, OmegaConf

        tao_props = (tao or {}).get("properties") or {}
        props: dict[str, dict] = {}
        hints = field_annotations(_structured_type(cfg))
        for key in cfg:
            node = cfg._get_node(key)
            meta = tao_props.get(key) if isinstance(tao_props.get(key), dict) else {}
            dotted = [*path, str(key)]
            ref_type = node._metadata.ref_type
            optional = node._metadata.optional
            self._collect(meta, ".".join(dotted), found)
            if isinstance(node, DictConfig) and _is_dataclass_type(_structured_type(node)):
                sub_type = _structured_type(node)
                if node._is_none():
                    # Optional dataclass section with a null default: describe its dataclass.
                    sub_tao = tao_schema(sub_type)
                    sub = DataclassWalker(sub_tao).object_schema(
                        OmegaConf.structured(sub_type), sub_tao, dotted, found
                    )
                    # Its AutoML lists are not merged: TAO's own schema has no such keys (the
                    # section is null), so a train sweep must not start writing it.
                    sub["default"] = None
                else:
                    sub = self.object_schema(node, meta, dotted, found)
                if optional:
                    allow_null(sub)
                for k in ("title", "description"):
                    if meta.get(k):
                        sub[k] = meta[k]
                if key in hints:
                    sub["x-tao-type"] = annotation_text(hints[key])
                props[str(key)] = sub
                continue
            missing = node._is_missing()
            if missing:
                found.missing.append(".".join(dotted))
            schema = type_schema(ref_type)
            if optional:
                schema = allow_null(schema)
            if isinstance(node, (DictConfig, ListConfig)):
                default = None if (node._is_none() or missing) else OmegaConf.to_container(node)
            else:
                default = None if missing else cfg[key]  # a UnionNode's _value() is its inner node
                if isinstance(default, enum.Enum):
                    default = default.name
            schema = _apply_tao_metadata(schema, meta, missing, default)
            if key in hints:
                schema["x-tao-type"] = annotation_text(hints[key])
            props[str(key)] = _wrap_missing(schema) if missing else _admit_default(schema, ".".join(dotted))
        out = {"type": "object", "properties": props, "additionalProperties": False}
        cls = _structured_type(cfg)
        if cls is not None:
            out["x-tao-class"] = cls.__name__  # OmegaConf names it in its errors ("Key 'x' not in 'Y'")
        return out

    @staticmethod
    def _collect(meta: dict, dotted: str, found: Collected) -> None:
        if meta.get("popular"):
            found.popular.add(dotted)


def _structured_type(node: Any) -> Any:
    """The dataclass behind a DictConfig node, if any (also for a null Optional section)."""
    from omegaconf import OmegaConf

    obj_type = node._metadata.object_type
    if _is_dataclass_type(obj_type):
        return obj_type
    ref = node._metadata.ref_type
    if _is_dataclass_type(ref):
        return ref
    if node._is_none() or node._is_missing():
        return None
    found = OmegaConf.get_type(node)
    return found if _is_dataclass_type(found) else None


def _tao_required(tao_json: Any, path: list[str], out: set[str]) -> None:
    """Dotted keys TAO's metadata marks `required: yes` (its converter only keeps their top sections)."""
    if not isinstance(tao_json, dict):
        return
    for key, entry in tao_json.items():
        if isinstance(entry, dict) and "metadata" in entry:
            if str(entry["metadata"].get("required", "")).lower() == "yes":
                out.add(".".join([*path, key]))
            _tao_required(entry.get("value"), [*path, key], out)


# ---------------------------------------------------------------------------------------- builders


@dataclass
class NetworkModel:
    """Full schema body, defaults and collected keys of one TAO network's ExperimentConfig."""

    network: str
    body: dict
    found: Collected
    config: Any  # OmegaConf structured config
    automl_default: list[str]
    automl_disabled: list[str]


def build_network(network: str) -> NetworkModel:
    from omegaconf import OmegaConf

    exp = experiment_config(network)
    tao = tao_schema(exp())
    found = Collected()
    cfg = OmegaConf.structured(exp)
    body = DataclassWalker(tao).object_schema(cfg, tao, [], found)
    conv = _tao_converter()
    required: set[str] = set()
    _tao_required(conv.dataclass_to_json(exp()), [], required)
    found.required = required
    automl_default = sorted(set(tao.get("automl_default_parameters") or []))
    disabled = set(tao.get("automl_disabled_parameters") or [])
    top = tao.get("properties", {}).get("automl_disabled_parameters")
    if isinstance(top, list):  # TAO's converter leaves top-level entries inside `properties`
        disabled |= set(top)
    automl_disabled = sorted(disabled)
    body["properties"].pop("automl_disabled_parameters", None)
    return NetworkModel(network, body, found, cfg, automl_default, automl_disabled)


def schema_document(model: str, tao_action: str, steps: list[Step], net: NetworkModel, version: str) -> dict:
    sections = set(steps[0].sections)
    for step in steps[1:]:
        sections &= set(step.sections)
    props = net.body["properties"]
    unknown = sorted(s for s in sections if s not in props)
    if unknown:
        raise SystemExit(f"{model}: sections {unknown} are not top-level keys of {net.network}'s ExperimentConfig")
    top_scalars = {k for k, v in props.items() if "properties" not in v}
    missing = sorted(
        m for m in net.found.missing if m.split(".")[0] in sections or m in top_scalars
    )
    doc = {
        "$schema": DIALECT,
        "title": f"TAO {net.network} {tao_action} spec ({model})",
        "description": (
            f"Generated by {GENERATOR} from nvidia-tao-core {version} "
            f"(nvidia_tao_core.config.{net.network}.default_config.ExperimentConfig)."
        ),
        **copy.deepcopy(net.body),
        "required": sorted(sections),
        "x-tao-network": net.network,
        "x-tao-action": tao_action,
        "x-tao-core-version": version,
        "x-tao-steps": [s.name for s in steps],
        "x-tao-automl-default-parameters": net.automl_default,
        "x-tao-automl-disabled-parameters": net.automl_disabled,
        "x-tao-popular": sorted(net.found.popular),
        "x-tao-required": sorted(net.found.required),
        "x-tao-missing-parameters": missing,
        "x-tao-advisory-keywords": ADVISORY_KEYWORDS,
    }
    apply_reading_rules(net.network, doc)
    return doc


def _node_at(doc: dict, dotted: str, create: bool = False) -> dict:
    """The schema of a dotted key (`key[]`: its items); with `create`, a key of a free-form mapping is added."""
    node = doc
    items = dotted.endswith("[]")
    for part in dotted.removesuffix("[]").split("."):
        props = node.get("properties")
        if props is not None and part in props:
            node = props[part]
        elif create and isinstance(node.get("additionalProperties"), dict):
            node.setdefault("properties", {})[part] = copy.deepcopy(node["additionalProperties"])
            node = node["properties"][part]
        else:
            raise SystemExit(f"{dotted}: no such key in the schema (a reading rule names it)")
    return node["items"] if items else node


def _enum_holder(node: dict) -> dict:
    """The dict that carries a property's `enum` (itself, its items, or an anyOf branch)."""
    for candidate in [node, node.get("items") or {}, *node.get("anyOf", [])]:
        if isinstance(candidate, dict) and "enum" in candidate:
            return candidate
    raise SystemExit(f"no enum in {node.get('title') or node}")


def apply_reading_rules(network: str, doc: dict) -> None:
    """Apply the reading rules (CASE_INSENSITIVE_OPTIONS, UNREAD_OPTIONS, EXTRA_OPTIONS, EXTRA_SHAPES) of a TAO
    network to a schema document."""
    for dotted, source in CASE_INSENSITIVE_OPTIONS.get(network, {}).items():
        _enum_holder(_node_at(doc, dotted))["x-tao-ignore-case"] = source
    for dotted, source in UNREAD_OPTIONS.get(network, {}).items():
        _enum_holder(_node_at(doc, dotted))["x-tao-unread"] = source
    for dotted, (options, source) in EXTRA_OPTIONS.get(network, {}).items():
        holder = _enum_holder(_node_at(doc, dotted))
        holder["enum"] = [*holder["enum"], *[o for o in options if o not in holder["enum"]]]
        holder["x-tao-extra-options"] = source
    for dotted, (shape, source) in EXTRA_SHAPES.get(network, {}).items():
        node = _node_at(doc, dotted, create=True)
        declared = {k: v for k, v in node.items() if not k.startswith("x-") and k not in ANNOTATION_KEYS}
        kept = {k: v for k, v in node.items() if k not in declared}
        node.clear()
        node.update({**kept, "anyOf": [declared, shape], "x-tao-shapes": source})


def template_document(step: Step, net: NetworkModel, version: str) -> str:
    from omegaconf import DictConfig, OmegaConf

    cfg = net.config
    data: dict[str, Any] = {}
    for key in cfg:
        node = cfg._get_node(key)
        is_section = isinstance(node, DictConfig)
        if key in TEMPLATE_OMITTED:
            continue
        if not is_section and key not in step.sections:
            value = cfg[key] if not node._is_missing() else MISSING
            data[key] = value.name if isinstance(value, enum.Enum) else value
            continue
        if key not in step.sections:
            continue
        if node._is_none():
            sub_type = _structured_type(node)
            node = OmegaConf.structured(sub_type) if sub_type else node
        data[key] = OmegaConf.to_container(node, resolve=False, enum_to_str=True)
    changed = _apply_template_defaults(step, data)
    header = (
        f"# Generated by {GENERATOR} from nvidia-tao-core {version}: TAO network '{net.network}', "
        f"action '{step.tao_action}' (step '{step.name}').\n"
        f"# Do not edit; re-run the generator. Values are TAO's defaults; '{MISSING}' marks values TAO "
        "requires, filled by data sources, handoffs or overrides.\n"
        f"# Sections: {', '.join(step.sections)}. results_dir, model_name and encryption_key are left "
        "out on purpose (handoffs fill them; secrets never live in a spec file).\n"
    )
    if changed:
        header += (
            "# Not TAO's defaults, to fit NVIDIA's pretrained models (template_defaults in skill.yaml): "
            + ", ".join(changed) + ".\n"
        )
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100)
    return header + body


def _apply_template_defaults(step: Step, data: dict[str, Any]) -> list[str]:
    """Set the step's template defaults that fall in the sections it reads; the keys set, in order."""
    changed = []
    for dotted, value in step.template_defaults:
        parts = dotted.split(".")
        if parts[0] not in data:
            continue  # a section this step does not read
        node = data
        for part in parts[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
            if not isinstance(node, dict):
                raise SystemExit(f"{step.name}: template default {dotted}: {part!r} is not a section of the template")
        if parts[-1] not in node:
            raise SystemExit(f"{step.name}: template default {dotted} is not a key of TAO's config")
        node[parts[-1]] = copy.deepcopy(value)
        changed.append(dotted)
    return changed


def dump_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False) + "\n"


def generate_model(model: str, version: str, cache: dict[str, NetworkModel]) -> dict[Path, bytes]:
    """All generated files of one model, path → bytes."""
    steps = skill_steps(model)
    by_action: dict[str, list[Step]] = {}
    for step in steps:
        by_action.setdefault(step.tao_action, []).append(step)
    out: dict[Path, bytes] = {}
    skill_dir = SKILLS_DIR / model
    manifest_actions: dict[str, dict] = {}
    for tao_action, action_steps in by_action.items():
        networks = {s.network for s in action_steps}
        if len(networks) != 1:
            raise SystemExit(f"{model}: steps of TAO action {tao_action!r} use different networks {networks}")
        net = cache.get(action_steps[0].network) or cache.setdefault(
            action_steps[0].network, build_network(action_steps[0].network)
        )
        rel = f"schemas/{tao_action}.schema.json"
        out[skill_dir / rel] = dump_json(schema_document(model, tao_action, action_steps, net, version)).encode()
    for step in steps:
        net = cache[step.network]
        rel_template = f"templates/{step.name}.yaml"
        out[skill_dir / rel_template] = template_document(step, net, version).encode()
        manifest_actions[step.name] = {
            "network": step.network,
            "schema": f"schemas/{step.tao_action}.schema.json",
            "sections": list(step.sections),
            "tao_action": step.tao_action,
            "template": rel_template,
        }
    manifest = {
        "generator": GENERATOR,
        "model": model,
        "nvidia_tao_core_version": version,
        "actions": manifest_actions,
        "files": {
            str(p.relative_to(skill_dir)): hashlib.sha256(b).hexdigest() for p, b in sorted(out.items())
        },
    }
    out[skill_dir / "schemas" / "manifest.json"] = dump_json(manifest).encode()
    return out


def generate_all(models: tuple[str, ...] = MODELS) -> dict[Path, bytes]:
    version = tao_version()
    cache: dict[str, NetworkModel] = {}
    files: dict[Path, bytes] = {}
    for model in models:
        files.update(generate_model(model, version, cache))
    return files


def existing_generated(models: tuple[str, ...] = MODELS) -> set[Path]:
    """Files currently in the generated folders (so stale ones can be reported or removed)."""
    found: set[Path] = set()
    for model in models:
        for sub, pattern in (("schemas", "*.json"), ("templates", "*.yaml")):
            found.update((SKILLS_DIR / model / sub).glob(pattern))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true",
                        help="regenerate in memory; exit 1 listing files that differ from the committed ones")
    args = parser.parse_args(argv)
    files = generate_all()
    stale = existing_generated() - set(files)
    if args.check:
        differing = sorted(
            str(p.relative_to(REPO)) for p, b in files.items() if not p.is_file() or p.read_bytes() != b
        )
        differing += sorted(f"{p.relative_to(REPO)} (stale)" for p in stale)
        if differing:
            print("generated files differ (run scripts/generate_schemas.py):", file=sys.stderr)
            for name in differing:
                print(f"  {name}", file=sys.stderr)
            return 1
        print(f"{len(files)} generated files up to date (nvidia-tao-core {tao_version()})")
        return 0
    for path in stale:
        path.unlink()
    for path, content in sorted(files.items()):
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_bytes() != content:
            path.write_bytes(content)
    print(f"wrote {len(files)} files for {', '.join(MODELS)} (nvidia-tao-core {tao_version()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
