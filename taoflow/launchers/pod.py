"""The in-pod runner: `python -m taoflow.launchers.local RUN_JSON` inside a Kubernetes pod, a docker
container or a work-pool worker runs the ActionRun with the LocalLauncher there and stores `result.json`
beside the results (rank 0 only: it is the node that writes TAO's results)."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

from taoflow.errors import UserError
from taoflow.launchers.base import LogLine
from taoflow.launchers.results import node_rank
from taoflow.launchers.staging import store_for
from taoflow.runs import ActionRun


def run_from_json(source: str) -> int:
    """Run the ActionRun in `source` (a JSON file path, `-` for stdin, or inline JSON) here; store result.json
    next to the results; return TAO's exit code (128+N when killed by signal N)."""
    from taoflow.launchers.local import LocalLauncher

    if source == "-":
        text = sys.stdin.read()
    elif source.lstrip().startswith("{"):
        text = source
    else:
        text = Path(source).read_text()
    run = ActionRun(**json.loads(text))
    launcher = LocalLauncher()
    handle = launcher.submit(run)

    def forward(signum: int, frame: Any) -> None:  # pod deletion / worker shutdown reaches TAO's group
        launcher.cancel(handle)

    signal.signal(signal.SIGTERM, forward)
    for event in launcher.events(handle):
        if isinstance(event, LogLine):
            print(event.text, flush=True)
    result = launcher.result(handle)
    if node_rank() == 0:  # one result per run: rank 0's (it is the node that writes TAO's results)
        store_for(run.results_uri).write_result(run.results_uri, result)
    print(f"taoflow: {run.model} {run.action} {result.status}"
          + (f" ({result.failure_class}): {result.message}" if not result.ok else ""), flush=True)
    if result.ok:
        return 0
    return result.exit_code if result.exit_code not in (None, 0) else 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m taoflow.launchers.local RUN_JSON  (a file, '-' for stdin, or inline JSON)",
              file=sys.stderr)
        return 2
    try:
        return run_from_json(args[0])
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
