"""The checkpoint manifest of a results folder: every checkpoint and product, what it is, which epoch and
step it holds, and the KPIs TAO logged for that epoch.

Built from ONE recursive listing of the folder plus a read of its `status.json` file(s) (and of TAO Deploy's
evaluation file, when there is one), so it costs the same on S3 as locally. Names are parsed rather than
guessed from the path (NVIDIA's picker takes the largest epoch number found anywhere in the path and ignores
Lightning names):

- TAO: `model_epoch_000_step_00020.pth`, RT-DETR's epoch-only `model_epoch_012.pth`, unpadded
  `model_epoch_5_step_120.pth`, `model_best_012.pth`, any `*best*` name, `<model>_model_latest.pth` (a link
  to the newest checkpoint, or a file of its own until the first checkpoint is written); Lightning:
  `epoch=3-step=100.ckpt`, `last.ckpt`; sharded checkpoints as `epoch_*` / `step_*` directories; at any depth
  (older layouts nest them under `train/`).
- Kinds: checkpoint, best, latest (a link, or a `*latest*` / `last.ckpt` name — S3 has no links, so names
  decide there), onnx, engine, cal_cache.
- Incomplete files (size 0, `.tmp` / `.partial` / `.part` suffixes) are listed with the reason and marked
  `complete: false`; they are never candidates. An ONNX a failed export attempt left is moved aside as
  `<name>.failed-attempt-N.onnx.partial` before the retry (TAO refuses to overwrite an ONNX) and listed so.
- KPIs: taoflow.status.StatusReader folds status.json (string KPIs as numbers; the epoch-less "Eval/Train
  metrics generated." lines attributed to their epoch; sticky repeats ignored). A checkpoint gets the KPIs
  of its epoch when it holds the end-of-epoch state: a step-based checkpoint written mid-epoch (its step
  below the step status.json gives for that epoch's end) gets none. Epochs are 0-based in both.
- `evaluation`: TAO Deploy's evaluate KPIs from `results.json` / `report.csv` (taoflow/evaluation.py).

Stored as `manifest.json` beside the results (`save=True`) and rebuilt on demand; the resolver always
rebuilds it, because a training pod may have written files since.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from taoflow.evaluation import EVALUATION_FILES, evaluation_kpis
from taoflow.kpis import metric_in
from taoflow.status import parse_status_lines, read_kpis
from taoflow.store import ArtifactStore, StoreEntry

Kind = Literal["checkpoint", "best", "latest", "onnx", "engine", "cal_cache"]
Direction = Literal["maximize", "minimize"]

MANIFEST_FILE = "manifest.json"
STATUS_FILE = "status.json"
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".ckpt", ".tlt", ".hdf5")
ENGINE_SUFFIXES = (".engine", ".trt", ".plan")
CAL_CACHE_SUFFIXES = (".bin", ".cache", ".tensorfile")
INCOMPLETE_SUFFIXES = (".tmp", ".partial", ".part", ".incomplete")
FAILED_ATTEMPT = re.compile(r"\.failed-attempt-(\d+)\.", re.IGNORECASE)

_EPOCH = re.compile(r"(?:^|[^a-z])epoch[_=-]?(\d+)", re.IGNORECASE)
_STEP = re.compile(r"(?:^|[^a-z])step[_=-]?(\d+)", re.IGNORECASE)
_BEST_N = re.compile(r"best[_=-]?(\d+)", re.IGNORECASE)
_CHECKPOINT_DIR = re.compile(r"^(?:.*[_-])?(?:epoch|step)[_=-]?\d+", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedName:
    kind: Kind | None
    epoch: int | None
    step: int | None
    incomplete_suffix: str | None = None


def parse_name(name: str, *, is_dir: bool = False, is_link: bool | None = None) -> ParsedName:
    """Kind, epoch and step from a file or directory name (the basename; no path parts are consulted)."""
    base = posixpath.basename(name.rstrip("/"))
    lowered = base.lower()
    incomplete = next((s for s in INCOMPLETE_SUFFIXES if lowered.endswith(s)), None)
    if incomplete:
        base = base[: -len(incomplete)]
        lowered = base.lower()
    epoch_m, step_m = _EPOCH.search(base), _STEP.search(base)
    epoch = int(epoch_m.group(1)) if epoch_m else None
    step = int(step_m.group(1)) if step_m else None
    if is_dir:
        kind: Kind | None = "checkpoint" if _CHECKPOINT_DIR.match(base) else None
        return ParsedName(kind, epoch if kind else None, step if kind else None, incomplete)
    stem, suffix = posixpath.splitext(lowered)
    if suffix in CHECKPOINT_SUFFIXES:
        if "latest" in stem or stem == "last" or is_link:
            kind = "latest"
        elif "best" in stem:
            kind = "best"
            if epoch is None and (best_m := _BEST_N.search(base)):
                epoch = int(best_m.group(1))
        else:
            kind = "checkpoint"
    elif suffix == ".onnx":
        kind = "onnx"
    elif suffix in ENGINE_SUFFIXES:
        kind = "engine"
    elif suffix in CAL_CACHE_SUFFIXES and "cal" in stem:
        kind = "cal_cache"
    else:
        return ParsedName(None, None, None, incomplete)
    return ParsedName(kind, epoch, step, incomplete)


@dataclass
class ManifestEntry:
    """One checkpoint or product. `kpis` are the values status.json first recorded at this entry's epoch;
    `metric_value` is the monitoring metric among them (None: no KPI of its own)."""

    uri: str
    path: str
    kind: Kind
    epoch: int | None
    step: int | None
    size: int
    version: str | None
    mtime: float | None
    is_dir: bool = False
    is_link: bool | None = None
    complete: bool = True
    problem: str | None = None
    kpis: dict[str, float] = field(default_factory=dict)
    metric_value: float | None = None

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def depth(self) -> int:
        return self.path.count("/")

    def label(self) -> str:
        parts = [self.kind]
        if self.epoch is not None:
            parts.append(f"epoch {self.epoch}")
        if self.step is not None:
            parts.append(f"step {self.step}")
        return ", ".join(parts)


@dataclass
class EpochKpis:
    """KPIs parsed from status.json: values first recorded at each epoch, the global step at each epoch's
    end, every KPI's last value, the last line's status."""

    by_epoch: dict[int, dict[str, float]] = field(default_factory=dict)
    final: dict[str, float] = field(default_factory=dict)
    status: str | None = None
    max_epoch: int | None = None
    last_epoch: int | None = None
    end_step: dict[int, int] = field(default_factory=dict)


def parse_status(text: str, into: EpochKpis | None = None) -> EpochKpis:
    """Fold status.json lines into per-epoch KPIs (taoflow.status.StatusReader: string KPIs read as numbers,
    epoch-less metric lines attributed to their epoch). Malformed lines (a line being written) are skipped."""
    kpis = into or EpochKpis()
    reader = read_kpis(parse_status_lines(text.splitlines()))
    for epoch, values in reader.by_epoch.items():
        kpis.by_epoch.setdefault(epoch, {}).update(values)
    kpis.end_step.update(reader.end_step)
    kpis.final.update(reader.final)
    kpis.status = reader.status or kpis.status
    if reader.max_epoch is not None:
        kpis.max_epoch = reader.max_epoch
    if reader.last_epoch is not None:
        kpis.last_epoch = max(reader.last_epoch, kpis.last_epoch or 0)
    return kpis


@dataclass
class Manifest:
    results_uri: str
    entries: list[ManifestEntry]
    kpis_by_epoch: dict[int, dict[str, float]]
    final_kpis: dict[str, float]
    status: str | None
    metric: str | None
    direction: Direction | None
    status_files: list[str]
    files_seen: int
    built_at: str
    evaluation: dict[str, float] = field(default_factory=dict)

    def of_kind(self, *kinds: Kind, complete_only: bool = True) -> list[ManifestEntry]:
        return [e for e in self.entries if e.kind in kinds and (e.complete or not complete_only)]

    def best_kpis(self) -> dict[str, float]:
        """The KPIs of the epoch whose monitoring metric is best (empty without metric or KPIs)."""
        if not self.metric:
            return {}
        scored = [(metric_in(k, self.metric), e) for e, k in self.kpis_by_epoch.items()]
        scored = [(v, e) for v, e in scored if v is not None]
        if not scored:
            return {}
        sign = -1.0 if self.direction == "minimize" else 1.0
        _, epoch = max(scored, key=lambda ve: (sign * ve[0], ve[1]))
        return dict(self.kpis_by_epoch[epoch])

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["kpis_by_epoch"] = {str(k): v for k, v in sorted(self.kpis_by_epoch.items())}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        values = dict(data)
        values["entries"] = [ManifestEntry(**e) for e in data.get("entries", [])]
        values["kpis_by_epoch"] = {int(k): v for k, v in data.get("kpis_by_epoch", {}).items()}
        return cls(**values)

    def save(self, store: ArtifactStore) -> str:
        uri = store.join(self.results_uri, MANIFEST_FILE)
        store.write_json_atomic(uri, self.to_dict())
        return uri


def _incomplete_reason(parsed: ParsedName, size: int, is_dir: bool, name: str = "") -> str | None:
    if (attempt := FAILED_ATTEMPT.search(name)) and parsed.incomplete_suffix:
        return (f"left by failed attempt {attempt.group(1)} of this run; moved aside so the retry could write "
                "a fresh file (TAO refuses to overwrite an existing ONNX)")
    if parsed.incomplete_suffix:
        return f"incomplete: '{parsed.incomplete_suffix}' suffix (still being written or abandoned)"
    if size == 0:
        return "incomplete: empty folder" if is_dir else "incomplete: size 0"
    return None


def _checkpoint_dirs(listing: list[StoreEntry]) -> dict[str, StoreEntry]:
    """Directories that are checkpoints themselves (`epoch_5/`, `step_1000/`): outermost ones only."""
    found: dict[str, StoreEntry] = {}
    for item in listing:
        nested = any(item.path.startswith(p + "/") for p in found)
        if item.is_dir and not nested and parse_name(item.path, is_dir=True).kind:
            found[item.path] = item
    return found


def _mid_epoch(entry: ManifestEntry, end_step: dict[int, int]) -> bool:
    """A step-based checkpoint written before its epoch ended: it holds no validated state."""
    end = end_step.get(entry.epoch) if entry.epoch is not None else None
    return entry.step is not None and end is not None and entry.step < end


def build_manifest(
    store: ArtifactStore,
    results_uri: str,
    *,
    metric: str | None = None,
    direction: Direction | None = None,
    save: bool = False,
    with_kpis: bool = True,
) -> Manifest:
    """List `results_uri` once, read its status.json, and describe every checkpoint and product.

    `metric`/`direction` annotate each entry's `metric_value` (what `best` means for evaluate/export).
    `save=True` also writes `manifest.json` into the folder (skipped when the folder has no files);
    `with_kpis=False` skips reading status.json (resume needs no KPIs)."""
    listing = store.list_files(results_uri)
    ckpt_dirs = _checkpoint_dirs(listing)
    files = [i for i in listing if not i.is_dir]

    kpis = EpochKpis()
    status_files = sorted(
        (i for i in files if with_kpis and posixpath.basename(i.path) == STATUS_FILE),
        key=lambda i: (i.path.count("/"), i.path),
    )
    for item in status_files:
        try:
            parse_status(store.read_text(item.uri), kpis)
        except FileNotFoundError:
            continue
    evaluation: dict[str, float] = {}
    evaluation_files = sorted(
        (i for i in files if with_kpis and posixpath.basename(i.path) in EVALUATION_FILES),
        key=lambda i: (i.path.count("/"), i.path), reverse=True,
    )
    for item in evaluation_files:  # the shallowest file last: it wins
        try:
            evaluation.update(evaluation_kpis(posixpath.basename(item.path), store.read_text(item.uri)))
        except FileNotFoundError:
            continue

    entries: list[ManifestEntry] = []
    dir_members: dict[str, list[StoreEntry]] = {p: [] for p in ckpt_dirs}
    for item in files:
        owner = next((p for p in ckpt_dirs if item.path.startswith(p + "/")), None)
        if owner is not None:
            dir_members[owner].append(item)
            continue
        parsed = parse_name(item.path, is_link=item.is_link)
        if parsed.kind is None:
            continue
        problem = _incomplete_reason(parsed, item.size, False, posixpath.basename(item.path))
        entries.append(
            ManifestEntry(
                uri=item.uri, path=item.path, kind=parsed.kind, epoch=parsed.epoch, step=parsed.step,
                size=item.size, version=item.version, mtime=item.mtime, is_link=item.is_link,
                complete=problem is None, problem=problem,
            )
        )
    for path, item in ckpt_dirs.items():
        members = dir_members[path]
        parsed = parse_name(path, is_dir=True)
        size = sum(m.size for m in members)
        problem = _incomplete_reason(parsed, size, True)
        if problem is None:
            bad = [m for m in members if m.size == 0 or parse_name(m.path).incomplete_suffix]
            if bad:
                problem = f"incomplete: {posixpath.basename(bad[0].path)} is empty or partial"
        mtimes = [m.mtime for m in members if m.mtime is not None]
        entries.append(
            ManifestEntry(
                uri=item.uri, path=path, kind="checkpoint", epoch=parsed.epoch, step=parsed.step, size=size,
                version=max((m.version or "" for m in members), default=None) or None,
                mtime=max(mtimes) if mtimes else None, is_dir=True, is_link=item.is_link,
                complete=problem is None, problem=problem,
            )
        )

    for entry in entries:
        if entry.epoch is not None and entry.kind in ("checkpoint", "best", "latest"):
            if _mid_epoch(entry, kpis.end_step):
                continue
            entry.kpis = dict(kpis.by_epoch.get(entry.epoch, {}))
            if metric:
                entry.metric_value = metric_in(entry.kpis, metric)
    entries.sort(key=lambda e: (e.path.count("/"), e.path))

    manifest = Manifest(
        results_uri=results_uri,
        entries=entries,
        kpis_by_epoch=kpis.by_epoch,
        final_kpis=kpis.final,
        status=kpis.status,
        metric=metric,
        direction=direction,
        status_files=[i.uri for i in status_files],
        files_seen=len(files),
        built_at=datetime.now(UTC).isoformat(timespec="seconds"),
        evaluation=evaluation,
    )
    if save and files:
        manifest.save(store)
    return manifest


def load_manifest(store: ArtifactStore, results_uri: str) -> Manifest | None:
    """The stored `manifest.json` of a results folder, or None (use build_manifest to rebuild it)."""
    try:
        return Manifest.from_dict(store.read_json(store.join(results_uri, MANIFEST_FILE)))
    except FileNotFoundError:
        return None
