"""`taoflow checkpoints` through `taoflow.cli.run_cli`, on local and s3:// (moto server) results folders."""

# ruff: noqa: F811  (test functions take the imported fixtures as parameters)

from __future__ import annotations

import pytest

from taoflow.cli import _register, app, run_cli
from taoflow.store import ArtifactStore
from tests.checkpoint_layouts import CKPT, put_results, status_text
from tests.s3server import any_store_root, s3_root, s3_server  # noqa: F401  (pytest fixtures)


@pytest.fixture(scope="module", autouse=True)
def registered_commands():
    _register()
    if len(app.registered_commands) + len(app.registered_groups) < 2 and app.registered_callback is None:
        # Typer runs a lone command as the app itself; a group callback keeps `taoflow checkpoints ...`
        # addressable while this is the only engine command registered.
        app.callback()(lambda: None)


@pytest.fixture
def results(any_store_root, tmp_path) -> str:
    store = ArtifactStore(any_store_root)
    uri = store.results_uri("rtdetr", "abc", "train")
    put_results(store, uri, tmp_path / "tree", {
        "train/model_epoch_000_step_00010.pth": CKPT,
        "train/model_epoch_001_step_00020.pth": CKPT,
        "train/model_epoch_002_step_00030.pth": CKPT,
        "train/model_epoch_003_step_00040.pth.partial": CKPT,
        "status.json": status_text([
            {"epoch": 0, "step": 10, "kpi": {"val_mAP50": 0.2}},
            {"epoch": 1, "step": 20, "kpi": {"val_mAP50": 0.7}},
            {"epoch": 2, "step": 30, "kpi": {"val_mAP50": 0.6}},
        ]),
    }, links={"train/rtdetr_model_latest.pth": "model_epoch_002_step_00030.pth"})
    return uri


def _run(capsys, *args: str) -> tuple[int, str, str]:
    code = run_cli(["checkpoints", *args])
    out, err = capsys.readouterr()
    return code, out, " ".join(err.split())  # stderr is wrapped by the terminal width


def test_prints_table_then_best_uri_alone_on_last_line(capsys, results):
    code, out, _ = _run(capsys, results)
    assert code == 0
    lines = out.rstrip("\n").splitlines()
    assert lines[-1] == results + "/train/model_epoch_001_step_00020.pth"
    table = "\n".join(lines[:-1])
    for shown in ("model_epoch_000_step_00010.pth", "rtdetr_model_latest.pth", "val_mAP50", "CHOSEN",
                  "incomplete"):
        assert shown in table
    assert ArtifactStore(results).exists(results + "/manifest.json")


def test_epoch_step_latest_and_resume(capsys, results):
    assert _run(capsys, results, "--epoch", "2")[1].splitlines()[-1].endswith("model_epoch_002_step_00030.pth")
    assert _run(capsys, results, "--step", "10", "--for", "export")[1].splitlines()[-1].endswith(
        "model_epoch_000_step_00010.pth")
    assert _run(capsys, results, "--latest")[1].splitlines()[-1].endswith("train/rtdetr_model_latest.pth")
    assert _run(capsys, results, "--for", "resume")[1].splitlines()[-1].endswith(
        "model_epoch_002_step_00030.pth")
    minimise = _run(capsys, results, "--metric", "val_mAP50", "--direction", "minimize", "--no-save")
    assert minimise[1].splitlines()[-1].endswith("model_epoch_000_step_00010.pth")


def test_nothing_qualifies_exits_2_with_every_reason(capsys, results):
    code, out, err = _run(capsys, results, "--epoch", "3")
    assert code == 2
    assert "model_epoch_003_step_00040.pth.partial" in out  # the table is still printed
    assert "no checkpoint for epoch 3 qualifies" in err
    assert "'.partial' suffix" in err and "not the requested epoch 3" in err


def test_bad_options_are_user_errors(capsys, results):
    code, _, err = _run(capsys, results, "--for", "resume", "--epoch", "1")
    assert code == 2 and "--for resume" in err
    code, _, err = _run(capsys, results, "--direction", "up")
    assert code == 2 and "maximize, minimize" in err


def test_fresh_run_has_nothing_to_resume(capsys, any_store_root):
    store = ArtifactStore(any_store_root)
    code, _, err = _run(capsys, store.results_uri("rtdetr", "new", "train"), "--for", "resume")
    assert code == 2 and "no checkpoint to resume from" in err
