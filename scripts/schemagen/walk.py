"""The walk over an OmegaConf structured config that builds an ExperimentConfig's schema body."""

from __future__ import annotations

import enum
from typing import Any

from schemagen.common import Collected
from schemagen.metadata import _admit_default, _apply_tao_metadata, _wrap_missing
from schemagen.tao import tao_schema
from schemagen.typeschema import _is_dataclass_type, allow_null, annotation_text, field_annotations, type_schema

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
