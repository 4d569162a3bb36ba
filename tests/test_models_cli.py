"""`taoflow models list|show|rollback` through `taoflow.cli.run_cli`, on local and s3:// (moto server) stores."""

# ruff: noqa: F811  (test functions take the imported fixtures as parameters)

from __future__ import annotations

import pytest

from taoflow.cli import _register, run_cli
from taoflow.promotion import MetricRule
from taoflow.registry import ModelRegistry
from tests.registry_versions import make_version
from tests.s3server import any_store_root, s3_root, s3_server  # noqa: F401  (pytest fixtures)

RULE = MetricRule("val_mAP", "maximize")


@pytest.fixture(scope="module", autouse=True)
def registered_commands():
    _register()


@pytest.fixture
def registry(any_store_root) -> ModelRegistry:
    registry = ModelRegistry(any_store_root)
    store = registry.store
    registry.promote(make_version(store, "aaaaaa01", 0.60, 0.598), "prod", rule=RULE)
    registry.promote(make_version(store, "bbbbbb02", 0.63, 0.627), "prod", rule=RULE)
    registry.promote(make_version(store, "cccccc03", 0.70, 0.61), "prod", rule=RULE)  # parity fails
    return registry


def test_list_shows_each_name_with_its_champion(registry, capsys, tmp_path):
    registry.promote(make_version(registry.store, "dddddd04", 0.40, 0.40, precision="int8"), "staging", rule=RULE)
    assert run_cli(["models", "list", "--store", registry.store.root]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "rtdetr" in line]
    assert len(rows) == 2
    assert "prod" in rows[0] and "bbbbbb02" in rows[0] and "test_mAP 0.6300" in rows[0] and "rejected" in rows[0]
    assert "staging" in rows[1] and "dddddd04" in rows[1] and "int8" in rows[1]
    assert run_cli(["models", "list", "--store", str(tmp_path / "empty")]) == 0
    assert "no models registered in" in capsys.readouterr().out


def test_show_prints_history_then_the_engine_uri_last(registry, capsys):
    assert run_cli(["models", "show", "rtdetr", "prod", "--store", registry.store.root]) == 0
    out = capsys.readouterr().out
    lines = out.rstrip("\n").splitlines()
    champion = registry.champion("rtdetr", "prod")
    assert lines[-1] == champion.engine and champion.version_id == "bbbbbb02"
    for key in ("aaaaaa01", "bbbbbb02", "cccccc03"):
        assert key in out
    assert "promoted" in out and "rejected" in out
    assert "TensorRT parity (fp16)" in out and "0.0900 > tolerance 0.0100" in out
    assert "AP 0.6270" in out  # the TensorRT KPI column


def test_rollback_prints_the_restored_engine_last(registry, capsys):
    root = registry.store.root
    assert run_cli(["models", "rollback", "rtdetr", "prod", "--reason", "bad night", "--store", root]) == 0
    lines = capsys.readouterr().out.rstrip("\n").splitlines()
    previous = registry.history("rtdetr", "prod")[0].champion
    assert lines[-1] == previous.engine
    assert "rolled back from bbbbbb02 to aaaaaa01: bad night" in " ".join(lines)
    assert run_cli(["models", "rollback", "rtdetr", "prod", "--to", "bbbbbb", "--store", root]) == 0
    assert capsys.readouterr().out.rstrip("\n").splitlines()[-1] == registry.champion("rtdetr", "prod").engine
    assert run_cli(["models", "show", "rtdetr", "prod", "--store", root]) == 0
    assert "rolled_back" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["models", "show", "rtdetr", "staging"], "error: no registry entry rtdetr/staging in "),
    (["models", "show", "yolo", "prod"], "error: unknown model 'yolo'; known models: "),
    (["models", "rollback", "rtdetr", "nope"], "error: no registry entry rtdetr/nope in "),
    (["models", "rollback", "rtdetr", "prod", "--to", "ffffff"], "error: --to 'ffffff' is not a run key of any"),
    (["models", "show", "rtdetr", "../prod"], "error: name '../prod': use 1-63 letters"),
])
def test_bad_input_is_one_error_line_and_exit_2(registry, capsys, argv, message):
    assert run_cli([*argv, "--store", registry.store.root]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), captured.err
    assert "Traceback" not in captured.err + captured.out


def test_show_refuses_a_champion_whose_engine_was_deleted(registry, capsys):
    store = registry.store
    engine = registry.champion("rtdetr", "prod").engine
    store.fs.rm_file(store.local_path(engine) if store.is_local else engine)
    assert run_cli(["models", "show", "rtdetr", "prod", "--store", store.root]) == 2
    captured = capsys.readouterr()
    assert "bbbbbb02" in captured.out  # the history is still shown
    assert captured.err.strip().startswith("error: rtdetr/prod: the champion bbbbbb02 has files missing from the "
                                           f"store: engine {engine}")
    assert not captured.out.rstrip("\n").splitlines()[-1].endswith(".engine")


def test_show_a_name_whose_every_challenger_was_rejected(registry, capsys):
    registry.promote(make_version(registry.store, "eeeeee05", 0.70, 0.50), "edge", rule=RULE)  # parity fails
    assert run_cli(["models", "show", "rtdetr", "edge", "--store", registry.store.root]) == 2
    captured = capsys.readouterr()
    assert "eeeeee05" in captured.out and "rejected" in captured.out
    assert captured.err.strip() == "error: rtdetr/edge has no champion: every challenger so far was rejected"
