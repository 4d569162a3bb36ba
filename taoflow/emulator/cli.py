"""Command line of the emulator, shaped like TAO's entrypoints: `MODEL ACTION -e SPEC [KEY=VALUE ...]`.

Around every action it does what TAO's `monitor_status` decorators do (NVIDIA/tao_pytorch_backend
nvidia_tao_pytorch/core/decorators/workflow.py; tao_deploy nvidia_tao_deploy/cv/common/decorators.py;
tao_dataset_suite nvidia_tao_ds/core/decorators.py — docs/tao-contract.md, "end of a run"):
- the spec is merged first; a merge error prints and exits 1 before any status line exists;
- results go to `<results_dir>/<action>/` (`<action>.results_dir` wins; Deploy's folders are gen_trt_engine,
  trt_evaluate, trt_inference; Data Services writes into `results_dir`), where status.json gets STARTED
  "Starting <Name> <mode>." first and, when the action returns, RUNNING "<Mode> finished successfully." —
  never SUCCESS;
- failures TAO names get a FAILURE line and re-raise (exit 1): "Configuration error: …" (omegaconf errors on
  read), "Feature not implemented: …", "Parameter validation error: …" (ValueError, TypeError), "File system
  error: …" (OSError); anything else (CUDA, NCCL, AssertionError, KeyError) only prints its traceback;
- SIGTERM stops it without a status line (exit 143); the `sigkill` fault kills it.
Override values are never printed: secrets such as `encryption_key` arrive that way.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from taoflow.emulator.actions import ACTIONS, image_for
from taoflow.emulator.context import ActionContext, Preempted, install_sigterm, log
from taoflow.emulator.faults import FaultPlan
from taoflow.emulator.models import MODELS, EmulatedFailure
from taoflow.emulator.spec import (
    ConfigError,
    Spec,
    check_against_schema,
    load_schema,
    load_spec,
    parse_overrides,
    schema_defaults,
)
from taoflow.layout import DEPLOY_FOLDERS, written_to
from taoflow.status import StatusWriter

EXIT_FAILURE = 1
EXIT_SIGTERM = 143


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m taoflow.emulator",
                                     description="TAO container CLI emulator (EMULATED, no GPU).")
    parser.add_argument("model", choices=sorted(MODELS) + ["annotations"])
    parser.add_argument("action", choices=sorted(ACTIONS))
    parser.add_argument("-e", "--experiment_spec_file", "--experiment_spec", dest="spec", required=True)
    return parser


def _print_error(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _exception_line(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    name = cls.__qualname__ if module in ("builtins", "__main__") else f"{module}.{cls.__qualname__}"
    return f"{name}: {exc}"


def _labels(model: str, action: str, image: str) -> tuple[str, str]:
    """(STARTED message, finished message) as the image's monitor_status writes them."""
    if image == "data-services":  # monitor_status(mode='Annotation conversion'), default name
        return "Starting Data-services Annotation conversion.", "Annotation conversion finished successfully."
    emulator = MODELS[model]
    if image == "deploy":
        task = DEPLOY_FOLDERS.get(action, action)
        return f"Starting {emulator.deploy_name or model} {task}.", f"{task.capitalize()} finished successfully."
    name = "RTDETR" if (model, action) == ("rtdetr", "distill") else emulator.display_name  # scripts/distill.py:34
    return f"Starting {name} {action}.", f"{action.capitalize()} finished successfully."


def _failure_line(exc: BaseException) -> str | None:
    """The FAILURE message monitor_status writes for `exc`, or None when it writes none."""
    if isinstance(exc, ConfigError):
        return f"Configuration error: {exc}"
    if isinstance(exc, NotImplementedError):
        return f"Feature not implemented: {exc}"
    if isinstance(exc, (ValueError, TypeError)):
        return f"Parameter validation error: {exc}"
    if isinstance(exc, OSError):
        return f"File system error: {exc}"
    return None


def _results_folder(data: dict, model: str, action: str, image: str) -> Path:
    section = data.get(action) if isinstance(data.get(action), dict) else {}
    section_dir = section.get("results_dir") if image != "data-services" else None
    results_dir = data.get("results_dir")
    if not section_dir and (not results_dir or results_dir == "???"):
        if image == "data-services" or results_dir == "???":
            raise ConfigError("MissingMandatoryValue", "Missing mandatory value: results_dir", "results_dir",
                              "ExperimentConfig")
        raise ValueError(f"You need to set at least one of following fields: results_dir, {action}.results_dir")
    return Path(written_to(str(results_dir or ""), image, action, section_dir))


def _save_experiment(data: dict, results_dir: Path, action: str, image: str) -> None:
    """The merged config as TAO saves it after update_results_dir — including what came as overrides (TAO
    writes `encryption_key` here too; taoflow's launcher masks secrets in it before anything leaves)."""
    import yaml

    saved = dict(data)
    saved["results_dir"] = str(results_dir)
    section = dict(saved.get(action) or {}) if isinstance(saved.get(action), dict) else {}
    section["results_dir"] = str(results_dir)
    saved[action] = section
    (results_dir / "experiment.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    bad = [item for item in extra if "=" not in item or item.startswith("-")]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)} (overrides look like key=value)")
    install_sigterm()
    model_name = "sparse4d" if args.model == "annotations" else args.model
    action = "dataset_convert" if args.action == "convert" else args.action
    log(f"[EMULATED] taoflow TAO emulator: {model_name} {action} — no GPU, no real training; every product "
        "is marked EMULATED")
    try:
        overrides = parse_overrides(extra)
    except ValueError as exc:
        _print_error(f"hydra.errors.OverrideParseException: {exc}")
        return EXIT_FAILURE
    if overrides:
        log(f"Applied {len(overrides)} command-line override(s): {', '.join(sorted(overrides))}")
    if not os.path.exists(args.spec):  # nvidia_tao_pytorch/core/entrypoint.py:133-140
        print(f"ERROR: The indicated experiment spec file `{args.spec}` doesn't exist!", flush=True)
        return EXIT_FAILURE
    schema_model = "sparse4d" if action == "dataset_convert" else model_name
    try:  # Hydra's merge: fails before monitor_status writes anything
        data = load_spec(args.spec, overrides, schema_defaults(schema_model, action))
        schema = load_schema(schema_model, action)
        if schema is None:
            log(f"[EMULATED] no generated schema for {model_name} {action}; spec keys are not type-checked")
        else:
            check_against_schema(data, schema)
        spec = Spec(data, schema)
        image = image_for(model_name, action, spec)
        tao_action = "convert" if action == "dataset_convert" else action
        results_dir = _results_folder(data, model_name, tao_action, image)
    except ConfigError as exc:
        if exc.kind != "MissingMandatoryValue":
            _print_error(f"Error merging '{os.path.basename(args.spec)}' with schema")
        _print_error(f"omegaconf.errors.{exc.kind}: {exc}")
        return EXIT_FAILURE
    except ValueError as exc:  # update_results_dir runs before monitor_status's try: no status line
        _print_error(_exception_line(exc))
        return EXIT_FAILURE
    results_dir.mkdir(parents=True, exist_ok=True)
    if image != "data-services":  # OmegaConf.save(cfg, <results>/experiment.yaml), overrides and all
        _save_experiment(data, results_dir, tao_action, image)
    status = StatusWriter(results_dir / "status.json")
    started, finished = _labels(model_name, tao_action, image)
    status.write("STARTED", started)
    try:
        model = MODELS[model_name](spec, results_dir)
        ctx = ActionContext(model, spec, tao_action, image, results_dir, status, FaultPlan(results_dir))
        ACTIONS[action](ctx)
        ctx.fire_end_fault()
        status.write("RUNNING", finished)
        return 0
    except Preempted:
        _print_error("Received SIGTERM: the process was preempted; stopping now (checkpoints already written "
                     "are kept).")
        return EXIT_SIGTERM
    except EmulatedFailure as failure:
        for line in failure.lines:
            _print_error(line)
        _print_error("Traceback (most recent call last):")
        _print_error(f'  File "/usr/local/lib/python3.12/dist-packages/nvidia_tao_pytorch/cv/{model_name}/'
                     f'scripts/{tao_action}.py", line 1, in run_experiment')
        for line in failure.frames:
            _print_error(line)
        _print_error(_exception_line(failure.exc))
        return EXIT_FAILURE
    except RuntimeError as exc:
        if image == "data-services":  # convert.py catches it, prints, and sys.exit()s with 0
            print(f"Data conversion run failed with error: {exc}", flush=True)
            return 0
        traceback.print_exc()
        return EXIT_FAILURE
    except Exception as exc:
        message = _failure_line(exc)
        if message is not None:
            try:
                status.write("FAILURE", message)
            except OSError:
                pass
        traceback.print_exc()
        sys.stderr.flush()
        if isinstance(exc, ConfigError):
            _print_error(f"omegaconf.errors.{exc.kind}: {exc}")
        return EXIT_FAILURE
