"""The handoff resolver: one function for every name the skills' `handoffs` use.

Which file goes to the next step is where TAO users trip most, so every choice is explicit:

- `parent_model` — the file a child action reads from its parent's results:
  * from a train (or distill / quantize) parent: the complete checkpoint that is best by the model's
    monitoring metric and direction (`skill.yaml` `monitoring`, or `metric`/`direction` given by the
    caller), joining the KPI status.json recorded at the epoch the checkpoint was written. Ties go to the
    later epoch (then step), and an exact `model_epoch_XXX_step_YYYYY` name beats a `model_best` copy of
    the same epoch. A checkpoint whose epoch has no KPI is a candidate only when no checkpoint has one;
    then TAO's own `*best*` file wins if there is one, else the newest checkpoint.
  * `epoch=` / `step=`: exactly that checkpoint. `latest=True`: the `*_latest.*` link (what TAO calls
    latest), else the newest checkpoint. A latest link is never chosen unless asked for, or unless it is
    all there is (TAO writes it as a file until the first interval checkpoint exists).
  * names as TAO writes them: `model_epoch_XXX_step_YYYYY.pth`, RT-DETR's `model_epoch_XXX.pth`; a
    step-based checkpoint written mid-epoch has no KPI of its own (see taoflow/manifest.py).
  * from an export parent: its ONNX file; from a gen_trt_engine parent: its engine.
- `parent_model_folder` — the folder holding the chosen parent file.
- `resume_model` — the newest complete checkpoint (by epoch, then step) in the *current* run's own results,
  never the parent's; None when the run has not written one (a fresh start).
- `ptm` — the run's declared pretrained model URI; `ptm_if_no_resume_model` — the same, or None when a
  resume checkpoint exists (TAO must not load both); `parent_model_or_ptm` — the parent's model when the
  run has a parent, else the pretrained model.
- `create_onnx_file`, `create_onnx_file_2d`, `create_engine_file`, `create_cal_cache`, `output_dir` — paths
  inside the current run's results folder (TAO Core's names: model.onnx, model.engine, cal.bin; TAO never
  implemented `create_onnx_file_2d`, which writes model_2d.onnx here).
- `key` — a reference to the encryption key in a secret source (an environment variable, or a name a
  pluggable source such as a Prefect Secret block resolves). The value is never returned into a spec: the
  reference's `env` goes into `ActionRun.secret_overrides` and the launcher expands it at launch.

When nothing qualifies, `NoCandidate` (a UserError) lists every candidate seen and why it was rejected.
All I/O goes through the ArtifactStore, so nothing here depends on the storage backend.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import dataclass, field

from taoflow.errors import UserError
from taoflow.layout import results_dir_for
from taoflow.manifest import Direction, Kind, Manifest, ManifestEntry, build_manifest, parse_name
from taoflow.secrets import key
from taoflow.skill import Skill
from taoflow.store import ArtifactStore

ONNX_FILE = "model.onnx"
ONNX_FILE_2D = "model_2d.onnx"
ENGINE_FILE = "model.engine"
CAL_CACHE_FILE = "cal.bin"

# What a parent action hands to its child (by TAO action name); everything else hands a checkpoint.
_PRODUCT_OF_ACTION: dict[str, Kind] = {"export": "onnx", "gen_trt_engine": "engine"}
_PREFERRED_NAME: dict[str, str] = {"onnx": ONNX_FILE, "engine": ENGINE_FILE}


class NoCandidate(UserError):
    """Nothing in a results folder qualifies; `rejected` holds (path, reason) for every candidate seen."""

    def __init__(self, what: str, results_uri: str, rejected: list[tuple[str, str]], files_seen: int = 0):
        self.what = what
        self.results_uri = results_uri
        self.rejected = rejected
        problems = [f"{path}: {reason}" for path, reason in rejected] or [
            f"no checkpoint, ONNX, engine or calibration file among the {files_seen} file(s) there"
        ]
        super().__init__(f"no {what} qualifies in {results_uri}", problems)


@dataclass
class Choice:
    """The chosen entry, the manifest it came from, and why every other candidate lost."""

    entry: ManifestEntry
    manifest: Manifest
    rejected: list[tuple[str, str]] = field(default_factory=list)
    note: str | None = None

    @property
    def uri(self) -> str:
        return self.entry.uri


# ---------------------------------------------------------------------------------------------- helpers
def _step_key(e: ManifestEntry) -> tuple[int, int]:
    return (-1 if e.epoch is None else e.epoch, -1 if e.step is None else e.step)


def _newest_key(e: ManifestEntry) -> tuple:
    """Newest first by epoch, step; an exact checkpoint beats a best copy; shallower path; mtime; path."""
    return (*_step_key(e), e.kind == "checkpoint", -e.depth, e.mtime or 0.0, e.path)


def guess_direction(metric: str) -> Direction:
    """Losses and errors are minimised, everything else (mAP, accuracy, IoU, PQ) maximised."""
    lowered = metric.lower()
    return "minimize" if any(w in lowered for w in ("loss", "error", "err", "mse", "mae")) else "maximize"


def monitoring_for(
    skill: Skill | None, metric: str | None = None, direction: Direction | None = None
) -> tuple[str | None, Direction | None]:
    """The metric and direction that define "best": the caller's, else the skill's monitoring metric.
    A caller's metric without a direction takes the skill's direction for that metric when the skill names
    it (monitoring or AutoML), else a guess from the name."""
    if metric is None and skill is not None:
        return skill.monitoring.metric, direction or skill.monitoring.direction
    if metric is None:
        return None, direction
    if direction is None and skill is not None:
        for known in (skill.monitoring, skill.automl):
            if known.metric == metric:
                direction = known.direction
                break
    return metric, direction or guess_direction(metric)


def parent_product(
    results_uri: str, *, skill: Skill | None = None, parent_action: str | None = None
) -> Kind:
    """What the parent hands over: onnx (export), engine (gen_trt_engine) or a checkpoint. Without
    `parent_action`, the results folder's own name (`.../<action>`) says which action wrote it."""
    action = parent_action or posixpath.basename(results_uri.rstrip("/"))
    if skill is not None and action in skill.actions:
        action = skill.actions[action].tao_action if action not in _PRODUCT_OF_ACTION else action
    return _PRODUCT_OF_ACTION.get(action, "checkpoint")


def _describe(e: ManifestEntry) -> str:
    return e.label() + (" (folder)" if e.is_dir else "")


# ---------------------------------------------------------------------------------------------- choices
def choose_parent(
    store: ArtifactStore,
    results_uri: str,
    *,
    skill: Skill | None = None,
    parent_action: str | None = None,
    metric: str | None = None,
    direction: Direction | None = None,
    epoch: int | None = None,
    step: int | None = None,
    latest: bool = False,
    manifest: Manifest | None = None,
) -> Choice:
    """The parent file with every rejection explained (see the module docstring for the rules)."""
    metric, direction = monitoring_for(skill, metric, direction)
    product = parent_product(results_uri, skill=skill, parent_action=parent_action)
    if manifest is None:
        manifest = build_manifest(store, results_uri, metric=metric, direction=direction)
    if product in ("onnx", "engine"):
        return _choose_product(manifest, product)
    return _choose_checkpoint(manifest, metric, direction, epoch=epoch, step=step, latest=latest)


def _screen(
    manifest: Manifest, wanted: tuple[Kind, ...], what: str
) -> tuple[list[ManifestEntry], list[tuple[str, str]]]:
    """Complete entries of the wanted kinds, and the reasons every other entry is out."""
    ok, rejected = [], []
    for e in manifest.entries:
        if e.kind not in wanted:
            rejected.append((e.path, f"{e.kind} file, not a {what}"))
        elif not e.complete:
            rejected.append((e.path, e.problem or "incomplete"))
        else:
            ok.append(e)
    return ok, rejected


def _choose_product(manifest: Manifest, product: Kind) -> Choice:
    what = {"onnx": "ONNX file", "engine": "TensorRT engine"}[product]
    ok, rejected = _screen(manifest, (product,), what)
    if not ok:
        raise NoCandidate(what, manifest.results_uri, rejected, manifest.files_seen)
    preferred = _PREFERRED_NAME[product]
    ok.sort(key=lambda e: (e.name == preferred, -e.depth, e.mtime or 0.0, e.path), reverse=True)
    chosen = ok[0]
    rejected += [(e.path, f"another {what} ({chosen.path}) is preferred: TAO's name or newer") for e in ok[1:]]
    return Choice(chosen, manifest, rejected)


def _choose_checkpoint(
    manifest: Manifest,
    metric: str | None,
    direction: Direction | None,
    *,
    epoch: int | None,
    step: int | None,
    latest: bool,
) -> Choice:
    wanted: tuple[Kind, ...] = ("checkpoint", "best", "latest")
    ok, rejected = _screen(manifest, wanted, "checkpoint")

    if epoch is not None or step is not None:
        asked = " ".join(f"{k} {v}" for k, v in (("epoch", epoch), ("step", step)) if v is not None)
        exact = []
        for e in ok:
            if e.kind == "latest":
                rejected.append((e.path, f"a latest link, not the exact checkpoint of {asked}"))
            elif (epoch is None or e.epoch == epoch) and (step is None or e.step == step):
                exact.append(e)
            else:
                rejected.append((e.path, f"{_describe(e)}: not the requested {asked}"))
        if not exact:
            raise NoCandidate(f"checkpoint for {asked}", manifest.results_uri, rejected, manifest.files_seen)
        exact.sort(key=_newest_key, reverse=True)
        rejected += [(e.path, f"same {asked}; {exact[0].path} preferred") for e in exact[1:]]
        return Choice(exact[0], manifest, rejected)

    links = [e for e in ok if e.kind == "latest"]
    exact = [e for e in ok if e.kind != "latest"]
    if latest:
        if links:
            links.sort(key=lambda e: (-e.depth, e.mtime or 0.0, e.path), reverse=True)
            rejected += [(e.path, "not the latest link") for e in exact]
            rejected += [(e.path, f"another latest link ({links[0].path}) preferred") for e in links[1:]]
            return Choice(links[0], manifest, rejected, note="latest link, as asked")
        if not exact:
            raise NoCandidate("latest checkpoint", manifest.results_uri, rejected, manifest.files_seen)
        exact.sort(key=_newest_key, reverse=True)
        rejected += [(e.path, f"older than {exact[0].path}") for e in exact[1:]]
        return Choice(exact[0], manifest, rejected, note="no latest link; the newest checkpoint")

    if not exact and links:
        # Lightning writes `<model>_model_latest.pth` as a file of its own at every epoch end until the
        # first interval checkpoint exists (step-based intervals longer than the run): the only model there.
        links.sort(key=lambda e: (-e.depth, e.mtime or 0.0, e.path), reverse=True)
        rejected += [(e.path, f"another latest file ({links[0].path}) preferred") for e in links[1:]]
        return Choice(links[0], manifest, rejected,
                      note="no exact checkpoint was written (interval longer than the run); TAO's latest file")
    rejected += [(e.path, "a latest link: used only when latest is asked for") for e in links]
    if not exact:
        raise NoCandidate("checkpoint", manifest.results_uri, rejected, manifest.files_seen)

    scored = [e for e in exact if e.metric_value is not None] if metric else []
    if scored:
        sign = -1.0 if direction == "minimize" else 1.0
        scored.sort(key=lambda e: (sign * e.metric_value, *_newest_key(e)), reverse=True)
        chosen = scored[0]
        better = "higher" if sign > 0 else "lower"
        for e in scored[1:]:
            if e.metric_value == chosen.metric_value:
                why = f"{metric} {e.metric_value:g} ties with {chosen.path}; the later/exact one wins"
            else:
                why = (f"{metric} {e.metric_value:g} at epoch {e.epoch}; {chosen.path} has {better} "
                       f"{chosen.metric_value:g} ({direction})")
            rejected.append((e.path, why))
        for e in exact:
            if e.metric_value is None:
                where = f"epoch {e.epoch}" if e.epoch is not None else "its name (no epoch)"
                reason = (f"no {metric} KPI of its own in status.json for {where} (none logged, or only "
                          "the previous value repeated); other checkpoints have one")
                rejected.append((e.path, reason))
        return Choice(chosen, manifest, rejected, note=f"best {metric} ({direction})")

    if metric:
        note = f"no checkpoint has a {metric} KPI in status.json, so "
    else:
        note = "no monitoring metric given, so "
    bests = [e for e in exact if e.kind == "best"]
    pool = bests or exact
    pool.sort(key=_newest_key, reverse=True)
    chosen = pool[0]
    note += "TAO's best checkpoint" if bests else "the newest checkpoint"
    for e in exact:
        if e is not chosen:
            reason = "not TAO's best file" if bests and e.kind != "best" else f"older than {chosen.path}"
            rejected.append((e.path, f"{reason} ({note})"))
    return Choice(chosen, manifest, rejected, note=note)


def choose_resume(store: ArtifactStore, results_uri: str, *, manifest: Manifest | None = None) -> Choice | None:
    """The resume choice for the current run's results, or None when nothing there can be resumed."""
    if manifest is None:
        manifest = build_manifest(store, results_uri, with_kpis=False)
    ok, rejected = _screen(manifest, ("checkpoint", "best", "latest"), "checkpoint")
    # Exact names first; the latest link only when there are none; a best copy last (it may be older).
    for kind in ("checkpoint", "latest", "best"):
        pool = [e for e in ok if e.kind == kind]
        if pool:
            break
    else:
        return None
    pool.sort(key=_newest_key, reverse=True)
    chosen = pool[0]
    why = {"checkpoint": f"older than {chosen.path}",
           "latest": "a latest link: exact checkpoint names come first",
           "best": "a best copy: resume continues from the newest state, not the best"}
    rejected += [(e.path, why[e.kind]) for e in ok if e is not chosen]
    return Choice(chosen, manifest, rejected, note="newest complete checkpoint")


# ---------------------------------------------------------------------------------------------- handoffs
def parent_model(
    store: ArtifactStore,
    parent_results_uri: str,
    *,
    skill: Skill | None = None,
    parent_action: str | None = None,
    metric: str | None = None,
    direction: Direction | None = None,
    epoch: int | None = None,
    step: int | None = None,
    latest: bool = False,
) -> str:
    """URI of the parent's model: best checkpoint by the monitoring metric (train/distill/quantize parent),
    the exact `epoch`/`step` when named, the latest link only when `latest`; the ONNX of an export parent,
    the engine of a gen_trt_engine parent. Raises NoCandidate with every rejection when nothing qualifies."""
    return choose_parent(
        store, parent_results_uri, skill=skill, parent_action=parent_action, metric=metric,
        direction=direction, epoch=epoch, step=step, latest=latest,
    ).uri


def parent_model_folder(store: ArtifactStore, parent_results_uri: str, **options) -> str:
    """The folder that holds the file `parent_model` chooses (same options)."""
    return posixpath.dirname(parent_model(store, parent_results_uri, **options).rstrip("/"))


def resume_model(store: ArtifactStore, results_uri: str) -> str | None:
    """The newest complete checkpoint in the current run's own results (by epoch, then step), or None.

    Only `results_uri` — the run being (re)started — is looked at, never its parent, so a retry continues
    its own training instead of restarting from the parent's weights."""
    choice = choose_resume(store, results_uri)
    return choice.uri if choice else None


def num_epochs_to_progress(resume_uri: str) -> int | None:
    """The smallest `train.num_epochs` that makes a resumed run write a new epoch checkpoint.

    TAO's epoch numbers in names are 0-based, and resuming with num_epochs only one beyond the checkpoint
    can restore it and stop without a new checkpoint (NVPanoptix3D notes: from model_epoch_000 it needs
    num_epochs 3 to produce model_epoch_001). None when the name carries no epoch."""
    epoch = parse_name(resume_uri).epoch
    return None if epoch is None else epoch + 3


def ptm(ptm_uri: str | None) -> str | None:
    """The pretrained model the run declared (None when it declared none)."""
    return ptm_uri or None


def ptm_if_no_resume_model(store: ArtifactStore, results_uri: str, ptm_uri: str | None) -> str | None:
    """The pretrained model, unless the run resumes from its own checkpoint (TAO must not load both)."""
    return None if resume_model(store, results_uri) else ptm(ptm_uri)


def parent_model_or_ptm(
    store: ArtifactStore, parent_results_uri: str | None, ptm_uri: str | None, **options
) -> str | None:
    """The parent's model when the run has a parent (its absence of a model is an error, not a silent
    fallback), else the pretrained model."""
    if parent_results_uri:
        return parent_model(store, parent_results_uri, **options)
    return ptm(ptm_uri)


def _inside(results_uri: str, name: str) -> str:
    return results_uri.rstrip("/") + "/" + name


def output_dir(results_uri: str, *, model: str | None = None, image: str | None = None,
               tao_action: str | None = None) -> str:
    """The spec's `results_dir`: the folder TAO must be handed so that it writes into `results_uri` (the run
    folder when TAO appends the step's own folder name, else `results_uri`; see taoflow/layout.py)."""
    if tao_action is None:
        return results_uri
    return results_dir_for(results_uri, image, tao_action)


def create_onnx_file(results_uri: str, *, model: str | None = None) -> str:
    """Where export writes the ONNX file (TAO Core's `model.onnx`); `model` keeps one signature for all."""
    return _inside(results_uri, ONNX_FILE)


def create_onnx_file_2d(results_uri: str, *, model: str | None = None) -> str:
    """Where NVPanoptix3D export writes its 2D ONNX file (TAO never implemented this handoff)."""
    return _inside(results_uri, ONNX_FILE_2D)


def create_engine_file(results_uri: str, *, model: str | None = None) -> str:
    """Where gen_trt_engine writes the engine (TAO Core's `model.engine`)."""
    return _inside(results_uri, ENGINE_FILE)


def create_cal_cache(results_uri: str, *, model: str | None = None) -> str:
    """Where gen_trt_engine writes the INT8 calibration cache (TAO Core's `cal.bin`)."""
    return _inside(results_uri, CAL_CACHE_FILE)


HANDOFFS: dict[str, Callable[..., object]] = {
    "parent_model": parent_model,
    "parent_model_folder": parent_model_folder,
    "resume_model": resume_model,
    "ptm": ptm,
    "ptm_if_no_resume_model": ptm_if_no_resume_model,
    "parent_model_or_ptm": parent_model_or_ptm,
    "create_onnx_file": create_onnx_file,
    "create_onnx_file_2d": create_onnx_file_2d,
    "create_engine_file": create_engine_file,
    "create_cal_cache": create_cal_cache,
    "output_dir": output_dir,
    "key": key,
}
