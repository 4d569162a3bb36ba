"""Staging for a local TAO process: where its files come from before it starts.

- inputs named in the run (`ActionRun.stage`) and remote URIs in the spec are downloaded into the run's work
  folder; archives are extracted safely when the skill needs a directory (`taoflow.archive.safe_extract`);
- a run whose results live in a remote store (s3://) runs in a local folder: the spec's paths inside the
  remote results become local paths, and what an earlier attempt left in the store (status.json, the
  emulator's fired-faults record, the checkpoint to resume from) is downloaded first.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from pathlib import Path
from typing import Any

from taoflow.dotted import get_dotted, set_dotted
from taoflow.errors import UserError
from taoflow.runs import ActionRun
from taoflow.skill import Action
from taoflow.status import STATUS_FILE


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def local_of(uri: str) -> Path:
    return Path(uri.removeprefix("file://")).absolute()


def store_for(uri: str):
    """The ArtifactStore that can read and write `uri` (its bucket for s3://, its parent folder locally)."""
    from taoflow.store import ArtifactStore

    if is_remote(uri):
        scheme, rest = uri.split("://", 1)
        return ArtifactStore(f"{scheme}://{rest.split('/', 1)[0]}")
    return ArtifactStore(str(local_of(uri).parent))


def map_strings(value: Any, fn) -> Any:
    if isinstance(value, dict):
        return {k: map_strings(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [map_strings(v, fn) for v in value]
    return fn(value) if isinstance(value, str) else value


def results_folder_name(results_uri: str) -> str:
    return posixpath.basename(results_uri.rstrip("/")) or "results"


def localise_results(run: ActionRun, spec: dict[str, Any], results_dir: Path) -> dict[str, Any]:
    """Paths inside the remote results folder become paths in the local one; the files among them that
    already exist remotely (the run's own checkpoint to resume from) are downloaded to that place. The run
    folder itself (the `results_dir` TAO is handed so that its `<action>/` is the step's folder, see
    taoflow/layout.py) becomes the local folder's parent."""
    prefix = run.results_uri.rstrip("/")
    run_folder = posixpath.dirname(prefix)
    store = store_for(run.results_uri)

    def localise(value: str) -> str:
        if value.rstrip("/") == run_folder and results_dir.name == posixpath.basename(prefix):
            return str(results_dir.parent)
        if value != prefix and not value.startswith(prefix + "/"):
            return value
        local = Path(str(results_dir) + value[len(prefix):])
        if value != prefix and not local.exists() and store.exists(value):
            store.download(value, local)
        return str(local)

    return map_strings(spec, localise)


def pull_history(run: ActionRun, results_dir: Path) -> None:
    """A retry on a fresh machine continues the results already in the store: TAO appends to status.json
    (the KPI history of earlier attempts) and the emulator's fired-faults record must survive too."""
    store = store_for(run.results_uri)
    for name in (STATUS_FILE, ".emulator_faults_fired"):
        if not (results_dir / name).exists():
            try:
                store.download(store.join(run.results_uri, name), results_dir / name)
            except FileNotFoundError:
                pass


def stage_inputs(run: ActionRun, spec: dict[str, Any], action: Action, workdir: Path) -> dict[str, Any]:
    """Download what the run reads into `workdir/inputs` and return the spec pointing at the local copies."""
    inputs = workdir / "inputs"
    for local, uri in run.stage.items():
        dest = Path(local) if os.path.isabs(local) else workdir / local
        if local in run.extract:
            extract_uri(uri, dest, inputs)
        elif not dest.exists():
            store_for(uri).download(uri, dest)
    cache: dict[str, str] = {}

    def fetch(value: str) -> str:
        if not is_remote(value):
            return value
        if value not in cache:
            dest = inputs / hashlib.sha1(value.encode()).hexdigest()[:12] / Path(value.rstrip("/")).name
            if not dest.exists():
                try:
                    store_for(value).download(value, dest)
                except FileNotFoundError:
                    return value  # an output path or a file TAO creates; TAO reports it if it must exist
            cache[value] = str(dest)
        return cache[value]

    for ds in action.data_sources:
        if ds.extract_from:
            extract_source(spec, ds, inputs)
    return map_strings(spec, fetch)


def extract_source(spec: dict[str, Any], ds: Any, inputs: Path) -> None:
    """A directory the skill says TAO needs but the dataset holds as an archive: extract it (safely)."""
    value = get_dotted(spec, ds.key)
    values = value if isinstance(value, list) else [value]
    out = []
    for item in values:
        if not isinstance(item, str):
            out.append(item)
            continue
        if not is_remote(item) and Path(item).is_dir():
            out.append(item)
            continue
        root = item[: -len(ds.path)].rstrip("/") if ds.path and item.rstrip("/").endswith(ds.path) else \
            item.rsplit("/", 1)[0]
        archive_uri = f"{root}/{ds.extract_from}"
        target = inputs / "extracted" / hashlib.sha1(archive_uri.encode()).hexdigest()[:12]
        extract_uri(archive_uri, target, inputs)
        inner = target / ds.path if ds.path and (target / ds.path).is_dir() else target
        out.append(str(inner))
    set_dotted(spec, ds.key, out if isinstance(value, list) else out[0])


def extract_uri(uri: str, target: Path, inputs: Path) -> None:
    from taoflow.archive import safe_extract

    marker = target / ".taoflow_extracted"
    if marker.exists():
        return
    if is_remote(uri):
        archive = inputs / "archives" / hashlib.sha1(uri.encode()).hexdigest()[:12] / Path(uri).name
        if not archive.exists():
            store_for(uri).download(uri, archive)
    else:
        archive = local_of(uri)
        if not archive.is_file():
            raise UserError(f"cannot stage {uri}: the archive does not exist (and neither does the folder "
                            "that would be extracted from it)")
    safe_extract(archive, target)
    marker.write_text(uri)


# Outputs TAO refuses to overwrite: export asserts its ONNX does not exist (NVIDIA/tao_pytorch_backend
# nvidia_tao_pytorch/cv/rtdetr/scripts/export.py:132-134; the same in centerpose, action_recognition, sparse4d).
NO_OVERWRITE_KEYS = {"export": ("export.onnx_file", "export.onnx_file_2d")}


def retire_stale_outputs(run: ActionRun, spec: dict[str, Any], action: Action, results_dir: Path) -> list[str]:
    """Before an attempt starts: an output TAO will not overwrite, left in this run's own results by an
    earlier attempt that did not succeed, is moved aside as `<stem>.failed-attempt-N<suffix>.partial` — kept
    for inspection, listed in the manifest as incomplete with that reason, never handed on. Files outside
    the run's results (an ONNX next to someone's checkpoint) are left alone: TAO reports them. Returns one
    line per file moved."""
    moved = []
    root = results_dir.resolve()
    for key in NO_OVERWRITE_KEYS.get(action.tao_action, ()):
        value = get_dotted(spec, key)
        if not isinstance(value, str) or not value or is_remote(value):
            continue
        path = Path(value)
        if not path.is_file() or root not in path.resolve().parents:
            continue
        attempt = 1 + len(list(path.parent.glob(f"{path.stem}.failed-attempt-*")))
        target = path.with_name(f"{path.stem}.failed-attempt-{attempt}{path.suffix}.partial")
        os.replace(path, target)
        moved.append(f"{key}: {path.name} was left by a failed attempt of run {run.run_key}; moved to "
                     f"{target.name} so TAO can write a fresh one")
    return moved
