"""status.json writing in TAO's format, the incremental tailer, and failure classification."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from taoflow.launchers.base import EpochProgress, StatusRecord
from taoflow.skill import load_skill
from taoflow.status import (
    StatusReader,
    StatusTailer,
    StatusWriter,
    classify_failure,
    events_for,
    final_and_best,
    format_duration,
    now_fields,
    parse_status_lines,
    progress_from_record,
    read_status,
    terminal_status,
)


def test_date_and_time_are_not_zero_padded():
    assert now_fields(datetime(2026, 3, 4, 5, 6, 7)) == {"date": "3/4/2026", "time": "5:6:7"}
    assert now_fields(datetime(2026, 11, 23, 14, 30, 59)) == {"date": "11/23/2026", "time": "14:30:59"}


def test_durations_are_str_of_timedelta_as_tao_writes_them():
    # core/callbacks/loggers.py:145-148: str(timedelta(seconds=…)) — no microseconds when whole
    assert format_duration(0) == "0:00:00"
    assert format_duration(3725.5) == "1:02:05.500000"
    assert format_duration(90000) == "1 day, 1:00:00"


def test_writer_repeats_the_assigned_kpi_dict_and_replaces_it_on_assignment(tmp_path):
    writer = StatusWriter(tmp_path / "status.json")
    writer.write("STARTED", "Starting RT-DETR train.")
    writer.kpi = {"val_mAP": "0.1", "val_loss": 9.0}
    writer.write("RUNNING", "Eval metrics generated.")
    writer.write("RUNNING", "Training loop in progress", epoch=0, step=10, max_epoch=1, max_step=20,
                 time_per_epoch="0:00:01", time_per_step="0:00:00.100000", eta="0:00:01")
    writer.kpi = {"train_loss": 8.0}
    writer.write("RUNNING", "Train metrics generated.")
    writer.write("RUNNING", "Train finished successfully.")
    lines = [json.loads(x) for x in (tmp_path / "status.json").read_text().splitlines()]
    assert [x["status"] for x in lines] == ["STARTED", "RUNNING", "RUNNING", "RUNNING", "RUNNING"]
    assert "kpi" not in lines[0]
    assert lines[2]["kpi"] == {"val_mAP": "0.1", "val_loss": 9.0}  # repeated, not merged
    assert lines[3]["kpi"] == lines[4]["kpi"] == {"train_loss": 8.0}  # replaced
    # TAO's field order: data first, then date, time, status, verbosity, message, kpi (api_logging.py:192-211)
    assert list(lines[2]) == ["epoch", "step", "max_epoch", "max_step", "time_per_epoch", "time_per_step", "eta",
                              "date", "time", "status", "verbosity", "message", "kpi"]


def test_tailer_holds_back_a_half_written_line(tmp_path):
    path = tmp_path / "status.json"
    tailer = StatusTailer(path)
    assert tailer.poll() == []  # missing file: nothing yet
    path.write_text('{"status": "STARTED", "message": "a"}\n{"status": "RUN')
    assert [r["status"] for r in tailer.poll()] == ["STARTED"]
    with open(path, "a") as fh:
        fh.write('NING", "epoch": 0, "max_epoch": 4, "kpi": {"val_acc": 0.5}}\nnot json\n')
    records = tailer.poll()
    assert [r["status"] for r in records] == ["RUNNING"]
    events = events_for(records[0])
    assert parse_status_lines(["", "junk", json.dumps(records[0])]) == records
    assert progress_from_record(records[0]) == events[1] and progress_from_record({"status": "SUCCESS"}) is None
    assert isinstance(events[0], StatusRecord)
    assert events[1] == EpochProgress(epoch=0, max_epoch=4, eta=None, kpi={"val_acc": 0.5}, graphical={})
    assert progress_from_record({"status": "RUNNING", "epoch": 1, "kpi": {"val_mAP": "0.25"}}).kpi == {"val_mAP": 0.25}


def test_tailer_from_end_skips_earlier_attempts(tmp_path):
    path = tmp_path / "status.json"
    path.write_text('{"status": "FAILURE", "message": "first attempt"}\n')
    tailer = StatusTailer.from_end(path)
    with open(path, "a") as fh:
        fh.write('{"status": "SUCCESS", "message": "retry"}\n')
    assert [r["message"] for r in tailer.poll()] == ["retry"]
    assert terminal_status(read_status(path)) == "SUCCESS"


def test_final_and_best_by_metric_and_direction():
    records = [
        {"status": "RUNNING", "epoch": 0, "kpi": {"val_loss": 2.0, "val_acc": 0.2}},
        {"status": "RUNNING", "epoch": 1, "kpi": {"val_loss": 1.0, "val_acc": 0.6}},
        {"status": "RUNNING", "epoch": 2, "kpi": {"val_loss": 1.5, "val_acc": 0.5}},
        {"status": "SUCCESS", "kpi": {"val_loss": 1.5, "val_acc": 0.5}},
    ]
    final, best = final_and_best(records, "val_loss", "minimize")
    assert final == {"val_loss": 1.5, "val_acc": 0.5} and best == {"val_loss": 1.0, "val_acc": 0.6}
    assert final_and_best(records, "val_acc", "maximize")[1]["val_acc"] == 0.6


@pytest.mark.parametrize(("log", "code", "expected"), [
    ("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB", 1, "infra"),
    ("torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:1970", 1, "infra"),
    ("Received SIGTERM: the process was preempted", 143, "infra"),
    ("", -9, "infra"),
    ("", 137, "infra"),
    ("omegaconf.errors.ConfigKeyError: Key 'foo' not in 'RTTrainExpConfig'", 1, "spec"),
    ("RuntimeError: EMULATED crash at epoch 3", 1, "program"),
])
def test_classification_with_the_skill_and_exit_codes(log, code, expected):
    info = classify_failure(log, code, load_skill("rtdetr"))
    assert info.failure_class == expected
    assert info.remedy


def test_classification_without_a_skill_uses_the_shared_patterns():
    assert classify_failure("NotADirectoryError: [Errno 20] Not a directory: '/d/train.tar.gz'", 1).failure_class \
        == "spec"
    info = classify_failure("Traceback (most recent call last):\nValueError: boom\n", 1)
    assert info.failure_class == "program" and info.message == "ValueError: boom"


def test_a_followed_file_releases_an_epochs_progress_when_its_group_completes():
    """The epoch line opens the epoch's group; its "Train metrics generated." line (written right after it by
    TAO) completes it. A reader following a file holds the group through one poll without news, no longer."""
    reader = StatusReader()
    epoch = {"status": "RUNNING", "message": "Training loop in progress", "epoch": 0, "max_epoch": 1,
             "kpi": {"val_mAP": "0.3"}}
    assert [e for e in reader.feed(epoch) if isinstance(e, EpochProgress)] == []
    assert reader.tick() == []  # the poll that brought the epoch line
    train = {"status": "RUNNING", "message": "Train metrics generated.", "kpi": {"train_loss": 2.0}}
    [progress] = [e for e in reader.feed(train) if isinstance(e, EpochProgress)]
    assert progress.kpi == {"val_mAP": 0.3, "train_loss": 2.0}
    reader.feed({**epoch, "epoch": 1, "kpi": {"train_loss": 2.0}})  # no validation: the dict only repeats
    assert reader.tick() == []
    [late] = reader.tick()  # a whole poll without the train line: released with what it has
    assert late.epoch == 1 and late.kpi == {}
    reader.feed({**train, "kpi": {"train_loss": 1.5}})  # late after all: still epoch 1's
    assert reader.by_epoch[1] == {"train_loss": 1.5} and reader.close() == []
