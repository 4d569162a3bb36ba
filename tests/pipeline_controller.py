"""A pipeline controller as its own process, for tests that run several controllers against one store:
`python -m tests.pipeline_controller MODEL STORE DATA_ROOT ACTIONS [NUM_EPOCHS]`.

It runs the model's flow on the emulator with the datasets under DATA_ROOT (`<DATA_ROOT>/<role>`, local or
s3://) and prints `SUMMARY <json>` as its last line. Everything else (Prefect API, homes, S3 endpoint,
lease length, epoch length) comes from the environment the test gives it."""

from __future__ import annotations

import json
import sys

from flows import model_flow
from flows.demo import SAMPLE_FIELDS
from taoflow.store import ArtifactStore


def controller_params(model: str, store: str, data_root: str, actions: list[str], epochs: int):
    """The flow parameters every controller of a test derives from the same arguments."""
    data = ArtifactStore(data_root)
    roles = sorted({entry.path.split("/", 1)[0] for entry in data.list_files(data_root, include_dirs=False)})
    _, params_cls = model_flow(model)
    return params_cls(
        datasets={role: data.join(data_root, role) for role in roles}, store=store, actions=actions,
        overrides={"train": {"train.num_epochs": epochs, "train.checkpoint_interval": 1}},
        launcher={"name": "local", "emulate": True}, automl={"policy": "off"}, **SAMPLE_FIELDS[model],
    )


def main(argv: list[str]) -> int:
    model, store, data_root, actions = argv[:4]
    epochs = int(argv[4]) if len(argv) > 4 else 3
    flow_fn, _ = model_flow(model)
    summary = flow_fn(controller_params(model, store, data_root, actions.split(","), epochs))
    print("SUMMARY " + json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
