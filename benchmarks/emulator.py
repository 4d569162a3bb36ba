"""Launcher overhead per action on the emulator: wall time from `LocalLauncher.submit` to the ActionResult,
with `TAOFLOW_EMULATOR_EPOCH_SECONDS=0` so nothing but process start, spec/data reading, status tailing and
the manifest is measured. Target: under 1 s per action. Also prints the bare emulator process start.

    python benchmarks/emulator.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ["TAOFLOW_EMULATOR_EPOCH_SECONDS"] = "0"

from taoflow.datasets import write_sample_data
from taoflow.launchers.local import LocalLauncher
from taoflow.runs import ActionRun
from tests.test_emulator_specs import make_spec

STEPS = {
    "rtdetr": ["train", "evaluate", "export", "quantize", "gen_trt_engine", "trt_evaluate", "inference"],
    "centerpose": ["train", "evaluate", "export", "gen_trt_engine", "trt_evaluate", "inference"],
    "action_recognition": ["train", "evaluate", "export", "inference"],
    "sparse4d": ["dataset_convert", "train", "evaluate", "export", "quantize"],
    "nvpanoptix3d": ["train", "evaluate", "export", "inference"],
}


def run_once(launcher: LocalLauncher, model: str, action: str, spec: dict, results: Path, key: str
             ) -> tuple[float, object]:
    run = ActionRun(model=model, action=action, spec=spec, image="emulator", run_key=key,
                    results_uri=str(results), emulate=True)
    t0 = time.perf_counter()
    handle = launcher.submit(run)
    for _ in launcher.events(handle):
        pass
    result = launcher.result(handle)
    elapsed = time.perf_counter() - t0
    if not result.ok:
        raise SystemExit(f"{model} {action} failed: {result.message}")
    return elapsed, result


def pipeline(root: Path, model: str, launcher: LocalLauncher, attempt: int) -> dict[str, float]:
    data = root / "data" / model
    runs = root / f"runs{attempt}" / model
    up: dict = {"num_epochs": 2, "interval": 1}
    times: dict[str, float] = {}
    for action in STEPS[model]:
        if action == "dataset_convert":
            total = 0.0
            for role, split in (("train", "train"), ("eval", "val")):
                out = runs / f"convert-{role}"
                spec = make_spec(model, action, data, out, {"root": data / role, "split": split})
                elapsed, _ = run_once(launcher, model, action, spec, out, f"c{role}{attempt}")
                total += elapsed
                up[f"convert_{role}"] = out
            times[action] = total / 2
            continue
        out = runs / action
        elapsed, result = run_once(launcher, model, action, make_spec(model, action, data, out, up), out,
                                   f"{action}{attempt}")
        times[action] = elapsed
        if action == "train":
            up["checkpoint"] = result.products["checkpoint"]
        elif action == "export":
            up["onnx"] = result.products["onnx"]
        elif action == "gen_trt_engine":
            up["engine"] = result.products["engine"]
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="taoflow-bench-") as tmp:
        root = Path(tmp)
        os.environ["TAOFLOW_HOME"] = str(root / "home")
        for model in STEPS:
            write_sample_data(model, root / "data" / model)
        bare = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "taoflow.emulator", "--help"], capture_output=True, check=True)
            bare.append(time.perf_counter() - t0)
        print(f"emulator process start (python -m taoflow.emulator --help): median {statistics.median(bare):.3f} s")
        launcher = LocalLauncher(poll_seconds=0.05)
        print(f"\nlauncher overhead per action, submit → ActionResult (median of {args.repeat}; target < 1 s; "
              "poll interval 0.05 s)")
        print(f"{'model':<20}{'action':<16}{'median s':>10}{'max s':>10}")
        worst = 0.0
        for model in STEPS:
            samples: dict[str, list[float]] = {}
            for attempt in range(args.repeat):
                for action, seconds in pipeline(root, model, launcher, attempt).items():
                    samples.setdefault(action, []).append(seconds)
            for action, values in samples.items():
                worst = max(worst, max(values))
                print(f"{model:<20}{action:<16}{statistics.median(values):>10.3f}{max(values):>10.3f}")
        print(f"\nworst single action: {worst:.3f} s ({'meets' if worst < 1 else 'misses'} the 1 s target)")


if __name__ == "__main__":
    main()
