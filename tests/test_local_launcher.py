"""The local launcher on the emulator: every model's pipeline end to end, kill + resume, secrets, attach, cancel,
timeout, remote (S3 on moto's loopback server) results, and the pod entry point. No mocks: real processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from taoflow.datasets import write_sample_data
from taoflow.errors import UserError
from taoflow.launchers.base import EpochProgress, Finished, LogLine, StatusRecord
from taoflow.launchers.local import LocalLauncher
from taoflow.runs import ActionResult, ActionRun
from taoflow.status import read_status
from tests.fake_tao import put_fake_tao_on_path
from tests.s3server import s3_root, s3_server  # noqa: F401
from tests.test_emulator_specs import make_spec

MODELS = ["rtdetr", "centerpose", "action_recognition", "sparse4d", "nvpanoptix3d"]


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("TAOFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TAOFLOW_EMULATOR_EPOCH_SECONDS", "0")
    monkeypatch.delenv("TAOFLOW_EMULATOR_FAULT", raising=False)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("samples")
    for model in MODELS:
        write_sample_data(model, root / model)
    return root


def make_run(model: str, action: str, spec: dict, results: Path, run_key: str = "rk", **kw) -> ActionRun:
    return ActionRun(model=model, action=action, spec=spec, image="emulator", run_key=run_key,
                     results_uri=str(results), emulate=True, **kw)


def launch(run: ActionRun, launcher: LocalLauncher | None = None) -> tuple[ActionResult, list]:
    launcher = launcher or LocalLauncher(poll_seconds=0.05)
    handle = launcher.submit(run)
    events = list(launcher.events(handle))
    return launcher.result(handle), events


def checkpoints(folder: Path) -> list[str]:
    """TAO's exact checkpoint names (RT-DETR `model_epoch_XXX.pth`, else `model_epoch_XXX_step_YYYYY.pth`)."""
    return sorted(p.name for p in folder.glob("model_epoch_*.pth"))


def epoch_kpis(folder: Path) -> dict[int, dict]:
    return {r["epoch"]: r["kpi"] for r in read_status(folder / "status.json") if "epoch" in r}


def ok(result: ActionResult) -> ActionResult:
    assert result.status == "SUCCESS", (result.message, result.failure_class)
    return result


def test_sigkill_at_epoch_5_then_resume_matches_an_uninterrupted_run(samples, tmp_path, monkeypatch):
    data = samples / "rtdetr"
    plain_dir, killed_dir = tmp_path / "plain", tmp_path / "killed"
    ok(launch(make_run("rtdetr", "train", make_spec("rtdetr", "train", data, plain_dir, {"num_epochs": 10}),
                       plain_dir))[0])

    monkeypatch.setenv("TAOFLOW_EMULATOR_FAULT", "sigkill@epoch:5")
    spec = make_spec("rtdetr", "train", data, killed_dir, {"num_epochs": 10})
    killed, _ = launch(make_run("rtdetr", "train", spec, killed_dir))
    assert killed.status == "FAILURE" and killed.exit_code == 137 and killed.failure_class == "infra"
    assert len(checkpoints(killed_dir)) == 5
    assert not list(killed_dir.glob(".*.tmp*"))

    # the retry: same environment (the fault already fired for this folder), resume from the newest file
    spec["train"]["resume_training_checkpoint_path"] = str(killed_dir / checkpoints(killed_dir)[-1])
    ok(launch(make_run("rtdetr", "train", spec, killed_dir))[0])
    assert checkpoints(killed_dir) == checkpoints(plain_dir)
    assert epoch_kpis(killed_dir) == epoch_kpis(plain_dir)
    for name in checkpoints(plain_dir):
        a = json.loads((plain_dir / name).read_bytes().split(b"\n", 1)[1])
        b = json.loads((killed_dir / name).read_bytes().split(b"\n", 1)[1])
        assert a == b


def test_secrets_reach_tao_by_environment_and_never_argv_or_the_disk(samples, tmp_path, monkeypatch):
    secret = "tlt-encode-s3cr3t-value"
    monkeypatch.setenv("MY_TAO_KEY", secret)
    results = tmp_path / "train"
    spec = make_spec("rtdetr", "train", samples / "rtdetr", results, {"num_epochs": 1})
    result, _ = launch(make_run("rtdetr", "train", spec, results,
                                secret_overrides={"encryption_key": "MY_TAO_KEY"}))
    ok(result)
    for path in results.rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path
    assert secret not in json.dumps(result.to_dict())
    header = (results / "logs" / "train.log").read_text().splitlines()[0]
    assert "argv:" in header and "encryption_key" not in header, "the key is not on TAO's command line"
    assert yaml.safe_load((results / "spec.yaml").read_text())["encryption_key"] == "${oc.env:MY_TAO_KEY}"


def test_events_are_typed_and_end_with_finished(samples, tmp_path):
    results = tmp_path / "train"
    spec = make_spec("rtdetr", "train", samples / "rtdetr", results, {"num_epochs": 3})
    result, events = launch(make_run("rtdetr", "train", spec, results))
    ok(result)
    assert isinstance(events[-1], Finished) and events[-1].status == "SUCCESS"
    progress = [e for e in events if isinstance(e, EpochProgress)]
    assert [(p.epoch, p.max_epoch) for p in progress] == [(0, 2), (1, 2), (2, 2)]
    assert all("val_mAP" in p.kpi for p in progress)
    assert any(isinstance(e, StatusRecord) and e.record["status"] == "STARTED" for e in events)
    assert result.kpis_final == progress[-1].kpi and result.gpu_seconds > 0


def test_spec_failure_is_classified_with_the_remedy(samples, tmp_path):
    results = tmp_path / "train"
    spec = make_spec("rtdetr", "train", samples / "rtdetr", results, {"num_classes": 4})
    result, _ = launch(make_run("rtdetr", "train", spec, results))
    assert result.status == "FAILURE" and result.failure_class == "spec" and result.exit_code == 1
    assert "num_classes" in (result.remedy or "")
    assert "device-side assert" in (result.message or "")


def test_cancel_stops_the_process_group_and_keeps_checkpoints(samples, tmp_path, monkeypatch):
    monkeypatch.setenv("TAOFLOW_EMULATOR_EPOCH_SECONDS", "0.3")
    results = tmp_path / "train"
    spec = make_spec("rtdetr", "train", samples / "rtdetr", results, {"num_epochs": 50})
    launcher = LocalLauncher(grace_seconds=5)
    handle = launcher.submit(make_run("rtdetr", "train", spec, results))
    for event in launcher.events(handle):
        if isinstance(event, EpochProgress):
            launcher.cancel(handle)
            break
    result = launcher.result(handle)
    assert result.status == "CANCELLED"
    assert checkpoints(results)
    assert "finished successfully" not in read_status(results / "status.json")[-1]["message"]
    with pytest.raises(ProcessLookupError):
        os.killpg(handle.pid, 0)


def test_timeout_is_enforced_and_is_an_infra_failure(samples, tmp_path, monkeypatch):
    monkeypatch.setenv("TAOFLOW_EMULATOR_EPOCH_SECONDS", "0.3")
    results = tmp_path / "train"
    spec = make_spec("rtdetr", "train", samples / "rtdetr", results, {"num_epochs": 50})
    result, _ = launch(make_run("rtdetr", "train", spec, results, timeout_seconds=0.8))
    assert result.status == "FAILURE" and result.failure_class == "infra"
    assert "timed out" in (result.message or "")


def test_second_submit_attaches_to_the_running_process(samples, tmp_path, monkeypatch):
    monkeypatch.setenv("TAOFLOW_EMULATOR_EPOCH_SECONDS", "0.1")
    results = tmp_path / "train"
    spec = make_spec("rtdetr", "train", samples / "rtdetr", results, {"num_epochs": 8})
    launcher = LocalLauncher()
    first = launcher.submit(make_run("rtdetr", "train", spec, results))
    second = launcher.submit(make_run("rtdetr", "train", spec, results))
    assert second.attached and second.pid == first.pid
    ok(launcher.result(first))
    assert launcher.result(second).status == "SUCCESS"
    starts = [r for r in read_status(results / "status.json") if r["message"] == "Starting RT-DETR train."]
    assert len(starts) == 1  # one TAO process


def test_action_recognition_archives_are_extracted_safely_once(samples, tmp_path):
    """The spec names `train/` and `test/` folders that exist only as tarballs: the launcher extracts them."""
    data = samples / "action_recognition"
    assert not (data / "train" / "train").exists()
    results = tmp_path / "train"
    spec = make_spec("action_recognition", "train", data, results, {"num_epochs": 1})
    ok(launch(make_run("action_recognition", "train", spec, results))[0])
    staged = (results / "spec.yaml").read_text()
    assert "extracted" in staged and not (data / "train" / "train").exists()


def test_remote_results_upload_to_s3(samples, tmp_path, s3_root):  # noqa: F811
    from taoflow.store import ArtifactStore

    store = ArtifactStore(s3_root)
    results_uri = store.results_uri("rtdetr", "s3run", "train")
    spec = make_spec("rtdetr", "train", samples / "rtdetr", Path("/unused"), {"num_epochs": 2})
    spec["results_dir"] = store.results_uri("rtdetr", "s3run", "").rstrip("/")  # TAO adds train/
    del spec["train"]["results_dir"]
    run = ActionRun(model="rtdetr", action="train", spec=spec, image="emulator", run_key="s3run",
                    results_uri=results_uri, emulate=True)
    result = ok(launch(run)[0])
    names = {e.path for e in store.list_files(results_uri)}
    assert {"model_epoch_000.pth", "model_epoch_001.pth", "rtdetr_model_latest.pth", "experiment.yaml",
            "status.json", "spec.yaml", "logs/train.log"} <= names
    assert result.products["checkpoint"].startswith("s3://")
    assert [e for e in result.manifest["entries"] if e["kind"] == "checkpoint"]

    # a retry on a fresh machine (no local work folder) resumes from S3 and keeps the status history
    shutil.rmtree(tmp_path / "home")
    spec["train"]["num_epochs"] = 3
    spec["train"]["resume_training_checkpoint_path"] = store.join(results_uri, "model_epoch_001.pth")
    ok(launch(ActionRun(**{**run.to_dict(), "spec": spec}))[0])
    history = [json.loads(x) for x in store.read_text(store.join(results_uri, "status.json")).splitlines()]
    assert [r["epoch"] for r in history if "epoch" in r] == [0, 1, 2]
    assert "model_epoch_002.pth" in {e.path for e in store.list_files(results_uri)}


def test_progress_reaches_a_remote_store_while_training(samples, tmp_path, s3_root, monkeypatch):  # noqa: F811
    """status.json is uploaded as it grows, so launchers that follow a run from the store see progress."""
    from taoflow.store import ArtifactStore

    monkeypatch.setenv("TAOFLOW_EMULATOR_EPOCH_SECONDS", "0.4")
    store = ArtifactStore(s3_root)
    results_uri = store.results_uri("rtdetr", "s3live", "train")
    spec = make_spec("rtdetr", "train", samples / "rtdetr", Path("/unused"), {"num_epochs": 6})
    spec["results_dir"] = store.results_uri("rtdetr", "s3live", "").rstrip("/")  # TAO adds train/
    del spec["train"]["results_dir"]
    launcher = LocalLauncher()
    handle = launcher.submit(ActionRun(model="rtdetr", action="train", spec=spec, image="emulator",
                                       run_key="s3live", results_uri=results_uri, emulate=True))
    status_uri = store.join(results_uri, "status.json")
    seen_while_running: list[int] = []
    for event in launcher.events(handle):
        if isinstance(event, EpochProgress) and event.epoch == 1 and store.exists(status_uri):
            records = [json.loads(x) for x in store.read_text(status_uri).splitlines() if x.strip()]
            seen_while_running = [r["epoch"] for r in records if "epoch" in r]
    ok(launcher.result(handle))
    assert seen_while_running and max(seen_while_running) < 5, seen_while_running


def test_pod_entry_point_writes_result_json(samples, tmp_path):
    results = tmp_path / "store" / "runs" / "rtdetr" / "podrun" / "train"
    spec = make_spec("rtdetr", "train", samples / "rtdetr", results, {"num_epochs": 1})
    run_file = tmp_path / "run.json"
    run_file.write_text(json.dumps(make_run("rtdetr", "train", spec, results, run_key="podrun").to_dict()))
    proc = subprocess.run([sys.executable, "-m", "taoflow.launchers.local", str(run_file)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stored = json.loads((results / "result.json").read_text())
    assert stored["status"] == "SUCCESS" and stored["run_key"] == "podrun"
    assert "Epoch 0/0" in proc.stdout


def test_pod_entry_point_exits_with_taos_code(samples, tmp_path, monkeypatch):
    monkeypatch.setenv("TAOFLOW_EMULATOR_FAULT", "oom")
    results = tmp_path / "store" / "runs" / "rtdetr" / "oomrun" / "train"
    spec = make_spec("rtdetr", "train", samples / "rtdetr", results, {"num_epochs": 1})
    payload = json.dumps(make_run("rtdetr", "train", spec, results, run_key="oomrun").to_dict())
    proc = subprocess.run([sys.executable, "-m", "taoflow.launchers.local", payload],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    stored = json.loads((results / "result.json").read_text())
    assert stored["failure_class"] == "infra" and "CUDA out of memory" in (stored["message"] or "")


def test_sigterm_to_the_pod_entry_point_reaches_tao(samples, tmp_path, monkeypatch):
    monkeypatch.setenv("TAOFLOW_EMULATOR_EPOCH_SECONDS", "0.3")
    results = tmp_path / "store" / "runs" / "rtdetr" / "termrun" / "train"
    spec = make_spec("rtdetr", "train", samples / "rtdetr", results, {"num_epochs": 50})
    payload = json.dumps(make_run("rtdetr", "train", spec, results, run_key="termrun").to_dict())
    proc = subprocess.Popen([sys.executable, "-m", "taoflow.launchers.local", payload],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if line.startswith("Epoch 0/"):
            break
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    stored = json.loads((results / "result.json").read_text())
    assert stored["status"] == "CANCELLED"
    assert "finished successfully" not in read_status(results / "status.json")[-1]["message"]
    assert not (results / ".taoflow_run.json").exists()
    header = (results / "logs" / "train.log").read_text().splitlines()[0]
    pid = int(re.search(r" pid (\d+) ", header).group(1))
    with pytest.raises(ProcessLookupError):  # nothing of TAO's process group is left running
        os.killpg(pid, 0)


HANDOFF_FILES = {"create_onnx_file": "model.onnx", "create_onnx_file_2d": "model_2d.onnx",
                 "create_engine_file": "model.engine", "create_cal_cache": "cal.bin"}


@pytest.mark.parametrize("model", MODELS)
def test_skill_pipeline_on_the_emulator(model, samples, tmp_path, monkeypatch):
    """sample data → every step of the skill's pipeline (convert → train, preempted and resumed → evaluate →
    export → quantize → engine → TensorRT evaluate, as the skill has them), each spec built by
    `taoflow.spec.build_spec` from the skill's template, data sources and handoffs as the planner does, each
    step's results in `<run>/<step>/` with TAO handed the run folder, each handoff the right file."""
    from taoflow import resolver
    from taoflow.kpis import metric_in
    from taoflow.skill import load_skill
    from taoflow.spec import build_spec
    from taoflow.store import ArtifactStore

    skill = load_skill(model)
    store = ArtifactStore(str(tmp_path))
    data = {p.name: str(p) for p in (samples / model).iterdir()}
    overrides = {"dataset.label_map": {"catch": 0, "smile": 1}} if model == "action_recognition" else {}
    upstream: dict[str, str] = {}
    handed: dict[str, str] = {}
    results: dict[str, ActionResult] = {}
    launcher = LocalLauncher(poll_seconds=0.05)
    for step in skill.pipeline:
        action = skill.actions[step]
        for role in [r for r in action.per_role if r in data] if action.per_role else [None]:
            out = tmp_path / "runs" / (f"{step}-{role}" if role else step) / (f"{step}-{role}" if role else step)
            handoffs: dict[str, str] = {}
            for key, fn in action.handoffs.items():
                if fn == "output_dir":
                    handoffs[key] = resolver.output_dir(str(out), image=action.image.value,
                                                        tao_action=action.tao_action)
                elif fn == "parent_model":
                    handoffs[key] = handed[step] = resolver.parent_model(
                        store, str(results[action.parent].results_uri), skill=skill, parent_action=action.parent)
                elif fn in HANDOFF_FILES:
                    handoffs[key] = str(out / HANDOFF_FILES[fn])
            # TAO Deploy calibrates INT8 from image folders only; CenterPose's skill hands a tarball: FP16 there
            engine = {"gen_trt_engine.tensorrt.data_type": "INT8",
                      "gen_trt_engine.tensorrt.calibration.cal_batches": 2} if model == "rtdetr" else \
                {"gen_trt_engine.tensorrt.data_type": "FP16"}
            extra = {"train": {"train.num_epochs": 3, "train.checkpoint_interval": 1},
                     "gen_trt_engine": engine}.get(step, {})
            spec = build_spec(skill, step, data=data, handoffs=handoffs, overrides={**overrides, **extra},
                              upstream=upstream, role=role)
            if step == "train":
                monkeypatch.setenv("TAOFLOW_EMULATOR_FAULT", "preempt@epoch:2")
                stopped = launch(make_run(model, step, spec, out), launcher)[0]
                monkeypatch.delenv("TAOFLOW_EMULATOR_FAULT")
                assert (stopped.status, stopped.failure_class, stopped.exit_code) == ("FAILURE", "infra", 143)
                assert [c[:15] for c in checkpoints(out)] == ["model_epoch_000", "model_epoch_001"]
                spec["train"]["resume_training_checkpoint_path"] = resolver.resume_model(store, str(out))
            result, events = launch(make_run(model, step, spec, out), launcher)
            results[step] = ok(result)
            assert not (out / action.tao_action).exists(), "TAO's own folder is the step's folder"
            upstream[f"{step}:{role}" if role else step] = str(out)
            upstream.setdefault(step, str(out))
            lines = read_status(out / "status.json")
            assert "SUCCESS" not in {r["status"] for r in lines}
            assert lines[-1]["status"] == "RUNNING" and lines[-1]["message"].endswith("finished successfully.")
            if step == "train":
                assert [e.epoch for e in events if isinstance(e, EpochProgress)] == [2]
                assert len(checkpoints(out)) == 3 and result.epochs_run == 1
                assert all(c.startswith("model_epoch_") and ("_step_" in c) == (model != "rtdetr")
                           for c in checkpoints(out))
                latest = next(out.glob("*_model_latest.pth"))
                assert latest.is_symlink() and os.readlink(latest) == checkpoints(out)[-1]
                assert lines[-2]["message"] == "Training loop complete."
                best = metric_in(result.kpis_best, skill.monitoring.metric)
                assert best is not None and best == max(
                    v for k in epoch_kpis_all(out).values() if (v := metric_in(k, skill.monitoring.metric)))
            if step in ("evaluate", "export", "quantize"):  # the parent's best checkpoint, by its metric
                manifest = results["train"].manifest
                chosen = next(e for e in manifest["entries"] if e["uri"] == handed[step])
                assert chosen["metric_value"] == max(e["metric_value"] for e in manifest["entries"]
                                                     if e["metric_value"] is not None)
            if step == "evaluate":
                assert result.kpis_final and not any("train" in k or "loss" in k for k in result.kpis_final)
            if step == "export":
                assert handed[step].endswith(".pth")
                assert b"EMULATED" in Path(result.products["onnx"]).read_bytes()[:80]
            if step == "quantize":
                assert list(out.glob("quantized_model_*.pth"))
            if step == "gen_trt_engine":
                assert handed[step] == results["export"].products["onnx"]
                assert set(result.products) >= ({"engine", "log", "status"} | ({"cal_cache"} if model == "rtdetr"
                                                                                 else set()))
            if step == "trt_evaluate":
                assert handed[step] == results["gen_trt_engine"].products["engine"]
                metric = skill.monitoring.metric
                trt, torch = metric_in(result.kpis_final, metric), metric_in(results["evaluate"].kpis_final, metric)
                assert trt is not None and torch is not None and 0 < torch - trt < 0.02  # close, a bit lower
    if model == "sparse4d":
        import numpy as np

        converted = tmp_path / "runs" / "dataset_convert-train" / "dataset_convert-train"
        assert np.load(converted / "anchor_init.npy").shape[1] == 11
        assert sorted(p.name for p in (converted / "train").iterdir()) == [
            "Warehouse_000+bev-sensor-1_infos_train.pkl", "Warehouse_001+bev-sensor-1_infos_train.pkl"]
        assert not list(tmp_path.rglob("annotations.pkl"))
    assert {"train", "export"} <= set(results)


def epoch_kpis_all(folder: Path) -> dict[int, dict[str, float]]:
    from taoflow.status import read_kpis

    return read_kpis(read_status(folder / "status.json")).by_epoch


def test_inputs_on_s3_are_staged_and_archives_extracted(samples, tmp_path, s3_root):  # noqa: F811
    """Datasets given as s3:// URIs are downloaded before launch; action recognition's tarballs on S3 are
    downloaded and extracted because the skill says TAO needs the directory."""
    from taoflow.store import ArtifactStore

    store = ArtifactStore(s3_root)
    for model in ("rtdetr", "action_recognition"):
        store.upload_dir(samples / model, store.join(s3_root, "data", model))
    remote = store.join(s3_root, "data", "rtdetr")
    results = tmp_path / "rt"
    spec = make_spec("rtdetr", "train", Path("/nowhere"), results, {"num_epochs": 1})
    spec["dataset"]["train_data_sources"] = [{"image_dir": f"{remote}/train/images",
                                              "json_file": f"{remote}/train/annotations.json"}]
    spec["dataset"]["val_data_sources"] = {"image_dir": f"{remote}/eval/images",
                                           "json_file": f"{remote}/eval/annotations.json"}
    ok(launch(make_run("rtdetr", "train", spec, results))[0])
    staged = (results / "spec.yaml").read_text()
    assert "s3://" not in staged and "inputs" in staged

    remote = store.join(s3_root, "data", "action_recognition")
    results = tmp_path / "ar"
    spec = make_spec("action_recognition", "train", Path("/nowhere"), results, {"num_epochs": 1})
    spec["dataset"]["train_dataset_dir"] = f"{remote}/train/train"
    spec["dataset"]["val_dataset_dir"] = f"{remote}/eval/test"
    ok(launch(make_run("action_recognition", "train", spec, results))[0])
    assert "s3://" not in (results / "spec.yaml").read_text()


def test_explicit_stage_and_extract(samples, tmp_path):
    """`ActionRun.stage` copies inputs to the paths the spec names; paths listed in `extract` receive the
    archive's contents (checked member by member) instead."""
    data = samples / "action_recognition"
    staged = tmp_path / "staged"
    results = tmp_path / "train"
    spec = make_spec("action_recognition", "train", Path("/nowhere"), results, {"num_epochs": 1})
    spec["dataset"]["train_dataset_dir"] = str(staged / "tr" / "train")
    spec["dataset"]["val_dataset_dir"] = str(staged / "te" / "test")
    run = make_run("action_recognition", "train", spec, results,
                   stage={str(staged / "tr"): str(data / "train" / "train.tar.gz"),
                          str(staged / "te"): str(data / "eval" / "test.tar.gz"),
                          str(staged / "copy.tar.gz"): str(data / "eval" / "test.tar.gz")},
                   extract=[str(staged / "tr"), str(staged / "te")])
    ok(launch(run)[0])
    assert (staged / "tr" / "train" / "catch").is_dir() and (staged / "copy.tar.gz").is_file()




def test_real_tao_is_used_when_its_entry_point_is_installed(samples, tmp_path, monkeypatch):
    """A fake `rtdetr` executable on PATH stands in for TAO's console script (TAO cannot be installed here)
    and writes the results folder real TAO 6.x writes (tests/tao_layouts.py): without `emulate`, the launcher
    runs it with the spec path (whose key names the secret's variable, resolved from its environment; the
    value is masked in the log), hands it the run folder, and reads TAO's shapes —
    string KPIs, metric lines without an epoch, no SUCCESS line, RT-DETR's epoch-only checkpoint names."""
    from taoflow.resolver import parent_model
    from taoflow.store import ArtifactStore

    put_fake_tao_on_path(tmp_path, monkeypatch)
    monkeypatch.setenv("KEY_VAR", "k-e-y")
    results = tmp_path / "runs" / "rtdetr" / "real" / "train"
    spec = make_spec("rtdetr", "train", samples / "rtdetr", results, {"num_epochs": 3})
    assert spec["results_dir"] == str(results.parent)
    run = ActionRun(model="rtdetr", action="train", run_key="real", image="tao", results_uri=str(results),
                    spec=spec, secret_overrides={"encryption_key": "KEY_VAR"})
    result, events = launch(run)
    ok(result)
    assert result.emulated is False
    assert result.kpis_best["val_mAP50"] == 0.6 and result.kpis_final["val_mAP50"] == 0.5  # strings read
    progress = [e for e in events if isinstance(e, EpochProgress)]
    assert [(e.epoch, e.kpi["val_mAP50"], e.kpi["train_loss"]) for e in progress] == [
        (0, 0.3, 10.0), (1, 0.6, 5.0), (2, 0.5, 10 / 3)]
    assert "real TAO train overrides:  encryption_key: ****" in [e.text for e in events if isinstance(e, LogLine)]
    assert result.products["checkpoint"] == str(results / "model_epoch_002.pth")
    assert parent_model(ArtifactStore(str(tmp_path)), str(results), parent_action="train",
                        metric="val_mAP50", direction="maximize") == str(results / "model_epoch_001.pth")
    monkeypatch.setenv("PATH", "/usr/bin")
    with pytest.raises(UserError, match="not installed"):
        LocalLauncher().submit(ActionRun(**{**run.to_dict(), "emulate": False, "run_key": "real2"}))


def test_an_export_retry_never_collides_with_the_onnx_a_failed_attempt_left(samples, tmp_path, monkeypatch):
    """TAO refuses to overwrite an ONNX ("Default onnx file … already exists"): an attempt killed after writing
    it would make every retry fail. The launcher moves it aside before the retry; the manifest lists it as
    incomplete with the reason, and the fresh file is what is handed on."""
    from taoflow.resolver import parent_model
    from taoflow.store import ArtifactStore

    trained = tmp_path / "runs" / "t" / "train"
    ok(launch(make_run("rtdetr", "train", make_spec("rtdetr", "train", samples / "rtdetr", trained,
                                                    {"num_epochs": 1}), trained))[0])
    results = tmp_path / "runs" / "x" / "export"
    spec = make_spec("rtdetr", "export", samples / "rtdetr", results,
                     {"checkpoint": str(trained / "model_epoch_000.pth")})
    spec["export"]["onnx_file"] = str(results / "model.onnx")
    monkeypatch.setenv("TAOFLOW_EMULATOR_FAULT", "sigkill@end")
    killed, _ = launch(make_run("rtdetr", "export", spec, results, run_key="exp"))
    assert (killed.status, killed.failure_class) == ("FAILURE", "infra") and (results / "model.onnx").is_file()
    first = (results / "model.onnx").read_bytes()

    retry, events = launch(make_run("rtdetr", "export", spec, results, run_key="exp"))
    ok(retry)
    moved = results / "model.failed-attempt-1.onnx.partial"
    assert moved.read_bytes() == first
    assert any("moved to model.failed-attempt-1.onnx.partial" in e.text for e in events if isinstance(e, LogLine))
    listed = {e["path"]: e for e in retry.manifest["entries"]}
    assert listed[moved.name]["complete"] is False and "failed attempt 1" in listed[moved.name]["problem"]
    assert retry.products["onnx"] == str(results / "model.onnx")
    assert parent_model(ArtifactStore(str(tmp_path)), str(results), parent_action="export") == \
        str(results / "model.onnx")
