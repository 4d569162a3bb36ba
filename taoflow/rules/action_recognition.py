"""ActionRecognition rules (see taoflow/rules/__init__.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

from taoflow.rules.core import _ABSENT, ARCHIVE_SUFFIXES, RuleContext, is_unset, rule
from taoflow.validate import WARNING, Problem

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
