"""taoflow.strictmerge decides what TAO's strict merge accepts without running it; here every rule is compared
with OmegaConf 2.3.0's real merge (the library TAO Core pins), field type by field type.

Each field type TAO Core 7.3.0 uses (`test_every_tao_field_type_is_covered` keeps the list complete) gets a
small dataclass with that one field; a battery of values (scalars, strings that convert or not, `???`,
interpolations, lists, nested lists, mappings, nulls) is merged into it by OmegaConf and checked by
strict_merge, and the verdicts must be equal. No mocks: the oracle is OmegaConf itself."""

# TAO Core spells its annotations with typing.Optional / Union, so these fields do too.
# ruff: noqa: UP007, UP045

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
import typing
from dataclasses import field
from functools import cache
from pathlib import Path
from typing import Any, Optional, Union

import pytest
from omegaconf import MISSING, OmegaConf

from taoflow.strictmerge import TaoType, convert, parse_type, strict_merge

REPO = Path(__file__).resolve().parent.parent


@cache
def _generator():
    spec = importlib.util.spec_from_file_location("generate_schemas", REPO / "scripts" / "generate_schemas.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    module.typeschema = importlib.import_module("schemagen.typeschema")  # its package is on sys.path now
    return module


@dataclasses.dataclass
class Inner:
    a: int = 1
    b: str = "x"


def _field(tp: Any, default: Any = dataclasses.MISSING, factory: Any = None) -> type:
    spec = field(default_factory=factory) if factory is not None else field(default=default)
    return dataclasses.make_dataclass("F", [("f", tp, spec)])


# One entry per field type (and default shape) found in TAO Core 7.3.0's configs.
KINDS: dict[str, type] = {
    "int": _field(int, 1), "float": _field(float, 1.0), "bool": _field(bool, True), "str": _field(str, "s"),
    "int_missing": _field(int, MISSING), "str_missing": _field(str, MISSING),
    "opt_str": _field(Optional[str], None), "opt_str_value": _field(Optional[str], "v"),
    "opt_int": _field(Optional[int], None), "opt_float": _field(Optional[float], None),
    "opt_bool": _field(Optional[bool], None), "any": _field(Any, None),
    "list_int": _field(list[int], factory=lambda: [1, 2]), "list_str": _field(list[str], factory=lambda: ["a"]),
    "list_float": _field(list[float], factory=lambda: [1.0]), "list_bool": _field(list[bool], factory=lambda: [True]),
    "opt_list_str": _field(Optional[list[str]], None), "opt_list_int": _field(Optional[list[int]], None),
    "opt_list_float": _field(Optional[list[float]], None),
    "list_list_float": _field(list[list[float]], factory=lambda: [[1.0]]),
    "list_list_int": _field(list[list[int]], factory=lambda: [[1]]),
    "list_list_any": _field(list[list[Any]], factory=lambda: [[1]]), "list_untyped": _field(list, factory=lambda: [1]),
    "opt_dict_str_str": _field(Optional[dict[str, str]], None),
    "opt_dict_str_str_value": _field(Optional[dict[str, str]], factory=lambda: {"image_dir": "", "k": "v"}),
    "opt_dict_str_any": _field(Optional[dict[str, Any]], None), "dict_untyped": _field(dict, factory=dict),
    "opt_dict_str_int": _field(Optional[dict[str, int]], None),
    "dict_str_any": _field(dict[str, Any], factory=lambda: {"policy": "cosine"}),
    "dict_str_float": _field(dict[str, float], factory=dict),
    "opt_list_dict": _field(Optional[list[dict[str, str]]], None),
    "opt_list_dataclass": _field(Optional[list[Inner]], None), "list_dataclass": _field(list[Inner], factory=lambda: [Inner()]),
    "union_float_str": _field(Union[float, str], 2.0),
    "dataclass": _field(Inner, factory=Inner), "opt_dataclass": _field(Optional[Inner], None),
}

PROBES: list[Any] = [
    None, True, False, 0, 1, 2, -3, 1.0, 1.5, 10**20, -0.0, "1", "1.5", "abc", "true", "yes", "", "  ", "nan", "inf",
    "1_000", "0x10", "+5", " 5", "1e-4", "???", "??", "${a}", "x${a}",
    [], [1], ["a"], [1.5], [True], ["1"], [None], ["???"], ["${a}"], [1, "???"], ["x", 2], [1, [2]],
    [[1, 2]], [[1.0, 2.0]], [[1, "x"]], [[None]], [["???"]], [["${a}"]], [[True]], [[1.5]], [["a"]], [[1]], [[]],
    [[[1]]], [{}], [{"a": 1}], [{"a": [1]}], [{"a": None}], [{1: "a"}], [{"a": "x"}], [{"c": 1}], [{"a": "???"}],
    [{"a": "${a}"}],
    {}, {"a": 1}, {"a": "b"}, {"a": [1]}, {"a": {"b": 1}}, {1: "a"}, {True: 1}, {"yes": 1}, {"a": None},
    {"a": "???"}, {"c": 1}, {"b": 3}, {"a": "2"}, {"a": "x"}, {"a": "${a}"}, {"a": "???", "b": "???"},
    {"a": []}, {"a": {}}, {"image_dir": [1, 2]}, {"image_dir": "x"}, {"k": [1]}, {"k": None}, {"k": "${a}"},
    {"policy": [1]}, {"policy": {"x": 1}}, {"policy": None},
]


def schema_of(cls: type) -> dict[str, Any]:
    """What the generator writes for a dataclass: x-tao-type, defaults, properties, items."""
    gen = _generator()
    hints = typing.get_type_hints(cls)
    cfg = OmegaConf.structured(cls)
    props: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        node: dict[str, Any] = {"x-tao-type": gen.typeschema.annotation_text(tp)}
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        optional_dc = typing.get_origin(tp) is Union and args and dataclasses.is_dataclass(args[0])
        if dataclasses.is_dataclass(tp) or optional_dc:
            node["properties"] = schema_of(tp if dataclasses.is_dataclass(tp) else args[0])["properties"]
        for arg in args:
            if dataclasses.is_dataclass(arg) and typing.get_origin(tp) is list:
                node["items"] = schema_of(arg)
            for inner in typing.get_args(arg):
                if dataclasses.is_dataclass(inner):
                    node["items"] = schema_of(inner)
        child = cfg._get_node(f.name)
        if not child._is_missing() and "properties" not in node:
            node["default"] = OmegaConf.to_container(cfg, resolve=False)[f.name]
        props[f.name] = node
    return {"properties": props, "x-tao-type": cls.__name__}


def omegaconf_accepts(cls: type, value: Any) -> bool:
    try:
        OmegaConf.merge(OmegaConf.structured(cls), OmegaConf.create({"f": value}))
        return True
    except Exception:
        return False


def ours_accepts(cls: type, value: Any) -> bool:
    result = strict_merge({"f": value}, schema_of(cls))
    # `${a}` points nowhere: the merge itself resolves an interpolation given for a whole section or list
    return not result.issues and not any(i.resolved_by_merge for i in result.interpolations)


@pytest.mark.parametrize("kind", list(KINDS))
def test_strict_merge_agrees_with_omegaconf_for_every_probe(kind):
    cls = KINDS[kind]
    disagreements = [
        (value, omegaconf_accepts(cls, value)) for value in PROBES
        if omegaconf_accepts(cls, value) != ours_accepts(cls, value)
    ]
    assert disagreements == [], f"{kind}: (value, OmegaConf accepts) where strict_merge says otherwise"


def test_every_tao_field_type_is_covered():
    """Every annotation in TAO Core 7.3.0's configs has a kind above (dataclass names aside)."""
    pytest.importorskip("nvidia_tao_core", reason="nvidia_tao_core is not installed: TAO's field types are unknown")
    gen = _generator()
    covered = {_shape(parse_type(gen.typeschema.annotation_text(typing.get_type_hints(c)["f"]))) for c in KINDS.values()}
    seen: set[tuple] = set()

    def walk(cls: type) -> None:
        for tp in typing.get_type_hints(cls).values():
            seen.add(_shape(parse_type(gen.typeschema.annotation_text(tp))))
            for arg in (tp, *typing.get_args(tp), *(a for x in typing.get_args(tp) for a in typing.get_args(x))):
                if dataclasses.is_dataclass(arg) and arg is not cls:
                    walk(arg)

    for network in ("rtdetr", "centerpose", "action_recognition", "sparse4d", "nvpanoptix3d", "annotations"):
        walk(importlib.import_module(f"nvidia_tao_core.config.{network}.default_config").ExperimentConfig)
    assert seen - covered == set()


def _shape(t: TaoType) -> tuple:
    """A type without dataclass names (every dataclass merges alike)."""
    return (t.kind, t.optional, tuple(_shape(a) for a in t.args))


def test_conversions_are_omegaconfs_own():
    assert convert("10", "int") == 10 and convert(5, "str") == "5" and convert("1e-4", "float") == 1e-4
    assert convert("yes", "bool") is True and convert(0, "bool") is False and convert(3, "float") == 3.0
    for value, kind in (("1.5", "int"), (True, "int"), (True, "float"), ("maybe", "bool"), ([1], "str")):
        with pytest.raises(ValueError):
            convert(value, kind)


def test_issues_name_the_dotted_key_and_what_tao_allows():
    schema = schema_of(_field(list[list[float]], factory=lambda: [[1.0]]))
    issue = strict_merge({"f": [[1.0, 2]], "g": 1}, schema).issues
    assert [(i.key, i.kind) for i in issue] == [("f[0][1]", "type"), ("g", "unknown")]
    assert "write 1.0, not 1" in issue[0].message
    merged = strict_merge({"f": [[1.5]]}, schema)
    assert merged.issues == [] and merged.merged == {"f": [[1.5]]}
    converted = strict_merge({"f": "7"}, schema_of(_field(int, 1)))
    assert converted.merged == {"f": 7}


def test_type_annotations_parse():
    t = parse_type("Optional[List[Dict[str, str]]]")
    assert (t.kind, t.optional, t.item.kind, t.item.value.kind) == ("list", True, "dict", "str")
    assert parse_type("Union[float, str]").kind == "union"
    assert parse_type("RTDatasetConfig") == TaoType("object", False, (), "RTDatasetConfig")
    assert parse_type("Optional[RTDistillationConfig]").optional is True
