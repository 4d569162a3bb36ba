"""Sparse4D's `annotations.pkl`: written as a real pickle (TAO reads it with pickle), read back with an
unpickler that only admits plain containers and scalars, because a pickle from a dataset folder can
otherwise run arbitrary code when loaded."""

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


def read_annotations(path: str | Path | None) -> dict[str, Any]:
    if not path:
        raise ValueError("ann_file is not set (the annotations.pkl written by dataset_convert)")
    raw = Path(path).read_bytes()  # FileNotFoundError as TAO's mmengine load would raise
    data = _PlainUnpickler(io.BytesIO(raw)).load()
    if not isinstance(data, dict) or "infos" not in data:
        raise KeyError(f"{path}: an annotation file needs 'infos' and 'metadata'")
    return data
