"""Readers for the dataset formats of the five models, shared by the emulator and the preflight.

They read the data for real and fail the way TAO's loaders do — `FileNotFoundError`, `NotADirectoryError`,
`ValueError` with the path in the message — so the emulator's failures look like TAO's and the preflight can
turn the same exceptions into a UserError naming the dataset role. Every reader is a fast CPU pass over
metadata: names, headers and annotation files, never pixel data.
"""

from __future__ import annotations

import errno
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taoflow.datasets.images import IMAGE_SUFFIXES, list_images, read_image_size


def _missing(path: str | Path) -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))


def _not_dir(path: str | Path) -> NotADirectoryError:
    return NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))


def require_file(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_file():
        raise _missing(p)
    return p


def require_dir(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise _missing(p)
    if not p.is_dir():
        raise _not_dir(p)
    return p


def load_json(path: str | Path) -> Any:
    p = require_file(path)
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{p}: not valid JSON ({exc})") from None


# ---------------------------------------------------------------- COCO (RT-DETR)

@dataclass
class CocoInfo:
    json_file: str
    image_dir: str
    num_images: int
    num_annotations: int
    category_ids: list[int]

    @property
    def max_category_id(self) -> int:
        return max(self.category_ids) if self.category_ids else 0


def read_coco(json_file: str | Path, image_dir: str | Path) -> CocoInfo:
    """A COCO detection set: annotations.json well formed and every listed image present and readable."""
    data = load_json(json_file)
    if not isinstance(data, dict) or not all(k in data for k in ("images", "annotations", "categories")):
        raise ValueError(f"{json_file}: a COCO file needs the keys 'images', 'annotations' and 'categories'")
    folder = require_dir(image_dir)
    present = {p.name for p in folder.iterdir()}
    image_ids = set()
    for image in data["images"]:
        if not isinstance(image, dict) or "file_name" not in image or "id" not in image:
            raise ValueError(f"{json_file}: every image needs 'id' and 'file_name' (got {image!r})")
        name = image["file_name"]
        if Path(name).name not in present and not (folder / name).is_file():
            raise _missing(folder / name)
        image_ids.add(image["id"])
    if not data["images"]:
        raise ValueError(f"{json_file}: the dataset has no images")
    categories = []
    for cat in data["categories"]:
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int):
            raise TypeError(f"{json_file}: every category needs an integer 'id' (got {cat!r})")
        categories.append(cat["id"])
    for ann in data["annotations"]:
        if not isinstance(ann, dict) or ann.get("image_id") not in image_ids:
            raise ValueError(f"{json_file}: annotation {ann.get('id') if isinstance(ann, dict) else ann!r} "
                             "refers to an image id that is not in 'images'")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            raise ValueError(f"{json_file}: annotation {ann.get('id')} needs 'bbox' [x, y, w, h]")
        if not isinstance(ann.get("category_id"), int):
            raise TypeError(f"{json_file}: annotation {ann.get('id')} needs an integer 'category_id'")
        categories.append(ann["category_id"])
    first = folder / data["images"][0]["file_name"]
    read_image_size(first if first.is_file() else folder / Path(data["images"][0]["file_name"]).name)
    return CocoInfo(str(json_file), str(image_dir), len(data["images"]), len(data["annotations"]),
                    sorted(set(categories)))


def read_label_map(path: str | Path) -> list[str]:
    """RT-DETR inference classmap: one class name per line."""
    names = [line.strip() for line in require_file(path).read_text(encoding="utf-8").splitlines()]
    names = [n for n in names if n]
    if not names:
        raise ValueError(f"{path}: the label map is empty")
    return names


def read_image_folder(directory: str | Path) -> list[Path]:
    """A flat image folder (TAO's inference loaders only scan the top level)."""
    return list_images(require_dir(directory))


# ---------------------------------------------------------------- CenterPose tarballs

@dataclass
class CenterPoseInfo:
    path: str
    num_images: int
    num_objects: int
    categories: list[str] = field(default_factory=list)


def read_centerpose_tar(path: str | Path) -> CenterPoseInfo:
    """An Objectron-style tarball: `*.png` plus one `*.json` per image (8 projected keypoints per object,
    camera intrinsics). Read as given, members are never extracted."""
    require_file(path)
    try:
        return _read_centerpose_members(path)
    except tarfile.TarError as exc:
        raise ValueError(f"{path}: not a readable tar archive ({exc})") from None


def _read_centerpose_members(path: str | Path) -> CenterPoseInfo:
    with tarfile.open(path, "r:*") as archive:
        members = {m.name: m for m in archive.getmembers() if m.isfile()}
        images = sorted(n for n in members if n.lower().endswith(IMAGE_SUFFIXES))
        if not images:
            raise ValueError(f"{path}: the archive holds no .png/.jpg images")
        objects, categories = 0, set()
        for name in images:
            stem = name.rsplit(".", 1)[0]
            ann = members.get(stem + ".json")
            if ann is None:
                raise _missing(f"{path}:{stem}.json")
            try:
                data = json.loads(archive.extractfile(ann).read())
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{ann.name}: not valid JSON ({exc})") from None
            camera = data.get("camera_data") if isinstance(data, dict) else None
            if not isinstance(camera, dict) or "intrinsics" not in camera:
                raise ValueError(f"{path}:{ann.name}: missing 'camera_data' with 'intrinsics'")
            for obj in data.get("objects", []):
                points = obj.get("projected_cuboid")
                if not (isinstance(points, list) and len(points) in (8, 9)):
                    raise ValueError(f"{path}:{ann.name}: every object needs 8 projected keypoints "
                                     f"('projected_cuboid'), got {len(points) if isinstance(points, list) else points!r}")
                objects += 1
                if obj.get("class"):
                    categories.add(str(obj["class"]))
    return CenterPoseInfo(str(path), len(images), objects, sorted(categories))


# ---------------------------------------------------------------- action recognition clips

@dataclass
class ClipsInfo:
    root: str
    classes: list[str]
    clips: int
    min_frames: int


def _frames(clip: Path, stream: str) -> int:
    folder = clip / stream
    return len([p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]) if folder.is_dir() else 0


def read_clip_folder(root: str | Path, *, with_classes: bool = True, stream: str = "rgb") -> ClipsInfo:
    """`<class>/<clip_id>/rgb/000000.png…` (with_classes) or `<clip_id>/rgb/…`; a tarball is refused with
    NotADirectoryError as TAO's dataloader does."""
    base = require_dir(root)
    class_dirs = sorted(p for p in base.iterdir() if p.is_dir()) if with_classes else [base]
    clips, min_frames = 0, None
    for class_dir in class_dirs:
        for clip in sorted(p for p in class_dir.iterdir() if p.is_dir()):
            n = _frames(clip, stream)
            if n == 0:
                raise ValueError(f"{clip}: clip has no frames in '{stream}/'")
            clips += 1
            min_frames = n if min_frames is None else min(min_frames, n)
    if clips == 0:
        raise ValueError(f"{base}: no clips found (expected <class>/<clip_id>/{stream}/000000.png)"
                         if with_classes else f"{base}: no clips found (expected <clip_id>/{stream}/...)")
    return ClipsInfo(str(base), [p.name for p in class_dirs] if with_classes else [], clips, min_frames or 0)


# ---------------------------------------------------------------- Sparse4D AICity

@dataclass
class AICityInfo:
    root: str
    split: str
    scenes: list[str]
    videos: int
    objects: int


def read_aicity(root: str | Path, split: str) -> AICityInfo:
    """Raw AICity: `<root>/<split>/<scene>/videos/*.mp4`, `calibration.json`, `ground_truth.json`."""
    split_dir = require_dir(Path(root) / split)
    scenes, videos, objects = [], 0, 0
    for scene in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        found = sorted((scene / "videos").glob("*.mp4")) if (scene / "videos").is_dir() else []
        if not found:
            raise _missing(scene / "videos" / "*.mp4")
        calib = load_json(scene / "calibration.json")
        sensors = calib.get("sensors") if isinstance(calib, dict) else None
        if not isinstance(sensors, list) or not sensors:
            raise ValueError(f"{scene / 'calibration.json'}: needs a non-empty 'sensors' list")
        gt = load_json(scene / "ground_truth.json")
        if not isinstance(gt, dict):
            raise TypeError(f"{scene / 'ground_truth.json'}: expected an object keyed by frame id")
        objects += sum(len(v) for v in gt.values() if isinstance(v, list))
        scenes.append(scene.name)
        videos += len(found)
    if not scenes:
        raise ValueError(f"{split_dir}: no scenes found (expected <scene>/videos/*.mp4)")
    return AICityInfo(str(root), split, scenes, videos, objects)


# ---------------------------------------------------------------- NVPanoptix3D front3d / matterport

@dataclass
class PanopticInfo:
    json_path: str
    base_dir: str
    num_images: int
    scenes: list[str]


def read_colormap(path: str | Path) -> list[dict[str, Any]]:
    """The label map: a list of categories, each with `id`, `name` and `trainId`."""
    data = load_json(path)
    entries = data if isinstance(data, list) else data.get("categories") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a list of categories")
    for entry in entries:
        if not isinstance(entry, dict) or "trainId" not in entry:
            raise KeyError(f"'trainId' missing in label map entry {entry!r} of {path}")
    return entries


def read_frustum_mask(path: str | Path) -> tuple[int, ...]:
    import numpy as np

    require_file(path)
    with np.load(path) as data:
        if "mask" not in data.files:
            raise KeyError(f"'mask is not a file in the archive' ({path})")
        return tuple(data["mask"].shape)


def read_panoptic_split(json_path: str | Path, base_dir: str | Path) -> PanopticInfo:
    """`meta/<split>.json` listing images of scenes stored under `<base_dir>/data/<scene_id>/`."""
    data = load_json(json_path)
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list) or not images:
        raise ValueError(f"{json_path}: expected a non-empty 'images' list")
    base = require_dir(base_dir)
    scenes = set()
    for image in images:
        if not isinstance(image, dict) or "scene_id" not in image or "file_name" not in image:
            raise ValueError(f"{json_path}: every image needs 'scene_id' and 'file_name'")
        require_file(base / "data" / str(image["scene_id"]) / image["file_name"])
        scenes.add(str(image["scene_id"]))
    return PanopticInfo(str(json_path), str(base_dir), len(images), sorted(scenes))
