"""The emulator's files: checkpoints, ONNX, engines and calibration caches that say they are emulated.

Each file is a short header line plus JSON, so downstream actions can check what they were given (model,
epoch, the KPIs of that epoch, the digest of the file they derive from) and a person opening one sees at
once that it holds no weights. Files are written to a temp name and renamed, so a SIGKILL never leaves a
half-written file under a final name that a resume would pick up.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

MAGIC = b"EMULATED TAO ARTIFACT (taoflow emulator; no real weights)\n"


def write_atomic(path: str | Path, data: bytes) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:  # SIGTERM mid-write: no temp file left behind (SIGKILL can leave one; never a final name)
        tmp.unlink(missing_ok=True)
        raise
    return p


def write_artifact(path: str | Path, kind: str, payload: dict[str, Any]) -> Path:
    body = {"emulated": True, "kind": kind, **payload}
    return write_atomic(path, MAGIC + json.dumps(body, indent=1, sort_keys=True).encode() + b"\n")


def read_artifact(path: str | Path, expected: tuple[str, ...] | None = None) -> dict[str, Any]:
    """The payload of an emulated file; a real TAO file (or garbage) fails like a failed torch.load."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(2, "No such file or directory", str(path))
    data = p.read_bytes()
    if not data.startswith(MAGIC):
        raise RuntimeError(f"{path} is not an emulated TAO artifact; the emulator cannot load real weights "
                           "(run real TAO for real checkpoints)")
    payload = json.loads(data[len(MAGIC):])
    if expected and payload.get("kind") not in expected:
        raise RuntimeError(f"{path} is a {payload.get('kind')} file, expected {' or '.join(expected)}")
    return payload


def digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def checkpoint_name(epoch: int, step: int) -> str:
    return f"model_epoch_{epoch:03d}_step_{step:05d}.pth"


def update_latest_link(results_dir: Path, link_name: str, target_name: str) -> None:
    """Point `<model>_model_latest.pth` at the newest checkpoint (relative symlink, replaced atomically)."""
    link = results_dir / link_name
    tmp = results_dir / f".{link_name}.tmp-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target_name, tmp)
    os.replace(tmp, link)
