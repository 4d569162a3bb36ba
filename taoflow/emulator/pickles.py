"""Sparse4D's OVPKL annotation pickles: written as real pickles (TAO reads them with pickle), read back with
an unpickler that only admits plain containers and scalars, because a pickle from a dataset folder can
otherwise run arbitrary code when loaded.

`ann_file` is a single pickle or a folder of per-scene pickles (`<split>/<scene>_infos_<split>.pkl`, what
the AICity converter writes): every `*.pkl` in it, in name order, infos concatenated and sorted by
(scene_name, timestamp), as NVIDIA/tao_pytorch_backend nvidia_tao_pytorch/cv/sparse4d/dataloader/
dataset.py:290-320 loads them.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from taoflow.emulator.artifacts import write_atomic


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"global '{module}.{name}' is forbidden in annotation files")


def write_annotations(path: str | Path, data: dict[str, Any]) -> Path:
    return write_atomic(path, pickle.dumps(data, protocol=4))


def _load(path: Path) -> dict[str, Any]:
    data = _PlainUnpickler(io.BytesIO(path.read_bytes())).load()  # FileNotFoundError as TAO's open() raises
    if not isinstance(data, dict) or "infos" not in data:
        raise KeyError(f"{path}: an annotation file needs 'infos' and 'metadata'")
    return data


def read_annotations(path: str | Path | None) -> dict[str, Any]:
    if not path:
        raise ValueError("ann_file is not set (the per-split folder of *_infos_<split>.pkl that dataset_convert "
                         "writes)")
    p = Path(path)
    if p.is_dir():
        data: dict[str, Any] = {"infos": [], "metadata": {}}
        for scene in sorted(n for n in p.iterdir() if n.name.endswith(".pkl")):
            one = _load(scene)
            data["infos"].extend(one["infos"])
            data["metadata"] = one.get("metadata", {})
    else:
        data = _load(p)
    data["infos"] = sorted(data["infos"], key=lambda e: (e["scene_name"], e["timestamp"]))
    return data
