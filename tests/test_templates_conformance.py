"""Templates and schemas agree with TAO Core's own config classes: every template merges strictly into
its ExperimentConfig (what TAO does at load), `???` stays MISSING, and the schema's objects list exactly
the keys OmegaConf accepts at every level."""

from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path

import pytest
import yaml

omegaconf = pytest.importorskip("omegaconf", reason="omegaconf (TAO Core's config library) is not installed")
pytest.importorskip("nvidia_tao_core", reason="nvidia_tao_core is not installed: cannot check against TAO's config")

from omegaconf import DictConfig, OmegaConf  # noqa: E402  (after the importorskip guards)
from omegaconf.errors import ConfigKeyError, ValidationError  # noqa: E402

SKILLS = Path(__file__).resolve().parent.parent / "skills"
MODELS = ("rtdetr", "centerpose", "action_recognition", "sparse4d", "nvpanoptix3d")

_STRUCTURED: dict[str, DictConfig] = {}


def structured(network: str) -> DictConfig:
    if network not in _STRUCTURED:
        module = importlib.import_module(f"nvidia_tao_core.config.{network}.default_config")
        _STRUCTURED[network] = OmegaConf.structured(module.ExperimentConfig)
    return _STRUCTURED[network]


def steps() -> list[tuple[str, str, dict]]:
    out = []
    for model in MODELS:
        manifest = json.loads((SKILLS / model / "schemas" / "manifest.json").read_text())
        out += [(model, step, action) for step, action in manifest["actions"].items()]
    return out


@pytest.mark.parametrize(("model", "step", "action"), steps())
def test_template_merges_strictly_into_experiment_config(model, step, action):
    template = yaml.safe_load((SKILLS / model / action["template"]).read_text())
    merged = OmegaConf.merge(structured(action["network"]), template)
    schema = json.loads((SKILLS / model / action["schema"]).read_text())
    for dotted in schema["x-tao-missing-parameters"]:
        node = merged
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node[part]
        assert OmegaConf.is_missing(node, leaf), f"{dotted} should stay MISSING after the merge"


def test_strict_merge_rejects_what_the_schema_rejects():
    """The cross-check runs both ways on the same mistakes: OmegaConf refuses them too."""
    base = structured("rtdetr")
    with pytest.raises(ConfigKeyError):
        OmegaConf.merge(base, {"train": {"optim": {"not_an_option": 1}}})
    with pytest.raises(ValidationError):
        OmegaConf.merge(base, {"dataset": {"num_classes": "five"}})


def _is_dataclass(node: DictConfig) -> bool:
    meta = node._metadata
    return any(isinstance(t, type) and dataclasses.is_dataclass(t) for t in (meta.object_type, meta.ref_type))


def _compare(cfg: DictConfig, node: dict, dotted: str, problems: list[str]) -> None:
    """Every dataclass-backed object lists exactly OmegaConf's keys and forbids others."""
    props = node["properties"]
    if set(props) != set(cfg.keys()):
        problems.append(f"{dotted or '<root>'}: schema {sorted(set(props) ^ set(cfg.keys()))}")
    if node.get("x-tao-class") != OmegaConf.get_type(cfg).__name__:
        problems.append(f"{dotted or '<root>'}: x-tao-class {node.get('x-tao-class')!r}")
    if node.get("additionalProperties") is not False:
        problems.append(f"{dotted or '<root>'}: unknown keys are not rejected")
    for key in cfg:
        child = cfg._get_node(key)
        sub = props.get(key, {})
        if isinstance(child, DictConfig) and "x-tao-class" in sub:
            if child._is_none():
                ref = child._metadata.ref_type
                child = OmegaConf.structured(ref)
            _compare(child, sub, f"{dotted}{key}.", problems)
        elif isinstance(child, DictConfig) and _is_dataclass(child):
            problems.append(f"{dotted}{key}: dataclass section without properties")


@pytest.mark.parametrize("model", MODELS)
def test_schema_keys_equal_omegaconf_keys(model):
    manifest = json.loads((SKILLS / model / "schemas" / "manifest.json").read_text())
    for action in {a["schema"]: a for a in manifest["actions"].values()}.values():
        schema = json.loads((SKILLS / model / action["schema"]).read_text())
        problems: list[str] = []
        _compare(structured(action["network"]), schema, "", problems)
        assert problems == []
