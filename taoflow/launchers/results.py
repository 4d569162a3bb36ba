"""Reading what a local TAO process left behind into an ActionResult: status from the exit code and
status.json, failure class and remedy from the skill's error patterns, KPIs final/best, products, the
checkpoint manifest and GPU-seconds."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from taoflow.launchers.staging import is_remote, store_for
from taoflow.runs import ActionResult
from taoflow.skill import load_skill
from taoflow.status import (
    STATUS_FILE,
    classify_failure,
    final_and_best,
    read_status,
    status_paths,
    terminal_status,
)

if TYPE_CHECKING:
    from taoflow.launchers.local import LocalHandle

PID_FILE = ".taoflow_run.json"
SPEC_FILE = "spec.yaml"


def node_rank() -> int:
    """This node's rank in a multi-node run (TAO's NODE_RANK convention; 0 when single-node)."""
    import os

    try:
        return int(os.environ.get("NODE_RANK") or 0)
    except ValueError:
        return 0


def shell_code(code: int | None) -> int | None:
    """Popen's -N (killed by signal N) as a shell/Kubernetes exit code 128+N."""
    return 128 - code if code is not None and code < 0 else code


def local_result(handle: LocalHandle, exit_code: int | None, mask: Callable[[str], str]) -> ActionResult:
    """The ActionResult of a finished (or vanished, when attached) local process."""
    from taoflow.manifest import build_manifest

    run = handle.run
    skill = load_skill(run.model)
    ended = time.time()
    remote = is_remote(run.results_uri)
    tao_action = skill.action(run.action).tao_action
    all_records = [r for p in status_paths(handle.results_dir, tao_action) for r in read_status(p)]
    last = terminal_status(handle.records)
    if handle.attached and last is None:
        last = terminal_status(all_records)
    if handle.attached and exit_code is None:
        exit_code = 0 if last == "SUCCESS" else None
    if exit_code == 0 and last in (None, "SUCCESS"):
        status, failure = "SUCCESS", None
    elif handle.cancel_requested and not handle.timed_out:
        status, failure = "CANCELLED", None
    else:
        status = "FAILURE"
        failure = classify_failure("\n".join(handle.log_tail), exit_code, skill)
    try:
        (handle.results_dir / PID_FILE).unlink()
    except FileNotFoundError:
        pass
    store = store_for(run.results_uri)
    if remote:
        if node_rank() == 0:
            store.upload_dir(handle.results_dir, run.results_uri)
        else:  # only rank 0 writes results in TAO; other nodes contribute their log
            rel = handle.log_path.relative_to(handle.results_dir).as_posix()
            store.upload_file(handle.log_path, store.join(run.results_uri, rel))
    metric, direction = skill.monitoring.metric, skill.monitoring.direction
    manifest = build_manifest(store, run.results_uri, metric=metric, direction=direction).to_dict()
    final, best = final_and_best(all_records, metric, direction)
    epochs = {r["epoch"] for r in handle.records if r.get("status") == "RUNNING" and isinstance(r.get("epoch"), int)}
    message = None
    if failure is not None:
        message = failure.message
        if handle.timed_out:
            message = f"timed out after {run.timeout_seconds:g} s; {message}".rstrip("; ")
    elif status == "CANCELLED":
        message = "cancelled"
    return ActionResult(
        model=run.model, action=run.action, run_key=run.run_key, status=status, results_uri=run.results_uri,
        manifest=manifest, kpis_final=final, kpis_best=best,
        products=products(handle), gpu_seconds=round((ended - handle.started) * max(run.gpus, 0)
                                                     * max(run.nodes, 1), 3),
        epochs_run=len(epochs),
        failure_class=("infra" if handle.timed_out else failure.failure_class) if failure else None,
        remedy=(("The run exceeded its timeout; it is retried from the newest checkpoint. Raise "
                 "timeout_seconds if the action needs longer.") if handle.timed_out else failure.remedy)
        if failure else None,
        message=mask(message) if message else None,
        exit_code=shell_code(exit_code), emulated=handle.emulated,
    )


def products(handle: LocalHandle) -> dict[str, str]:
    root = handle.results_dir

    def uri(path: Path) -> str:
        rel = path.relative_to(root).as_posix()
        return handle.run.results_uri.rstrip("/") + "/" + rel

    found: dict[str, str] = {}
    for kind, patterns in (("onnx", ["*.onnx"]), ("engine", ["*.engine", "*.trt", "*.plan"]),
                           ("cal_cache", ["cal*.bin", "*.cache", "*.tensorfile"]),
                           ("metrics", ["evaluation_results.json"]), ("annotations", ["annotations.pkl"]),
                           ("anchor", ["anchor_init.npy"]), ("quantized", ["quantized_model*.pth"])):
        for pattern in patterns:
            hits = sorted(p for p in root.rglob(pattern) if not p.name.startswith("."))
            if hits:
                found[kind] = uri(hits[0])
                break
    checkpoints = sorted(root.rglob("model_epoch_*_step_*.pth"), key=lambda p: (p.name, str(p)))
    if checkpoints:
        found["checkpoint"] = uri(checkpoints[-1])  # the newest: names sort by zero-padded epoch
    for kind, path in (("log", handle.log_path), ("status", root / STATUS_FILE), ("spec", root / SPEC_FILE)):
        if path.exists():
            found[kind] = uri(path)
    return found
