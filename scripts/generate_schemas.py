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
import enum
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the schemagen package beside this script

from schemagen.common import (
    ANNOTATION_KEYS,
    DIALECT,
    GENERATOR,
    MISSING,
    MODELS,
    REPO,
    SKILLS_DIR,
    TEMPLATE_OMITTED,
    Collected,
    Step,
)
from schemagen.rules import ADVISORY_KEYWORDS, CASE_INSENSITIVE_OPTIONS, EXTRA_OPTIONS, EXTRA_SHAPES, UNREAD_OPTIONS
from schemagen.tao import _tao_converter, experiment_config, skill_steps, tao_schema, tao_version
from schemagen.walk import DataclassWalker, _structured_type, _tao_required

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

