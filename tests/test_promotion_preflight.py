"""`--promote` and `--warm-start` are checked before any GPU time: a pipeline that cannot produce what the
gate needs, a registry this taoflow cannot read, a champion whose files were deleted. The CLI refuses with
`error:` lines and exit 2 before any Prefect server is reached (PREFECT_API_URL points at a port where nothing
listens); the flow's own preflight fails the flow run with the same message in its state, having launched
nothing. The registries are real folders written by the registry engine (tests/registry_versions.py)."""

from __future__ import annotations

import json

import pytest

from flows import model_flow
from flows.cli import main  # noqa: F401  (registers run on the app)
from flows.demo import demo_parameters
from taoflow.cli import _register, run_cli
from taoflow.datasets import write_sample_data
from taoflow.promotion import MetricRule
from taoflow.registry import ModelRegistry
from taoflow.skill import load_skill
from taoflow.store import ArtifactStore
from tests.registry_versions import make_version
from tests.s3server import free_port

_register()
ACTIONS = "train,evaluate,export,gen_trt_engine,trt_evaluate"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("rtdetr-data")
    write_sample_data("rtdetr", root)
    return root


@pytest.fixture()
def no_prefect(monkeypatch, tmp_path):
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    monkeypatch.setenv("TAOFLOW_HOME", str(tmp_path / "home"))


def _run(capsys, data, store, *extra: str) -> tuple[int, str]:
    code = run_cli(["run", "rtdetr", "--data", f"train={data / 'train'}", "--data", f"eval={data / 'eval'}",
                    "--set", "dataset.num_classes=5", "--emulate", "--store", str(store), "--automl", "off", *extra])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def _user_error(code: int, out: str, *needles: str) -> None:
    assert code == 2, out
    assert out.count("error:") == 1 and "Traceback" not in out, out
    for needle in needles:
        assert needle in out, out


def _registry_with_champion(store_root) -> tuple[ModelRegistry, object]:
    store = ArtifactStore(store_root)
    registry = ModelRegistry(store)
    champion = make_version(store, "aaaaaa01", 0.6, 0.598, precision="fp16")
    outcome = registry.promote(champion, "prod", rule=MetricRule.for_skill(load_skill("rtdetr")))
    assert outcome.promoted
    return registry, champion


def test_promote_needs_the_steps_the_gate_reads(capsys, data, tmp_path, no_prefect):
    code, out = _run(capsys, data, tmp_path / "store", "--actions", "train,evaluate", "--promote", "prod")
    _user_error(code, out, "promotion to rtdetr/prod needs export, gen_trt_engine, trt_evaluate in the pipeline",
                "TensorRT parity needs gen_trt_engine and trt_evaluate")
    assert not (tmp_path / "store" / "runs").exists(), "nothing ran"


def test_bad_promotion_settings(capsys, data, tmp_path, no_prefect):
    code, out = _run(capsys, data, tmp_path / "s", "--actions", ACTIONS, "--promote", "../prod")
    _user_error(code, out, "registry name '../prod'")
    code, out = _run(capsys, data, tmp_path / "s", "--actions", ACTIONS, "--promote", "prod",
                     "--parity-tolerance", "fp16")
    _user_error(code, out, "--parity-tolerance takes PRECISION=VALUE")
    code, out = _run(capsys, data, tmp_path / "s", "--actions", ACTIONS, "--promote", "prod",
                     "--promote-margin", "-0.1")
    _user_error(code, out, "promotion.margin")


def test_a_champion_whose_files_were_deleted_is_refused_before_anything_runs(capsys, data, tmp_path, no_prefect):
    registry, champion = _registry_with_champion(tmp_path / "store")
    ArtifactStore(tmp_path / "store").remove(champion.engine)
    code, out = _run(capsys, data, tmp_path / "store", "--actions", ACTIONS, "--promote", "prod")
    _user_error(code, out, "files missing from the store", f"engine {champion.engine}", "roll back")
    code, out = _run(capsys, data, tmp_path / "store", "--actions", ACTIONS, "--warm-start", "prod")
    _user_error(code, out, "warm start from rtdetr/prod", f"engine {champion.engine}")
    assert not list((tmp_path / "store" / "runs").glob("*/*/*/status.json")), "no action ran"
    assert len(registry.history("rtdetr", "prod")) == 1, "nothing was recorded"


def test_a_registry_of_a_newer_format_is_refused(capsys, data, tmp_path, no_prefect):
    _registry_with_champion(tmp_path / "store")
    marker = tmp_path / "store" / "models" / "rtdetr" / "prod" / "registry.json"
    marker.write_text(json.dumps({"format": 99}))
    code, out = _run(capsys, data, tmp_path / "store", "--actions", ACTIONS, "--promote", "prod")
    _user_error(code, out, "written by a newer taoflow", "upgrade taoflow")


def test_dry_run_shows_the_warm_start_and_the_promotion(capsys, data, tmp_path, no_prefect):
    _, champion = _registry_with_champion(tmp_path / "store")
    code, out = _run(capsys, data, tmp_path / "store", "--actions", ACTIONS, "--promote", "prod",
                     "--warm-start", "prod", "--dry-run")
    assert code == 0, out
    assert "then: promote to rtdetr/prod" in out and f"champion aaaaaa01 ({champion.checkpoint})" in out
    assert f"pretrained_model_path: {champion.checkpoint}" in out


def test_the_flow_preflight_fails_the_run_with_the_message_and_launches_nothing(data, tmp_path, prefect_api):
    store = tmp_path / "store"
    _, champion = _registry_with_champion(store)
    ArtifactStore(store).remove(champion.checkpoint)
    flow_fn, _ = model_flow("rtdetr")
    parameters = demo_parameters("rtdetr", data, str(store), actions=ACTIONS.split(","),
                                 promotion={"name": "prod"}, automl_policy="off")
    state = flow_fn(parameters, return_state=True)
    assert state.is_failed()
    assert "files missing from the store" in state.message and f"checkpoint {champion.checkpoint}" in state.message
    assert not list((store / "runs").glob("*/*/*/status.json")), "no GPU step was launched"

    parameters = demo_parameters("rtdetr", data, str(store), actions=["train", "evaluate"],
                                 promotion={"name": "fresh"}, automl_policy="off")
    state = flow_fn(parameters, return_state=True)
    assert state.is_failed() and "needs export, gen_trt_engine, trt_evaluate" in state.message


def test_run_help_names_the_exit_codes(capsys):
    assert run_cli(["run", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "3 the run succeeded but the model was not promoted" in out and "--promote" in out
