"""ActionRun (what to run) and ActionResult (what came of it): the objects every launcher speaks.

`run_key` is a content hash of everything that determines an action's result, so the same inputs never
pay for the same GPU hours twice: the image reference, the canonical spec with its input URIs replaced by
content digests, the digests of the parent checkpoints, whether the TAO emulator or real TAO runs it
(an emulated result must never answer a run that may not use the emulator), and for a train step the train
action policy in force (`automl`: on for a sweep's trials, off for one direct train run), so a model trained
one way never answers a run asked the other way, and every step downstream follows (its parent digest).
Paths that only say *where* results go (`results_dir`, created output files) are left out by the caller
before hashing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

FailureClass = Literal["infra", "program", "spec"]
RunStatus = Literal["SUCCESS", "FAILURE", "CANCELLED"]


def canonical_json(value: Any) -> str:
    """Deterministic JSON: sorted keys, no whitespace, so equal specs hash equally."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def compute_run_key(
    *,
    model: str,
    action: str,
    image: str,
    spec: dict[str, Any],
    input_digests: dict[str, str] | None = None,
    parent_digests: dict[str, str] | None = None,
    emulated: bool,
    automl: str | None = None,
) -> str:
    """A short, stable content hash naming the run (also the Kubernetes Job / docker container name).
    `automl` (train steps only) is the train action policy in force, `on` or `off`."""
    payload: dict[str, Any] = {
        "model": model,
        "action": action,
        "image": image,
        "spec": spec,
        "inputs": input_digests or {},
        "parents": parent_digests or {},
        "emulated": bool(emulated),
    }
    if automl is not None:
        payload["automl"] = automl
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:20]


@dataclass
class ActionRun:
    """One TAO action to run. `spec` is the full TAO spec (already resolved); `results_uri` is where its
    results live in the store; `stage` maps local paths the container reads to the store/dataset URIs
    they come from (the launcher downloads them, extracting archives when `extract` lists them)."""

    model: str
    action: str
    spec: dict[str, Any]
    image: str
    run_key: str
    results_uri: str
    gpus: int = 1
    nodes: int = 1
    stage: dict[str, str] = field(default_factory=dict)
    extract: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    # Spec keys whose values are secrets (encryption_key), mapped to the environment variable that holds
    # them. Neither the value nor `key=value` ever reaches a spec file or TAO's argv: the spec TAO reads says
    # `${oc.env:VAR}` and VAR reaches the process by environment (docker: container env; Kubernetes: a
    # Secret-backed env var); the value is masked in every log line.
    secret_overrides: dict[str, str] = field(default_factory=dict)
    timeout_seconds: float | None = None
    # Whether the TAO emulator runs it. The planner resolves it (planner.resolve_emulate) before the run key
    # is computed; None (an ActionRun built by hand) means the local launcher's rule: when TAO is not installed.
    emulate: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ActionResult:
    """What a finished action produced. `products` maps kinds (onnx, engine, cal_cache, checkpoint, log,
    status) to URIs; `manifest` is the checkpoint manifest of the results folder."""

    model: str
    action: str
    run_key: str
    status: RunStatus
    results_uri: str
    manifest: dict[str, Any] | None = None
    kpis_final: dict[str, float] = field(default_factory=dict)
    kpis_best: dict[str, float] = field(default_factory=dict)
    products: dict[str, str] = field(default_factory=dict)
    gpu_seconds: float = 0.0
    epochs_run: int = 0
    failure_class: FailureClass | None = None
    remedy: str | None = None
    message: str | None = None
    exit_code: int | None = None
    emulated: bool = False
    cached: bool = False  # answered from the store without launching (set by the caching layer)

    @property
    def ok(self) -> bool:
        return self.status == "SUCCESS"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ActionResult:
        return cls(**data)
