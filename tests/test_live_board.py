"""What the terminal shows during and after a run: one row per step (Sparse4D's per-role conversions, the
AutoML train step), cached / EMULATED labels, retries with reason and remedy kept after success, tables that
fit 80 columns with paths on lines of their own; and, from the command line on a real Prefect server, a
failed action as one `error:` block with the remedy and the log's path, and a retried one announced."""

from __future__ import annotations

import re
from pathlib import Path

from rich.console import Console

from flows.cli import main  # noqa: F401  (registers run on the app)
from flows.live import StepBoard, print_summary, step_name
from taoflow.cli import _register, run_cli
from taoflow.datasets import write_sample_data
from taoflow.launchers.base import Cached, EpochProgress, Finished, LogLine, Retrying
from taoflow.runs import ActionRun

_register()
STORE = "/srv/a-rather-long/path/to/the/team/artifact-store/that/does/not/fit/in/eighty/columns/runs"


def _run(action: str, folder: str, key: str = "0123456789abcdef0123") -> ActionRun:
    return ActionRun(model="sparse4d", action=action, spec={}, image="img", run_key=key,
                     results_uri=f"{STORE}/sparse4d/{key}/{folder}")


def _render(renderable, width: int = 80) -> list[str]:
    console = Console(width=width, record=True, color_system=None, soft_wrap=False)
    console.print(renderable)
    return console.export_text().splitlines()


def test_per_role_conversions_get_a_row_each_and_events_land_on_theirs():
    board = StepBoard("sparse4d", ["dataset_convert[train]", "dataset_convert[eval]", "train"])
    board.on_event(_run("dataset_convert", "dataset_convert-eval"), LogLine("[EMULATED] taoflow TAO emulator"))
    board.on_event(_run("dataset_convert", "dataset_convert-eval"), Finished("SUCCESS"))
    board.on_event(_run("dataset_convert", "dataset_convert-train"), Cached("s3://x", emulated=True))
    assert step_name(_run("train", "train")) == "train"
    assert board.rows["dataset_convert[eval]"].label() == "SUCCESS EMULATED"
    assert board.rows["dataset_convert[train]"].label() == "SUCCESS cached EMULATED"
    assert board.rows["train"].label() == "pending"


def test_automl_train_step_has_a_row():
    board = StepBoard("rtdetr", ["train", "evaluate"], trials_budget=4)
    board.on_trials("rtdetr", [{"number": 0, "state": "COMPLETE", "value": 0.3, "params": {}},
                               {"number": 1, "state": "RUNNING", "value": None, "params": {}}])
    row = board.rows["train"]
    assert row.status == "RUNNING" and row.progress == "AutoML 1/4 trials, 1 running"


def test_retries_keep_reason_and_remedy_after_success():
    board = StepBoard("rtdetr", ["train"])
    run = _run("train", "train")
    board.on_event(run, Retrying(1, 4, "CUDA out of memory", "Lower train.batch_size"))
    assert board.rows["train"].status == "retry 2/4"
    board.on_event(run, Finished("SUCCESS"))
    assert board.rows["train"].status == "SUCCESS"
    assert board.retry_notes() == ["train: attempt 1/4 failed: CUDA out of memory\n  remedy: Lower train.batch_size"]


def test_tables_fit_80_columns_and_paths_are_never_folded():
    board = StepBoard("sparse4d", ["dataset_convert[train]", "dataset_convert[eval]", "train", "evaluate"])
    run = _run("train", "train")
    board.on_event(run, EpochProgress(epoch=3, max_epoch=99, eta="1:02:03.123456",
                                      kpi={"val_mAP": 0.123456, "val_mAP50": 0.234567, "train_loss": 3.14159,
                                           "val_NDS": 0.5, "val_AMOTA": 0.25}))
    lines = _render(board.table(80))
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    assert any("dataset_convert[train]" in line and "pending" in line for line in lines)
    assert any("epoch 4/100" in line for line in lines)

    results = {name: {"status": "SUCCESS", "cached": name == "train", "emulated": True,
                      "results_uri": f"{STORE}/sparse4d/0123456789abcdef0123/{name}",
                      "kpis_best": {"val_mAP": 0.5, "val_NDS": 0.4, "train_loss": 1.0, "val_AMOTA": 0.2}}
               for name in ("dataset_convert[train]", "train", "evaluate")}
    console = Console(width=80, record=True, color_system=None)
    print_summary({"model": "sparse4d", "store": STORE, "results": results, "skipped": []}, console)
    text = console.export_text()
    table_lines = text.split("results:")[0].splitlines()
    assert all(len(line) <= 80 for line in table_lines), text
    assert "SUCCESS cached EMULATED" in text
    for name, res in results.items():
        assert re.search(rf"^  {re.escape(name)}\s+{re.escape(res['results_uri'])}$", text, re.M), text
    assert f"model card: {STORE}/runs/sparse4d/MODEL_CARD.md" in text


def _args(data, store, *extra):
    return ["run", "rtdetr", "--data", f"train={data / 'train'}", "--data", f"eval={data / 'eval'}", "--set",
            "dataset.num_classes=5", "--store", str(store), "--actions", "train,evaluate",
            "--set", "train.train.num_epochs=3", "--emulate", "--automl", "off", *extra]


def test_a_failed_action_is_one_error_block_with_remedy_and_log(tmp_path, prefect_api, capsys, monkeypatch):
    write_sample_data("rtdetr", tmp_path / "data")
    monkeypatch.setenv("TAOFLOW_EMULATOR_FAULT", "crash")
    code = run_cli(_args(tmp_path / "data", tmp_path / "store"))
    captured = capsys.readouterr()
    err = captured.err
    assert code == 1, err
    assert "Traceback" not in err + captured.out and err.count("error:") == 1, err
    assert "error: rtdetr train failed (program)" in err
    log = re.search(r"log: (\S+train\.log)", err)
    assert log and Path(log.group(1)).is_relative_to(tmp_path / "store"), err
    assert "remedy:" in err


def test_a_retried_action_is_announced_and_its_remedy_kept(tmp_path, prefect_api, capsys, monkeypatch):
    write_sample_data("rtdetr", tmp_path / "data")
    monkeypatch.setenv("TAOFLOW_EMULATOR_FAULT", "oom@epoch:1")
    code = run_cli(_args(tmp_path / "data", tmp_path / "store"))
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r"retried train: attempt 1/\d failed: .*out of memory", out, re.I | re.S), out
    assert "remedy:" in out
    assert "SUCCESS EMULATED" in out and "model card:" in out
