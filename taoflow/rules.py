"""Model rules: checks beyond the JSON schema, each one a TAO failure seen in practice.

Rules are functions registered per model with `@rule(model, actions=...)`. They get a RuleContext (the spec
as TAO holds it after its merge: converted values, resolved interpolations) and yield `Problem`s naming the
dotted key, the value and what is allowed; a Problem with severity WARNING is reported without failing.
Rules that need the run's inputs (an anchor file, a label map, camera intrinsics) do not fire on an unfilled
skeleton (a template whose dataset and parent-model keys are still placeholders) unless validation is
`complete`.

Small dataset files (COCO annotations, label maps) are read when reachable: local paths always, remote
URIs only when an S3 endpoint or credentials are configured; anything unreadable is skipped silently.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from taoflow.dotted import get_dotted
from taoflow.skill import Skill
from taoflow.validate import ABSENT, MISSING_VALUE, WARNING, Problem

_ABSENT = ABSENT
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz", ".zip")
PARENT_HANDOFFS = {"parent_model", "parent_model_folder", "parent_model_or_ptm"}


@dataclass(frozen=True)
class RuleContext:
    skill: Skill
    action: str
    spec: Mapping[str, Any]
    force: frozenset[str] = field(default_factory=frozenset)
    complete: bool = False
    read_data: bool = True

    @property
    def tao_action(self) -> str:
        return self.skill.action(self.action).tao_action

    def get(self, key: str, default: Any = _ABSENT) -> Any:
        return get_dotted(self.spec, key, default)

    def is_skeleton(self, exclude: str = "") -> bool:
        """True for an unfilled template: every dataset and parent-model key of the action is unset."""
        act = self.skill.action(self.action)
        keys = [ds.key for ds in act.data_sources] + [k for k, fn in act.handoffs.items() if fn in PARENT_HANDOFFS]
        keys = [k for k in keys if k != exclude]
        return all(is_unset(self.get(k)) for k in keys)

    def needs_inputs(self, key: str) -> bool:
        """Whether a rule that asks for a run input should fire (see the module docstring)."""
        return self.complete or not self.is_skeleton(exclude=key)


def is_unset(value: Any) -> bool:
    """Absent, null, empty or TAO's `???` placeholder (also inside lists and mappings)."""
    if value is _ABSENT or value is None or value == "" or value == MISSING_VALUE:
        return True
    if isinstance(value, list):
        return all(is_unset(v) for v in value)
    if isinstance(value, Mapping):
        return all(is_unset(v) for v in value.values())
    return False


RuleFunc = Callable[[RuleContext], Iterable[Problem]]


@dataclass(frozen=True)
class Rule:
    model: str
    func: RuleFunc
    actions: frozenset[str] | None  # TAO action names; None = every action

    def applies(self, ctx: RuleContext) -> bool:
        return self.actions is None or ctx.tao_action in self.actions or ctx.action in self.actions


RULES: dict[str, list[Rule]] = {}


def rule(model: str, actions: Iterable[str] | None = None) -> Callable[[RuleFunc], RuleFunc]:
    """Register a rule for `model`, limited to the given TAO (or skill) action names."""

    def register(func: RuleFunc) -> RuleFunc:
        RULES.setdefault(model, []).append(Rule(model, func, frozenset(actions) if actions else None))
        return func

    return register


def run_rules(ctx: RuleContext) -> list[Problem]:
    problems: list[Problem] = []
    for entry in RULES.get(ctx.skill.name, []):
        if entry.applies(ctx):
            problems += list(entry.func(ctx))
    return problems


# ------------------------------------------------------------------ reading small dataset files
def _remote_allowed() -> bool:
    """Remote reads only when S3 is configured (no credential probing or AWS round trips otherwise)."""
    if os.environ.get("TAOFLOW_VALIDATE_REMOTE", "1") == "0":
        return False
    names = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_PROFILE",
             "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
             "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
    return any(os.environ.get(n) for n in names)


@lru_cache(maxsize=128)
def _read_local_json(path: str, mtime: float, size: int) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


@lru_cache(maxsize=128)
def _read_remote_json(uri: str) -> Any:
    from taoflow.store import ArtifactStore

    scheme_root = uri.split("://", 1)[0] + "://" + uri.split("://", 1)[1].split("/", 1)[0]
    store = ArtifactStore(scheme_root)
    return json.loads(store.read_text(uri))


def read_json(uri: Any, ctx: RuleContext) -> Any:
    """The parsed JSON at a local path or remote URI, or None when it cannot be read."""
    if not ctx.read_data or not isinstance(uri, str) or is_unset(uri):
        return None
    try:
        if "://" in uri and not uri.startswith("file://"):
            if not uri.startswith(("s3://", "s3a://")) or not _remote_allowed():
                return None
            return _read_remote_json(uri)
        path = uri.removeprefix("file://")
        stat = os.stat(path)
        return _read_local_json(path, stat.st_mtime, stat.st_size)
    except Exception:
        return None


def coco_category_ids(data: Any) -> list[int] | None:
    """Category ids of a COCO annotation file: from `categories`, plus any used by `annotations`."""
    if not isinstance(data, Mapping):
        return None
    ids: set[int] = set()
    for entry in data.get("categories") or []:
        if isinstance(entry, Mapping) and isinstance(entry.get("id"), int):
            ids.add(entry["id"])
    for entry in data.get("annotations") or []:
        if isinstance(entry, Mapping) and isinstance(entry.get("category_id"), int):
            ids.add(entry["category_id"])
    return sorted(ids) if ids else None


# ------------------------------------------------------------------ RT-DETR
RTDETR_SOURCES = ("train_data_sources", "val_data_sources", "test_data_sources", "quant_calibration_data_sources")
RTDETR_EVAL_SOURCES = ("val_data_sources", "test_data_sources")
RTDETR_DEFAULT_NUM_CLASSES = 80


def _json_files(value: Any) -> Iterator[str]:
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, Mapping) and isinstance(item.get("json_file"), str):
            yield item["json_file"]


def _category_ids(ctx: RuleContext, sources: Iterable[str]) -> tuple[list[int], list[str]]:
    ids: set[int] = set()
    files: list[str] = []
    for name in sources:
        for uri in _json_files(ctx.get(f"dataset.{name}", None)):
            found = coco_category_ids(read_json(uri, ctx))
            if found:
                ids.update(found)
                files.append(uri)
    return sorted(ids), files


@rule("rtdetr", actions=["train", "distill", "evaluate", "quantize"])
def rtdetr_num_classes(ctx: RuleContext) -> Iterator[Problem]:
    """num_classes below max(category_id)+1 is a CUDA device-side assert an hour into training."""
    ids, files = _category_ids(ctx, RTDETR_SOURCES)
    if not ids:
        return
    num_classes = ctx.get("dataset.num_classes", RTDETR_DEFAULT_NUM_CLASSES)
    needed = max(ids) + 1
    if isinstance(num_classes, int) and not isinstance(num_classes, bool) and num_classes < needed:
        yield Problem(
            "dataset.num_classes", num_classes,
            f"must be >= max(category_id) + 1 = {needed}: {', '.join(files)} use category ids {_ids(ids)} "
            "(a smaller value fails with a CUDA device-side assert)",
        )
    eval_ids = ctx.get("dataset.eval_class_ids", None)
    if isinstance(eval_ids, list) and eval_ids:
        eval_known, _ = _category_ids(ctx, RTDETR_EVAL_SOURCES)
        known = eval_known or ids
        unknown = [i for i in eval_ids if i not in known]
        if unknown:
            yield Problem(
                "dataset.eval_class_ids", eval_ids,
                f"ids {unknown} are not category ids of the annotations; allowed: {_ids(known)}",
            )


def _ids(ids: list[int]) -> str:
    return "[" + ", ".join(map(str, ids)) + "]"


RTDETR_EXPORT_SIZE = 640


@rule("rtdetr", actions=["export"])
def rtdetr_export_shape(ctx: RuleContext) -> Iterator[Problem]:
    """Other shapes can fail ONNX tracing in hybrid_encoder's positional embedding."""
    if "export_shape" in ctx.force:
        return
    for key in ("export.input_height", "export.input_width"):
        value = ctx.get(key, RTDETR_EXPORT_SIZE)
        if value != RTDETR_EXPORT_SIZE and not is_unset(value):
            yield Problem(
                key, value,
                f"must be {RTDETR_EXPORT_SIZE}: RT-DETR export is validated at 640x640 and other shapes can fail "
                "ONNX tracing ('The size of tensor a (...) must match the size of tensor b (...)'); "
                "pass --force export_shape if the model was trained and checked at this shape",
            )


@rule("rtdetr", actions=["train", "distill", "evaluate", "inference", "export", "quantize"])
def rtdetr_feature_levels(ctx: RuleContext) -> Iterator[Problem]:
    """return_interm_indices and num_feature_levels describe the same encoder inputs."""
    indices = ctx.get("model.return_interm_indices", None)
    levels = ctx.get("model.num_feature_levels", None)
    if isinstance(indices, list) and isinstance(levels, int) and len(indices) != levels:
        yield Problem(
            "model.return_interm_indices", indices,
            f"must list model.num_feature_levels ({levels}) indices (default [1, 2, 3] with 3 levels); "
            "change both together",
        )


RTDETR_IOU_MODULES = ("srcs", "dsrcs")


@rule("rtdetr", actions=["distill"])
def rtdetr_distill_bindings(ctx: RuleContext) -> Iterator[Problem]:
    """The RT-DETR distiller asserts that IOU bindings capture srcs or dsrcs feature lists."""
    bindings = ctx.get("distill.bindings", None)
    if not isinstance(bindings, list):
        return
    for i, binding in enumerate(bindings):
        if not isinstance(binding, Mapping) or str(binding.get("criterion", "")).upper() != "IOU":
            continue
        for side in ("student_module_name", "teacher_module_name"):
            name = binding.get(side)
            if name not in RTDETR_IOU_MODULES:
                yield Problem(
                    f"distill.bindings[{i}].{side}", name,
                    f"must be one of {', '.join(RTDETR_IOU_MODULES)} for an IOU binding (the validated binding is "
                    "srcs → srcs; DINO-style names such as pred_logits are not captured feature lists)",
                )


# ------------------------------------------------------------------ NVPanoptix3D
# NVPanoptix3D's trainer: nvidia-tao-pytorch 7.3.0 (PyPI), nvidia_tao_pytorch/cv/nvpanoptix3d/scripts/train.py:38-51.
@rule("nvpanoptix3d", actions=["train"])
def nvpanoptix3d_precision(ctx: RuleContext) -> Iterator[Problem]:
    value = ctx.get("train.precision", "fp32")
    if not isinstance(value, str) or value.lower() != "fp32":
        yield Problem(
            "train.precision", value,
            "must be fp32: the training entrypoint raises 'ValueError: Only fp32 precision is supported' "
            "(the schema's fp16 is not usable)",
        )


@rule("nvpanoptix3d", actions=["train"])
def nvpanoptix3d_strategy(ctx: RuleContext) -> Iterator[Problem]:
    value = ctx.get("train.distributed_strategy", "ddp")
    if isinstance(value, str) and value.lower() != "ddp":
        yield Problem(
            "train.distributed_strategy", value,
            "is ignored: the NVPanoptix3D trainer only sets up ddp and runs anything else with Lightning's "
            "default strategy", WARNING,
        )


@rule("nvpanoptix3d", actions=["train", "evaluate", "inference"])
def nvpanoptix3d_downsample(ctx: RuleContext) -> Iterator[Problem]:
    name = ctx.get("dataset.name", "front3d")
    factor = ctx.get("dataset.downsample_factor", 1)
    expected = 2 if name == "matterport" else 1
    if isinstance(factor, int) and factor != expected:
        yield Problem(
            "dataset.downsample_factor", factor,
            f"must be {expected} for dataset.name {name!r} (2 for matterport, 1 for front3d and synthetic data)",
        )
    iso = ctx.get("dataset.iso_value", 1.0)
    if isinstance(iso, (int, float)) and not isinstance(iso, bool) and float(iso) != float(expected):
        # TAO Core derives both from the dataset format: matterport → 2 / 2.0, everything else → 1 / 1.0.
        yield Problem(
            "dataset.iso_value", iso,
            f"must be {float(expected)} for dataset.name {name!r} (TAO Core: 2.0 for matterport, 1.0 otherwise)",
        )


@rule("nvpanoptix3d", actions=["train", "evaluate", "inference"])
def nvpanoptix3d_contiguous_id(ctx: RuleContext) -> Iterator[Problem]:
    if ctx.get("dataset.contiguous_id", False) is True:
        return
    data = read_json(ctx.get("dataset.label_map", None), ctx)
    entries = data if isinstance(data, list) else data.get("categories") if isinstance(data, Mapping) else None
    if isinstance(entries, list) and any(isinstance(e, Mapping) and "trainId" in e for e in entries):
        yield Problem(
            "dataset.contiguous_id", ctx.get("dataset.contiguous_id", False),
            f"must be true: the label map {ctx.get('dataset.label_map')} carries trainId values "
            "(false synthesises placeholder categories without trainId and fails building the metadata)",
        )


# ------------------------------------------------------------------ ActionRecognition
AR_DIRECTORY_KEYS = (
    "dataset.train_dataset_dir",
    "dataset.val_dataset_dir",
    "evaluate.test_dataset_dir",
    "inference.inference_dataset_dir",
)


@rule("action_recognition")
def action_recognition_directories(ctx: RuleContext) -> Iterator[Problem]:
    for key in AR_DIRECTORY_KEYS:
        value = ctx.get(key, None)
        if isinstance(value, str) and value.lower().rstrip("/").endswith(ARCHIVE_SUFFIXES):
            yield Problem(
                key, value,
                "must be a directory, not an archive: TAO raises NotADirectoryError; extract it and give the "
                "extracted folder (e.g. .../train or .../test)",
            )


@rule("action_recognition", actions=["train", "evaluate", "inference"])
def action_recognition_label_map(ctx: RuleContext) -> Iterator[Problem]:
    """evaluate/inference rebuild the model from the label map before loading the checkpoint."""
    value = ctx.get("dataset.label_map", None)
    if (isinstance(value, Mapping) and value) or not ctx.needs_inputs("dataset.label_map"):
        return
    if value is not None and value is not _ABSENT and not isinstance(value, Mapping):
        return  # a wrong type is the schema's finding
    yield Problem(
        "dataset.label_map", value,
        f"required for {ctx.action}: the class-name → index mapping used in training, e.g. {{catch: 0, smile: 1}}",
    )


AR_PTM_KEYS = ("model.rgb_pretrained_model_path", "model.of_pretrained_model_path", "model.joint_pretrained_model_path")
AR_PTM_NORMALISATION = [0.5]


@rule("action_recognition", actions=["train", "evaluate", "inference", "export"])
def action_recognition_ptm_normalisation(ctx: RuleContext) -> Iterator[Problem]:
    """NVIDIA's PTMs see frames normalised with mean/std 0.5 (every NVIDIA fine-tuning spec,
    tao_tutorials:notebooks/tao_launcher_starter_kit/action_recognition_net/specs/train_rgb_3d_finetune.yaml);
    a spec fine-tuning one with other values (ImageNet's, TAO Core's default) trains on the wrong inputs."""
    ptm = next((k for k in AR_PTM_KEYS if not is_unset(ctx.get(k, None))), None)
    if ptm is None or ctx.get("model.model_type", "rgb") == "of":
        return
    for key in ("dataset.augmentation_config.rgb_input_mean", "dataset.augmentation_config.rgb_input_std"):
        value = ctx.get(key, None)
        if isinstance(value, list) and value and any(v != 0.5 for v in value):
            yield Problem(
                key, value,
                f"differs from NVIDIA's pretrained models ({ptm} is set): they were trained with mean/std "
                f"{AR_PTM_NORMALISATION}; keep it unless this PTM was trained with these values", WARNING,
            )


AR_CLASS_FOLDER_KEYS = ("dataset.train_dataset_dir", "dataset.val_dataset_dir", "evaluate.test_dataset_dir")


@rule("action_recognition", actions=["train", "evaluate"])
def action_recognition_label_map_classes(ctx: RuleContext) -> Iterator[Problem]:
    """Every label-map class needs its `<class>/` folder in a local dataset directory (checked when present)."""
    label_map = ctx.get("dataset.label_map", None)
    if not isinstance(label_map, Mapping) or not label_map or not ctx.read_data:
        return
    for key in AR_CLASS_FOLDER_KEYS:
        folder = ctx.get(key, None)
        if not isinstance(folder, str) or "://" in folder.removeprefix("file://") or is_unset(folder):
            continue
        root = folder.removeprefix("file://")
        if not os.path.isdir(root):
            continue  # extracted later by the launcher, or remote
        classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
        missing = [name for name in label_map if name not in classes]
        if missing:
            yield Problem(
                "dataset.label_map", dict(label_map),
                f"classes {missing} have no folder in {key} ({root}); its class folders are {classes}",
            )
            return


# ------------------------------------------------------------------ Sparse4D
SPARSE4D_ANCHOR = "model.head.instance_bank.anchor"


@rule("sparse4d", actions=["train", "evaluate", "inference", "export", "quantize"])
def sparse4d_anchor(ctx: RuleContext) -> Iterator[Problem]:
    value = ctx.get(SPARSE4D_ANCHOR)
    if value == MISSING_VALUE and not ctx.complete:
        return  # a placeholder the pipeline fills
    if not is_unset(value) or not ctx.needs_inputs(SPARSE4D_ANCHOR):
        return
    yield Problem(
        SPARSE4D_ANCHOR, value,
        f"required for {ctx.action}: the anchor_init.npy written by dataset_convert of the train dataset",
    )


# ------------------------------------------------------------------ CenterPose
CENTERPOSE_JOINTS = 8
CENTERPOSE_INTRINSICS = (
    "inference.focal_length_x",
    "inference.focal_length_y",
    "inference.principle_point_x",
    "inference.principle_point_y",
)


@rule("centerpose")
def centerpose_num_joints(ctx: RuleContext) -> Iterator[Problem]:
    value = ctx.get("dataset.num_joints", CENTERPOSE_JOINTS)
    if value != CENTERPOSE_JOINTS:
        yield Problem("dataset.num_joints", value, "must be 8: CenterPose regresses the 8 projected cuboid corners")


@rule("centerpose", actions=["inference"])
def centerpose_pnp_intrinsics(ctx: RuleContext) -> Iterator[Problem]:
    if ctx.get("inference.use_pnp", True) is not True:
        return
    if not ctx.needs_inputs("inference.focal_length_x"):
        return
    for key in CENTERPOSE_INTRINSICS:
        value = ctx.get(key, 0.0)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            yield Problem(
                key, value,
                "must be > 0 when inference.use_pnp is true: PnP needs the camera intrinsics focal_length_x/y "
                "and principle_point_x/y (or set inference.use_pnp: false)",
            )
