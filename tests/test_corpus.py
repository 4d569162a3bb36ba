"""Conformance corpus: `taoflow spec validate` and TAO Core 7.3.0 agree on every spec in tests/corpus.

tests/corpus/<model>/*.yaml are spec files written for this test, each imitating a public NVIDIA spec (named
in its header) and the patterns NVIDIA's specs really use: learning rates as `1e-4`, `${...}`
interpolations, options in another case than TAO Core's, rectangle multi-scales, `??` tutorial
placeholders, TAO metadata bounds NVIDIA's own specs break, and the legacy layouts TAO 7.3 rejects. Each
header says:

    # Imitates <repo>:<path>           the public NVIDIA spec whose patterns the file reproduces
    # action: <skill action>
    # tao: accept | reject | reject-at-runtime
    # evidence: <repo>:<path>:<line>   (reject-at-runtime only: the NVIDIA code that fails on the value)

The oracle is TAO itself: `OmegaConf.merge(OmegaConf.structured(ExperimentConfig), OmegaConf.load(file))`,
then every interpolation resolved as TAO resolves the keys it reads (`${oc.env:TAO_ENCRYPTION_KEY}` set as in
the container; a reference to a value still `???` is a value TAO gets at run time). `reject-at-runtime` files
pass that merge but hold a value TAO's code refuses (an option outside TAO's list, fp16 for NVPanoptix3D): the
test checks that TAO Core does accept them and that spec validate rejects them, with the NVIDIA source cited.
Every rejection must exit 2 and name the dotted key TAO's merge names."""

from __future__ import annotations

import importlib
import re
from functools import cache
from pathlib import Path

import pytest

import taoflow.commands  # noqa: F401 - registers the command groups on the app
from taoflow.cli import run_cli
from taoflow.skill import load_skill

omegaconf = pytest.importorskip("omegaconf")
pytest.importorskip("nvidia_tao_core", reason="nvidia_tao_core (TAO Core 7.3.0) is not installed: no oracle to compare with")

from omegaconf import OmegaConf  # noqa: E402  (after the importorskip guards)
from omegaconf import errors as oc_errors  # noqa: E402

CORPUS = Path(__file__).resolve().parent / "corpus"
FILES = sorted(CORPUS.glob("*/*.yaml"))
VERDICTS = ("accept", "reject", "reject-at-runtime")
HEADER = re.compile(r"^#\s*(Imitates|action|tao|evidence):?\s*(.+?)\s*$", re.MULTILINE)


def header(path: Path) -> dict[str, str]:
    return {k.lower(): v for k, v in HEADER.findall(path.read_text())}


@cache
def structured(network: str):
    module = importlib.import_module(f"nvidia_tao_core.config.{network}.default_config")
    return OmegaConf.structured(module.ExperimentConfig)


def tao_verdict(network: str, path: Path) -> tuple[bool, str, str]:
    """(accepted, the dotted key TAO names, TAO's message): the strict merge, then the interpolations."""
    try:
        merged = OmegaConf.merge(structured(network), OmegaConf.load(path))
    except Exception as exc:
        return False, getattr(exc, "full_key", "") or "", f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    try:
        OmegaConf.to_container(merged, resolve=True, throw_on_missing=False)
    except oc_errors.InterpolationToMissingValueError:
        pass  # a reference to a value still ??? : TAO is given the value at run time
    except Exception as exc:
        return False, getattr(exc, "full_key", "") or "", f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return True, "", ""


def ours(model: str, action: str, path: Path, capsys) -> tuple[int, str]:
    code = run_cli(["spec", "validate", model, action, str(path)])
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return code, captured.err


@pytest.fixture(autouse=True)
def _container_environment(monkeypatch):
    """The variables the corpus's `${oc.env:...}` name are set in TAO's container at run time."""
    monkeypatch.setenv("TAO_ENCRYPTION_KEY", "corpus-key")


@pytest.mark.parametrize("path", FILES, ids=[f"{p.parent.name}/{p.stem}" for p in FILES])
def test_spec_validate_agrees_with_tao_core(path, capsys):
    head = header(path)
    assert head.get("imitates") and head.get("action") and head.get("tao") in VERDICTS, f"{path}: incomplete header"
    model, action = path.parent.name, head["action"]
    skill = load_skill(model)
    network = skill.action(action).network or skill.network
    accepted, tao_key, tao_message = tao_verdict(network, path)
    expected = head["tao"]
    assert accepted == (expected != "reject"), f"TAO Core: {tao_message or 'accepts'}; the header says {expected}"
    code, err = ours(model, action, path, capsys)
    if expected == "accept":
        assert code == 0, f"spec validate rejects what TAO accepts:\n{err}"
        return
    assert code == 2, f"spec validate accepts what TAO rejects ({tao_message or head.get('evidence')})"
    if tao_key:
        assert re.search(rf"(^|\s){re.escape(tao_key)}(:|\[| )", err, re.MULTILINE), (
            f"TAO names {tao_key}; spec validate says:\n{err}")
    if expected == "reject-at-runtime":
        assert head.get("evidence"), "a runtime rejection cites the NVIDIA code that fails"


def test_corpus_covers_every_model_and_action_both_ways():
    counts: dict[tuple[str, str], set[str]] = {}
    for path in FILES:
        head = header(path)
        counts.setdefault((path.parent.name, head.get("action", "")), set()).add(head.get("tao", ""))
    for model in ("rtdetr", "centerpose", "action_recognition", "sparse4d", "nvpanoptix3d"):
        for action in load_skill(model).actions:
            verdicts = counts.get((model, action), set())
            assert "accept" in verdicts, f"{model} {action}: no accepted spec in the corpus"
            assert verdicts & {"reject", "reject-at-runtime"}, f"{model} {action}: no rejected spec in the corpus"


def test_every_corpus_file_names_the_nvidia_spec_it_imitates():
    """Every file names the public NVIDIA spec whose patterns it reproduces, as repo:path."""
    for path in FILES:
        imitates = header(path)["imitates"]
        assert re.match(r"^[\w.-]+(/[\w.-]+)?:[\w./-]+\.(yaml|yml|py|md)", imitates), f"{path}: {imitates}"
