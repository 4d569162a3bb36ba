"""Command line of the emulator, shaped like TAO's entrypoints: `MODEL ACTION -e SPEC [KEY=VALUE ...]`.

Exit codes follow TAO's container: 0 success, 1 for any Python failure (spec, data, CUDA, NCCL), 143 when
SIGTERM stops it (status FAILURE written, checkpoints kept), and death by SIGKILL for the `sigkill` fault.
Override values are never printed: secrets such as `encryption_key` arrive that way.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from taoflow.emulator.actions import ACTIONS, ActionContext, Preempted, install_sigterm, log
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


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    bad = [item for item in extra if "=" not in item or item.startswith("-")]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)} (overrides look like key=value)")
    args.overrides = extra
    install_sigterm()
    model_name = "sparse4d" if args.model == "annotations" else args.model
    action = "dataset_convert" if args.action == "convert" else args.action
    log(f"[EMULATED] taoflow TAO emulator: {model_name} {action} — no GPU, no real training; every product "
        "is marked EMULATED")
    try:
        overrides = parse_overrides(args.overrides)
    except ValueError as exc:
        _print_error(f"hydra.errors.OverrideParseException: {exc}")
        return EXIT_FAILURE
    if overrides:
        log(f"Applied {len(overrides)} command-line override(s): {', '.join(sorted(overrides))}")
    try:
        data = load_spec(args.spec, overrides, schema_defaults("sparse4d" if action == "dataset_convert" else model_name,
                                                             action))
    except FileNotFoundError:
        _print_error(f"FileNotFoundError: [Errno 2] No such file or directory: '{args.spec}'")
        return EXIT_FAILURE
    results_value = data.get("results_dir")
    if not results_value:
        _print_error("omegaconf.errors.MissingMandatoryValue: Missing mandatory value: results_dir\n"
                     "    full_key: results_dir\n    object_type=ExperimentConfig")
        return EXIT_FAILURE
    results_dir = Path(results_value)
    results_dir.mkdir(parents=True, exist_ok=True)
    status = StatusWriter(results_dir / "status.json")
    try:
        schema = load_schema(model_name if action != "dataset_convert" else "sparse4d", action)
        if schema is None:
            log(f"[EMULATED] no generated schema for {model_name} {action}; spec keys are not type-checked")
        else:
            check_against_schema(data, schema)
        spec = Spec(data, schema)
        model = MODELS[model_name](spec, results_dir)
        ctx = ActionContext(model, spec, action, results_dir, status, FaultPlan(results_dir))
        ACTIONS[action](ctx)
        return 0
    except Preempted:
        _print_error("Received SIGTERM: the process was preempted; stopping now (checkpoints already written "
                     "are kept).")
        _fail(status, action, model_name, "Received SIGTERM (preempted)")
        return EXIT_SIGTERM
    except ConfigError as exc:
        if exc.kind != "MissingMandatoryValue":
            _print_error(f"Error merging '{os.path.basename(args.spec)}' with schema")
        _print_error(f"omegaconf.errors.{exc.kind}: {exc}")
        _fail(status, action, model_name, f"{exc.kind}: {str(exc).splitlines()[0]}")
        return EXIT_FAILURE
    except EmulatedFailure as failure:
        for line in failure.lines:
            _print_error(line)
        _print_error("Traceback (most recent call last):")
        _print_error(f'  File "/usr/local/lib/python3.12/dist-packages/nvidia_tao_pytorch/cv/{model_name}/'
                     f'scripts/{action}.py", line 1, in run_experiment')
        for line in failure.frames:
            _print_error(line)
        _print_error(_exception_line(failure.exc))
        _fail(status, action, model_name, str(failure.exc).splitlines()[0])
        return EXIT_FAILURE
    except Exception as exc:
        traceback.print_exc()
        sys.stderr.flush()
        _fail(status, action, model_name, _exception_line(exc).splitlines()[0])
        return EXIT_FAILURE


def _fail(status: StatusWriter, action: str, model: str, reason: str) -> None:
    try:
        status.write("FAILURE", f"{action} action failed for {model}: {reason}", verbosity="ERROR")
    except (OSError, Preempted):
        pass
