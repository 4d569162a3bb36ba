"""Dotted keys over nested dicts: how users and skills name TAO spec fields (`train.optim.lr`).

TAO specs are nested YAML; every override, handoff and data source names its field as a dotted path.
These helpers read, write and delete such paths, parse `KEY=VALUE` assignments with YAML-typed values
(`10` → int, `1e-4` → float, `true` → bool, `null`, `[1, 2]`, `{a: 1}`, OmegaConf's YAML rules), and expand flat
`{"a.b": 1}` mappings into nested ones.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from typing import Any

from taoflow.errors import UserError

_MISSING = object()
_KEY_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


def split_key(key: str) -> list[str]:
    """`a.b.c` → ['a', 'b', 'c']; an empty part (`a..b`, `.a`) is a UserError."""
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise UserError(f"invalid key {key!r}: use dotted names such as train.optim.lr")
    return parts


def get_dotted(tree: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """The value at `key`, or `default` when any part of the path is absent or not a mapping."""
    node: Any = tree
    for part in split_key(key):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


def has_dotted(tree: Mapping[str, Any], key: str) -> bool:
    return get_dotted(tree, key, _MISSING) is not _MISSING


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set `key` to `value`, creating (or replacing non-mapping) intermediate levels."""
    parts = split_key(key)
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def delete_dotted(tree: dict[str, Any], key: str) -> bool:
    """Remove `key`; True when something was removed. Emptied parents are kept (TAO sections stay)."""
    parts = split_key(key)
    node: Any = tree
    for part in parts[:-1]:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    if isinstance(node, dict) and parts[-1] in node:
        del node[parts[-1]]
        return True
    return False


def parse_value(raw: str) -> Any:
    """A YAML scalar/flow value read as TAO reads it (OmegaConf's rules, taoflow.specfile): ints, floats (also
    `1e-4`), bools, null, `[1, 2]`, `{a: 1}`; a quoted value stays a string; anything else is the text."""
    from taoflow.specfile import parse_value as parse_spec_value

    return parse_spec_value(raw)


def parse_assignment(item: str) -> tuple[str, Any]:
    """`train.optim.lr=1e-4` → ('train.optim.lr', 0.0001). A missing `=` or key is a UserError."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(f"invalid override {item!r}: use KEY=VALUE, e.g. train.num_epochs=10")
    for part in split_key(key):
        if not _KEY_PART.match(part):
            raise UserError(f"invalid key {key!r} in {item!r}: parts are names such as train.optim.lr")
    return key, parse_value(raw)


def parse_assignments(items: list[str]) -> dict[str, Any]:
    """Several `KEY=VALUE` items in order (a later one wins)."""
    return dict(parse_assignment(item) for item in items)


def expand(flat: Mapping[str, Any]) -> dict[str, Any]:
    """`{"a.b": 1, "c": {"d.e": 2}}` → `{"a": {"b": 1}, "c": {"d": {"e": 2}}}` (nested dicts merged)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if isinstance(value, Mapping):
            value = expand(value)
        if "." in key:
            existing = get_dotted(out, key, _MISSING)
            if isinstance(existing, dict) and isinstance(value, dict):
                deep_merge(existing, value)
            else:
                set_dotted(out, key, value)
        elif isinstance(out.get(key), dict) and isinstance(value, dict):
            deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def deep_merge(base: dict[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Merge `overlay` into `base` in place: mappings merge key by key, anything else replaces.

    Values are deep-copied so later edits of the result never alias the overlay (templates, skill data)."""
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(dict(value) if isinstance(value, Mapping) else value)
    return base


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Leaves by dotted key; an empty mapping is a leaf."""
    return dict(iter_leaves(tree, prefix))


def iter_leaves(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from iter_leaves(value, dotted + ".")
        else:
            yield dotted, value
