"""Dataset preflight: fast CPU checks of one dataset role before anything is sent to a GPU.

A local dataset is read with the same readers the emulator uses (annotations parsed, images' headers read,
tarball members listed). A remote dataset (s3://…) is checked with one recursive listing for the files the
layout requires; its contents are read by the action itself.
"""

from __future__ import annotations

import fnmatch
import tarfile
from collections.abc import Callable
from pathlib import Path

from taoflow.datasets import formats
from taoflow.errors import UserError

# Files each (model, role) must hold, as (relative path or glob, what it is) — used for remote datasets and
# for the "what is expected" part of every error message.
REQUIRED: dict[str, dict[str, list[str]]] = {
    "rtdetr": {
        "train": ["annotations.json", "images/"],
        "eval": ["annotations.json", "images/"],
        "inference": ["label_map.txt", "images/"],
        "calibration": ["images/"],
    },
    "centerpose": {
        "train": ["train.tar.gz"],
        "eval": ["val.tar.gz", "test.tar.gz"],
        "inference": ["val.tar.gz"],
        "calibration": ["train.tar.gz"],
    },
    "action_recognition": {
        "train": ["train/ or train.tar.gz"],
        "eval": ["test/ or test.tar.gz"],
        "inference": ["<clip_id>/rgb/*.png"],
    },
    "sparse4d": {
        "train": ["train/<scene>/videos/*.mp4", "train/<scene>/calibration.json", "train/<scene>/ground_truth.json"],
        "eval": ["val/<scene>/videos/*.mp4", "val/<scene>/calibration.json", "val/<scene>/ground_truth.json"],
        "inference": ["test/<scene>/… or val/<scene>/…"],
    },
    "nvpanoptix3d": {
        "train": ["meta/frustum_mask.npz", "meta/colormap.json", "meta/train.json", "data/<scene_id>/"],
        "eval": ["meta/frustum_mask.npz", "meta/colormap.json", "meta/val.json", "data/<scene_id>/"],
        "inference": ["meta/frustum_mask.npz", "meta/colormap.json", "meta/test.json or meta/val.json",
                      "images/"],
    },
}


def _rtdetr(root: Path, role: str) -> str:
    if role in ("train", "eval"):
        info = formats.read_coco(root / "annotations.json", root / "images")
        return f"{info.num_images} images, {info.num_annotations} boxes, category ids {info.category_ids}"
    images = formats.read_image_folder(root / "images")
    if not images:
        raise ValueError(f"{root / 'images'}: no .jpg/.png images at the top level")
    if role == "inference":
        formats.read_label_map(root / "label_map.txt")
    return f"{len(images)} images"


def _centerpose(root: Path, role: str) -> str:
    names = {"train": ["train.tar.gz"], "eval": ["val.tar.gz", "test.tar.gz"], "inference": ["val.tar.gz"],
             "calibration": ["train.tar.gz"]}[role]
    infos = [formats.read_centerpose_tar(root / n) for n in names]
    return ", ".join(f"{Path(i.path).name}: {i.num_images} images" for i in infos)


def _tar_has_dir(archive: Path, top: str) -> bool:
    with tarfile.open(archive, "r:*") as tar:
        return any(m.name.rstrip("/") == top or m.name.startswith(top + "/") for m in tar.getmembers())


def _action_recognition(root: Path, role: str) -> str:
    if role == "inference":
        info = formats.read_clip_folder(root, with_classes=False)
        return f"{info.clips} clips"
    top = "train" if role == "train" else "test"
    if (root / top).exists():
        info = formats.read_clip_folder(root / top)
        return f"{info.clips} clips in classes {info.classes}"
    archive = formats.require_file(root / f"{top}.tar.gz")
    try:
        ok = _tar_has_dir(archive, top)
    except tarfile.TarError as exc:
        raise ValueError(f"{archive}: not a readable tar archive ({exc})") from None
    if not ok:
        raise ValueError(f"{archive}: the archive must hold a top-level '{top}/' folder")
    return f"{archive.name} (extracted at launch)"


def _sparse4d(root: Path, role: str) -> str:
    if role == "inference":
        split = "test" if (root / "test").is_dir() else "val"
    else:
        split = {"train": "train", "eval": "val", "calibration": "train"}[role]
    info = formats.read_aicity(root, split)
    return f"split {split}: {len(info.scenes)} scenes, {info.videos} videos"


def _nvpanoptix3d(root: Path, role: str) -> str:
    meta = root / "meta"
    formats.read_frustum_mask(meta / "frustum_mask.npz")
    formats.read_colormap(meta / "colormap.json")
    split = {"train": "train", "eval": "val", "inference": "test"}.get(role, "val")
    json_path = meta / f"{split}.json"
    if role == "inference" and not json_path.exists():
        json_path = meta / "val.json"
    info = formats.read_panoptic_split(json_path, root)
    if role == "inference":
        images = formats.read_image_folder(root / "images")
        if not images:
            raise ValueError(f"{root / 'images'}: no .jpg/.png images at the top level (the folder must be flat)")
    return f"{info.num_images} images in {len(info.scenes)} scenes"


CHECKS: dict[str, Callable[[Path, str], str]] = {
    "rtdetr": _rtdetr,
    "centerpose": _centerpose,
    "action_recognition": _action_recognition,
    "sparse4d": _sparse4d,
    "nvpanoptix3d": _nvpanoptix3d,
}


def _local_path(uri: str) -> Path | None:
    if uri.startswith("file://"):
        return Path(uri[len("file://"):])
    if "://" in uri:
        return None
    return Path(uri)


def preflight_dataset(model: str, role: str, uri: str) -> str:
    """Check one dataset role; returns a one-line summary, raises UserError naming role, path and problem."""
    if model not in CHECKS:
        raise UserError(f"no dataset checks for model {model!r}; models: {', '.join(sorted(CHECKS))}")
    expected = REQUIRED[model].get(role)
    if expected is None:
        raise UserError(f"{model} does not use a dataset role {role!r}; its roles: {', '.join(REQUIRED[model])}")
    layout = ", ".join(expected)
    local = _local_path(uri)
    if local is None:
        return _preflight_remote(model, role, uri, layout)
    if not local.is_dir():
        raise UserError(f"dataset '{role}' for {model}: {uri} is not a folder (expected a folder with {layout})")
    try:
        return CHECKS[model](local, role)
    except (OSError, ValueError, TypeError, KeyError, tarfile.TarError) as exc:
        raise UserError(f"dataset '{role}' for {model} at {uri} is not usable: {_describe(exc)} "
                        f"(expected layout: {layout})") from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError) and exc.filename:
        return f"missing {exc.filename}"
    if isinstance(exc, NotADirectoryError) and exc.filename:
        return f"{exc.filename} is not a folder"
    return str(exc).strip("'\"")


def _preflight_remote(model: str, role: str, uri: str, layout: str) -> str:
    """One recursive listing; every required entry (first alternative of each) must match something."""
    from taoflow.storage_errors import storage_problem
    from taoflow.store import ArtifactStore

    try:
        store = ArtifactStore(uri, retries=0)  # the store's S3 settings (endpoint, region, profile); no waiting
        names = [entry.path for entry in store.list_files(uri, include_dirs=False)]
    except Exception as exc:
        problem = storage_problem(exc, uri, f"dataset '{role}' of {model}")
        if problem is None:
            raise UserError(f"dataset '{role}' for {model}: cannot list {uri} ({exc})") from None
        raise UserError(problem) from None
    if not names:
        raise UserError(f"dataset '{role}' for {model}: {uri} is empty or missing (expected {layout})")
    missing = []
    for entry in REQUIRED[model][role]:
        options = [o.strip() for o in entry.split(" or ")]
        if not any(_matches(names, option) for option in options):
            missing.append(entry)
    if missing:
        raise UserError(f"dataset '{role}' for {model} at {uri} lacks: {', '.join(missing)} (expected {layout})")
    return f"{len(names)} files"


def _matches(names: list[str], pattern: str) -> bool:
    pattern = pattern.replace("<scene>", "*").replace("<scene_id>", "*").replace("<clip_id>", "*")
    pattern = pattern.replace("…", "*")
    if pattern.endswith("/"):
        return any(n.startswith(pattern) or fnmatch.fnmatch(n, pattern + "*") for n in names)
    return any(fnmatch.fnmatch(n, pattern) for n in names)
