"""A release manifest: the champion of a registry name, written where a serving system picks it up.

`<store>/releases/<model>/<name>/release.json` names the engine (else ONNX, else checkpoint) to serve, its
version, precision and KPIs, and the registry event it was taken from (`seq`). It is what the example
deployment pipeline (flows/release.py, triggered by `tao.model.promoted`) writes; a real rollout (a Triton
model repository, a DeepStream config, a fleet update) starts from the same champion record.

The registry is the truth, not the event that triggered a release: a later promotion or a rollback may have
landed since, and the release is always of the current champion. Two releases running at once converge on
the newest champion, as champion.json does: each re-reads the registry after writing and writes again if a
newer event landed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from taoflow.errors import UserError
from taoflow.registry.core import ModelRegistry
from taoflow.registry.records import FORMAT_VERSION

MAX_ROUNDS = 20


def release_uri(registry: ModelRegistry, model: str, name: str) -> str:
    store = registry.store
    return store.join(store.root, "releases", model, name, "release.json")


def release_champion(registry: ModelRegistry, model: str, name: str) -> dict[str, Any]:
    """Write the release manifest of the current champion of `model`/`name`; returns it. A manifest that
    already names this champion is left as it is (`changed: False`): releasing is idempotent."""
    uri = release_uri(registry, model, name)
    for _ in range(MAX_ROUNDS):
        state = registry.state(model, name)
        champion = state.champion
        if champion is None:
            raise UserError(f"{model}/{name} has no champion to release (nothing was promoted yet)")
        registry.require_files(champion, model, name, "champion")
        current = _read(registry, uri)
        if current and current.get("version") == champion.version_id and current.get("seq", 0) >= state.seq:
            return {**current, "changed": False}
        manifest = {
            "format": FORMAT_VERSION, "model": model, "name": name, "seq": state.seq,
            "version": champion.version_id, "deployable": champion.deployable, "engine": champion.engine,
            "onnx": champion.onnx, "checkpoint": champion.checkpoint, "precision": champion.precision,
            "kpis_pytorch": champion.kpis_pytorch, "kpis_tensorrt": champion.kpis_tensorrt,
            "images": champion.images, "emulated": champion.emulated,
            "released_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        }
        registry.store.write_json_atomic(uri, manifest)
        if registry.state(model, name).seq == state.seq:
            return {**manifest, "changed": True}
    raise UserError(f"{model}/{name}: the registry kept changing while releasing; run the release again")


def _read(registry: ModelRegistry, uri: str) -> dict[str, Any] | None:
    try:
        data = registry.store.read_json(uri)
    except FileNotFoundError:
        return None
    except ValueError:
        return None  # an unreadable manifest is replaced
    return data if isinstance(data, dict) else None
