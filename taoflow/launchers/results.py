"""Reading what a local TAO process left behind into an ActionResult: status from the exit code and
status.json (TAO's CLI never writes SUCCESS: a run ends with "… finished successfully."; taoflow.status
.run_outcome), failure class and remedy from the skill's error patterns, KPIs final/best (string KPIs read as
numbers; TAO Deploy's results.json / report.csv), products, the checkpoint manifest and GPU-seconds."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from taoflow.launchers.staging import is_remote, store_for
from taoflow.layout import candidate_folders
from taoflow.runs import ActionResult
from taoflow.skill import load_skill
from taoflow.status import (
    STATUS_FILE,
    classify_failure,
    final_and_best,
    last_error_line,
    read_status,
    run_outcome,
    status_paths,
)

if TYPE_CHECKING:
    from taoflow.launchers.local import LocalHandle

PID_FILE = ".taoflow_run.json"
SPEC_FILE = "spec.yaml"


def node_rank() -> int:
    """This node's rank in a multi-node run (TAO's NODE_RANK convention; 0 when single-node)."""
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
    action = skill.action(run.action)
    folders = candidate_folders(action.image.value, action.tao_action)
    all_records = [r for p in status_paths(handle.results_dir, *folders) for r in read_status(p)]
    if handle.attached and exit_code is None:  # not our child: its lines must say how it ended
        outcome = run_outcome(all_records, None) or "FAILURE"
    else:
        outcome = run_outcome(handle.records, exit_code)
    failure = None
    if outcome == "SUCCESS":
        status = "SUCCESS"
    elif handle.cancel_requested and not handle.timed_out:
        status = "CANCELLED"
    else:
        status = "FAILURE"
        failure = classify_failure("\n".join(handle.log_tail), exit_code, skill)
    try:
        (handle.results_dir / PID_FILE).unlink()
    except FileNotFoundError:
        pass
    mask_saved_configs(handle.results_dir, handle.secrets)
    store = store_for(run.results_uri)
    if remote:
        if node_rank() == 0:
            store.upload_dir(handle.results_dir, run.results_uri)
        else:  # only rank 0 writes results in TAO; other nodes contribute their log
            rel = handle.log_path.relative_to(handle.results_dir).as_posix()
            store.upload_file(handle.log_path, store.join(run.results_uri, rel))
    metric, direction = skill.monitoring.metric, skill.monitoring.direction
    manifest = build_manifest(store, run.results_uri, metric=metric, direction=direction)
    final, best = final_and_best(all_records, metric, direction)
    final = {**manifest.evaluation, **final}  # TAO Deploy's evaluate writes its KPIs to a file only
    best = best or final
    epochs = {r["epoch"] for r in handle.records if r.get("status") == "RUNNING" and isinstance(r.get("epoch"), int)}
    message = None
    if failure is not None:
        message = failure.message
        if exit_code in (0, None) and not last_error_line("\n".join(handle.log_tail)):
            message = _unfinished(handle.records if exit_code is not None else all_records, exit_code)
        if handle.timed_out:
            message = f"timed out after {run.timeout_seconds:g} s; {message}".rstrip("; ")
    elif status == "CANCELLED":
        message = "cancelled"
    return ActionResult(
        model=run.model, action=run.action, run_key=run.run_key, status=status, results_uri=run.results_uri,
        manifest=manifest.to_dict(), kpis_final=final, kpis_best=best,
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


def mask_saved_configs(results_dir: Path, secrets: list[str]) -> None:
    """TAO saves its merged config as `experiment.yaml` in the results (core/decorators/workflow.py:53),
    overrides included — the encryption key too. Mask secret values there before the results are read,
    uploaded or kept."""
    if not secrets:
        return
    for path in results_dir.rglob("experiment.yaml"):
        text = path.read_text(errors="replace")
        masked = text
        for secret in secrets:
            masked = masked.replace(secret, "****")
        if masked != text:
            path.write_text(masked)


def _unfinished(records: list[dict], exit_code: int | None) -> str:
    """Why a run with no error line in its log failed: TAO's own FAILURE line, or no success line at all."""
    last = records[-1] if records else {}
    if last.get("status") == "FAILURE":
        return f"TAO wrote FAILURE: {last.get('message', '')}".strip()
    said = f"; its last status line was {last.get('status')} {last.get('message', '')!r}" if last else ""
    code = "exit code unknown" if exit_code is None else f"exit code {exit_code}"
    return f"TAO never wrote its '… finished successfully.' line ({code}){said}"


_PRODUCT_PATTERNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("onnx", ("*.onnx",)), ("engine", ("*.engine", "*.trt", "*.plan")),
    ("cal_cache", ("cal*.bin", "*.cache", "*.tensorfile")),
    ("metrics", ("results.json", "report.csv", "evaluation_results.json")),
    ("anchor", ("*.npy",)), ("object_ids", ("map_object_hash_to_object_id.json",)),
    ("quantized", ("quantized_model_*.pth",)), ("inference", ("inference_results.json",)),
)


def products(handle: LocalHandle) -> dict[str, str]:
    """What the run produced, by kind (the first match in name order; checkpoints: the newest)."""
    from taoflow.manifest import parse_name

    root = handle.results_dir

    def uri(path: Path) -> str:
        rel = path.relative_to(root).as_posix()
        return handle.run.results_uri.rstrip("/") + "/" + rel

    def visible(path: Path) -> bool:
        rel = path.relative_to(root).parts
        return not any(part.startswith(".") for part in rel) and rel[0] != "inputs"

    found: dict[str, str] = {}
    for kind, patterns in _PRODUCT_PATTERNS:
        for pattern in patterns:
            hits = sorted(p for p in root.rglob(pattern) if visible(p))
            if hits:
                found[kind] = uri(hits[0])
                break
    annotations = sorted({p.parent for p in root.rglob("*_infos_*.pkl") if visible(p)})
    if annotations:  # Sparse4D's converter: one folder of per-scene pickles per split
        found["annotations"] = uri(annotations[0])
        for folder in annotations:
            found[f"annotations_{folder.name}"] = uri(folder)
    checkpoints = []
    for path in root.rglob("model_epoch_*.pth"):
        parsed = parse_name(path.name)
        if parsed.kind == "checkpoint" and parsed.incomplete_suffix is None and visible(path):
            checkpoints.append(((parsed.epoch or -1, parsed.step or -1, path.name), path))
    if checkpoints:
        found["checkpoint"] = uri(max(checkpoints)[1])  # the newest by epoch, then step
    for kind, path in (("log", handle.log_path), ("status", root / STATUS_FILE), ("spec", root / SPEC_FILE)):
        if path.exists():
            found[kind] = uri(path)
    return found
