"""taoflow.specfile reads spec files as TAO does (OmegaConf's YAML rules, `${...}` interpolations), and every
reader goes through it: spec validate, spec render --overrides, the preflight, the emulator. The oracle for
the YAML rules and for interpolations is OmegaConf 2.3.0 itself (the version TAO Core pins)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from omegaconf import OmegaConf

import taoflow.commands  # noqa: F401 - registers the command groups on the app
from taoflow.cli import run_cli
from taoflow.errors import UserError
from taoflow.skill import load_skill
from taoflow.spec import build_spec
from taoflow.specfile import Resolver, Unresolved, load_mapping, parse_value, resolve_all
from taoflow.validate import validation_report

YAML_CASES = [
    "lr: 1e-4", "lr: 6e-05", "lr: 1.0e-5", "v: 2025-01-01", "n: 1_000", "x: .5", "b: yes", "b: on", "s: '1e-4'",
    "l: [1e-4, 2]", "n: 0x10", "t: 10:30", "z: ~", "e: ''", "inf: .inf",
]


@pytest.mark.parametrize("text", YAML_CASES)
def test_yaml_rules_are_omegaconfs(tmp_path, text):
    path = tmp_path / "spec.yaml"
    path.write_text(text + "\n")
    assert load_mapping(path) == OmegaConf.to_container(OmegaConf.load(path))


def test_floats_pyyaml_would_read_as_strings(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("train:\n  optim:\n    lr: 1e-4\n    lr_backbone: 1e-5\n")
    assert yaml.safe_load(path.read_text())["train"]["optim"]["lr"] == "1e-4"  # what PyYAML does
    spec = load_mapping(path)
    assert spec["train"]["optim"]["lr"] == 1e-4 and isinstance(spec["train"]["optim"]["lr_backbone"], float)
    assert parse_value("1e-4") == 1e-4 and parse_value("'1e-4'") == "1e-4"


def test_duplicate_keys_and_bad_yaml_are_user_errors(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("train:\n  num_epochs: 1\n  num_epochs: 2\n")
    with pytest.raises(UserError, match="duplicate key num_epochs"):
        load_mapping(path)
    path.write_text("train: [1,\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_mapping(path)
    path.write_text("- a\n")
    with pytest.raises(UserError, match="must hold a YAML mapping"):
        load_mapping(path)


def _omegaconf_resolve(spec: dict) -> dict:
    return OmegaConf.to_container(OmegaConf.create(spec), resolve=True)


def test_interpolations_resolve_as_omegaconf_resolves_them(monkeypatch):
    monkeypatch.setenv("TAOFLOW_TEST_KEY", "s3cr3t")
    spec = {
        "model": {"embed_dims": 256, "head": {"embed_dims": "${model.embed_dims}", "dims": "${..embed_dims}",
                                              "name": "head_${model.embed_dims}"}},
        "dataset": {"num_ids": 70, "classes": ["a", "b"]},
        "loss": {"num_ids": "${dataset.num_ids}", "first": "${dataset.classes[0]}"},
        "encryption_key": "${oc.env:TAOFLOW_TEST_KEY}",
        "other": "${oc.env:TAOFLOW_TEST_UNSET,fallback}",
    }
    assert resolve_all(spec, env=os.environ) == _omegaconf_resolve(spec)


def test_unresolvable_interpolations_say_why():
    resolver = Resolver({"a": "???", "b": 1}, default_of=lambda key: {"train.num_epochs": 10}[key], env={})
    assert resolver.resolve("x", "${train.num_epochs}") == 10  # TAO's default of a key the spec leaves out
    cases = {"${a}": "missing", "${nope}": "dangling", "${oc.env:TAO_ENCRYPTION_KEY}": "runtime",
             "${eval:'1+1'}": "runtime", "${undefined_resolver:x}": "error"}
    for value, kind in cases.items():
        with pytest.raises(Unresolved) as info:
            resolver.resolve("x", value)
        assert info.value.kind == kind, value


def test_encryption_key_from_the_environment_validates_without_the_variable(monkeypatch):
    monkeypatch.delenv("TAO_ENCRYPTION_KEY", raising=False)
    skill = load_skill("rtdetr")
    spec = build_spec(skill, "train", data={"train": "/d/train"},
                      overrides={"encryption_key": "${oc.env:TAO_ENCRYPTION_KEY}"})
    report = validation_report(skill, "train", spec)
    assert report.errors == [] and report.warnings == []
    # on a key TAO reads as a number, a value known only at run time is a warning
    spec["train"]["num_epochs"] = "${oc.env:TAOFLOW_EPOCHS}"
    report = validation_report(skill, "train", spec)
    assert report.errors == [] and [w.key for w in report.warnings] == ["train.num_epochs"]


def test_emulator_resolves_oc_env_at_run_time(tmp_path):
    """The emulator reads the key from its environment (never from the spec on disk or its command line)."""
    spec = tmp_path / "spec.yaml"
    results = tmp_path / "results"
    spec.write_text(
        f"results_dir: {results}\nencryption_key: ${{oc.env:TAO_ENCRYPTION_KEY}}\n"
        "train:\n  num_epochs: 2\n  checkpoint_interval: ${train.validation_interval}\n  optim:\n    lr: 1e-4\n"
        "dataset:\n  num_classes: 3\n"
    )
    env = {**os.environ, "TAO_ENCRYPTION_KEY": "k3y", "TAOFLOW_EMULATOR_EPOCH_SECONDS": "0"}
    from taoflow.emulator.spec import load_spec, schema_defaults

    os.environ["TAO_ENCRYPTION_KEY"] = "k3y"
    try:
        loaded = load_spec(spec, {}, schema_defaults("rtdetr", "train"))  # validation_interval: TAO's default
    finally:
        del os.environ["TAO_ENCRYPTION_KEY"]
    assert loaded["encryption_key"] == "k3y" and loaded["train"]["checkpoint_interval"] == 1
    assert loaded["train"]["optim"]["lr"] == 1e-4
    run = subprocess.run([sys.executable, "-m", "taoflow.emulator", "rtdetr", "train", "-e", str(spec)],
                         env={k: v for k, v in env.items() if k != "TAO_ENCRYPTION_KEY"}, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 1 and "TAO_ENCRYPTION_KEY" in run.stderr  # TAO fails reading an unset variable
    assert "k3y" not in run.stdout + run.stderr


def test_spec_validate_and_render_overrides_read_as_tao(tmp_path, capsys):
    spec = tmp_path / "train.yaml"
    spec.write_text("train:\n  optim:\n    lr: 1e-4\n  checkpoint_interval: ${train.validation_interval}\n")
    assert run_cli(["spec", "validate", "rtdetr", "train", str(spec)]) == 0
    overrides = tmp_path / "over.yaml"
    overrides.write_text("train:\n  optim:\n    lr_backbone: 1e-5\n")
    assert run_cli(["spec", "render", "rtdetr", "train", "--data", "train=/d/train", "--overrides", str(overrides)]) == 0
    rendered = yaml.safe_load(capsys.readouterr().out)
    assert rendered["train"]["optim"]["lr_backbone"] == 1e-5
