"""Median time to render and validate each model's train spec (target: < 20 ms for rtdetr).

`python benchmarks/spec.py [--repeat N]` prints, per model, the cold first call (template read, schema
compiled and cached) and the median / p90 of warm calls of build_spec + validate_spec(complete=True),
the way the pipeline preflight runs them (the encryption key as `${oc.env:TAO_ENCRYPTION_KEY}`). Dataset
URIs are s3:// (no AWS environment is needed: the rules skip remote reads unless S3 is configured, as on
a laptop without credentials).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from taoflow.skill import load_skill, skill_names
from taoflow.spec import build_spec
from taoflow.validate import validate_spec

DATA = {"train": "s3://bucket/data/train", "eval": "s3://bucket/data/eval"}
UPSTREAM = {"dataset_convert:train": "s3://bucket/runs/c/train", "dataset_convert:eval": "s3://bucket/runs/c/eval"}
OVERRIDES = {
    "rtdetr": ["dataset.num_classes=5", "train.num_epochs=10"],
    "centerpose": ["dataset.category=bike", "train.num_epochs=30"],
    "action_recognition": ["train.num_epochs=30", "dataset.batch_size=2"],
    "sparse4d": ["train.num_epochs=30", "dataset.sequences.split_num=90"],
    "nvpanoptix3d": ["train.num_epochs=10", "train.optim.monitor_name=train_loss"],
}


# How the pipeline passes the encryption key: an OmegaConf env interpolation, resolved in the container.
KEY = "encryption_key=${oc.env:TAO_ENCRYPTION_KEY}"


def render_and_validate(model: str) -> int:
    skill = load_skill(model)
    spec = build_spec(skill, "train", data=DATA, upstream=UPSTREAM, overrides=[*OVERRIDES.get(model, []), KEY],
                      handoffs={"results_dir": f"s3://bucket/runs/{model}/k/train"})
    problems = validate_spec(skill, "train", spec, complete=True)
    if problems:
        raise SystemExit(f"{model}: unexpected problems: {[str(p) for p in problems]}")
    return len(spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    os.environ.setdefault("TAOFLOW_VALIDATE_REMOTE", "0")
    print(f"render + validate (complete) of the train spec; {args.repeat} warm runs per model")
    print(f"{'model':<20}{'cold ms':>10}{'median ms':>12}{'p90 ms':>10}")
    for model in skill_names():
        start = time.perf_counter()
        render_and_validate(model)
        cold = (time.perf_counter() - start) * 1000
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            render_and_validate(model)
            times.append((time.perf_counter() - start) * 1000)
        times.sort()
        p90 = times[int(len(times) * 0.9) - 1]
        print(f"{model:<20}{cold:>10.1f}{statistics.median(times):>12.2f}{p90:>10.2f}")


if __name__ == "__main__":
    main()
