"""Small, valid datasets for each model, one folder per dataset role (`DIR/train`, `DIR/eval`, …).

They follow the brief's layouts exactly, so `--data train=DIR/train --data eval=DIR/eval` works as is,
and they are what the emulator, the tests and the demo run on. Everything is deterministic (same bytes on
every call) so run keys computed from dataset digests are stable.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

from taoflow.datasets.images import png_bytes, write_png
from taoflow.errors import UserError

RTDETR_CLASSES = ("car", "person", "bicycle", "sign")  # category ids 1..4 → dataset.num_classes 5
AR_CLASSES = ("catch", "smile")
PANOPTIC_CATEGORIES = [
    {"id": 0, "name": "void", "trainId": 0, "isthing": False, "color": [0, 0, 0]},
    {"id": 1, "name": "wall", "trainId": 1, "isthing": False, "color": [174, 199, 232]},
    {"id": 2, "name": "floor", "trainId": 2, "isthing": False, "color": [152, 223, 138]},
    {"id": 3, "name": "chair", "trainId": 3, "isthing": True, "color": [31, 119, 180]},
    {"id": 4, "name": "table", "trainId": 4, "isthing": True, "color": [255, 187, 120]},
]
FIXED_MTIME = 1_700_000_000  # tar member mtime, so archives are byte-identical across calls


def _coco(role_dir: Path, count: int, seed: int) -> None:
    images, annotations = [], []
    for i in range(count):
        name = f"{seed:02d}{i:04d}.png"
        write_png(role_dir / "images" / name, 32, 32, seed * 100 + i)
        images.append({"id": i + 1, "file_name": name, "width": 32, "height": 32})
        for j in range(2):
            cat = (i + j) % len(RTDETR_CLASSES) + 1
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": cat,
                                "bbox": [2.0 + j * 10, 3.0, 10.0, 12.0], "area": 120.0, "iscrowd": 0})
    categories = [{"id": k + 1, "name": n, "supercategory": "object"} for k, n in enumerate(RTDETR_CLASSES)]
    (role_dir / "annotations.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories}, indent=1))


def _rtdetr(root: Path) -> list[Path]:
    _coco(root / "train", 8, 1)
    _coco(root / "eval", 4, 2)
    for i in range(3):
        write_png(root / "inference" / "images" / f"infer_{i:03d}.png", 32, 32, 300 + i)
    (root / "inference" / "label_map.txt").write_text("\n".join(RTDETR_CLASSES) + "\n")
    return [root / r for r in ("train", "eval", "inference")]


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), FIXED_MTIME, 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mtime, info.mode = tarfile.DIRTYPE, FIXED_MTIME, 0o755
    tar.addfile(info)


def _write_tar(path: Path, files: list[tuple[str, bytes | None]]) -> None:
    """A gzip tarball with fixed metadata (None content = directory entry)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in files:
            _add_dir(tar, name) if data is None else _add(tar, name, data)
    path.write_bytes(gzip.compress(buffer.getvalue(), mtime=0))


def _centerpose_tar(path: Path, count: int, seed: int) -> None:
    files: list[tuple[str, bytes | None]] = []
    for i in range(count):
        stem = f"bike_batch-{seed}_{i:03d}"
        files.append((f"{stem}.png", png_bytes(32, 32, seed * 50 + i)))
        cuboid = [[4.0 + k * 2 + i, 5.0 + (k % 4) * 3] for k in range(9)]
        ann = {
            "camera_data": {"width": 32, "height": 32,
                            "intrinsics": {"fx": 30.0, "fy": 30.0, "cx": 16.0, "cy": 16.0}},
            "objects": [{"class": "bike", "name": "bike", "projected_cuboid": cuboid,
                         "location": [0.1 * i, 0.0, 1.5], "scale": [0.3, 0.5, 0.8],
                         "quaternion_xyzw": [0.0, 0.0, 0.0, 1.0]}],
        }
        files.append((f"{stem}.json", json.dumps(ann).encode()))
    _write_tar(path, files)


def _centerpose(root: Path) -> list[Path]:
    _centerpose_tar(root / "train" / "train.tar.gz", 6, 1)
    _centerpose_tar(root / "eval" / "val.tar.gz", 3, 2)
    _centerpose_tar(root / "eval" / "test.tar.gz", 3, 3)
    _centerpose_tar(root / "inference" / "val.tar.gz", 2, 4)
    _centerpose_tar(root / "calibration" / "train.tar.gz", 2, 5)
    return [root / r for r in ("train", "eval", "inference", "calibration")]


def _clip_files(prefix: str, clips: int, frames: int, seed: int) -> list[tuple[str, bytes | None]]:
    files: list[tuple[str, bytes | None]] = [(prefix.rstrip("/"), None)]
    for c, cls in enumerate(AR_CLASSES):
        files.append((f"{prefix}{cls}", None))
        for k in range(clips):
            clip = f"{prefix}{cls}/{cls}_clip_{k:02d}"
            files += [(clip, None)]
            for stream in ("rgb", "u", "v"):
                files.append((f"{clip}/{stream}", None))
                for f in range(frames):
                    files.append((f"{clip}/{stream}/{f:06d}.png", png_bytes(16, 16, seed + c * 10 + k + f)))
    return files


def _action_recognition(root: Path) -> list[Path]:
    _write_tar(root / "train" / "train.tar.gz", _clip_files("train/", 2, 4, 1))
    _write_tar(root / "eval" / "test.tar.gz", _clip_files("test/", 1, 4, 2))
    for k in range(2):
        for f in range(4):
            for stream in ("rgb", "u", "v"):
                write_png(root / "inference" / f"smile_clip_{k:02d}" / stream / f"{f:06d}.png", 16, 16, 90 + k + f)
    return [root / r for r in ("train", "eval", "inference")]


# Smallest plausible MP4: an `ftyp` box and an empty `mdat` box.
MP4_BYTES = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + b"\x00\x00\x00\x08mdat"


def _aicity_scene(scene_dir: Path, seed: int, cameras: int = 2, frames: int = 3) -> None:
    (scene_dir / "videos").mkdir(parents=True, exist_ok=True)
    sensors = []
    for c in range(cameras):
        (scene_dir / "videos" / f"Camera_{c:04d}.mp4").write_bytes(MP4_BYTES)
        sensors.append({"type": "camera", "id": f"Camera_{c:04d}",
                        "intrinsicMatrix": [[1000.0, 0.0, 960.0], [0.0, 1000.0, 540.0], [0.0, 0.0, 1.0]],
                        "extrinsicMatrix": [[1.0, 0.0, 0.0, float(c)], [0.0, 1.0, 0.0, 0.0],
                                            [0.0, 0.0, 1.0, 0.0]],
                        "attributes": [{"name": "frameWidth", "value": "1920"},
                                       {"name": "frameHeight", "value": "1080"}]})
    (scene_dir / "calibration.json").write_text(json.dumps({"calibrationType": "cartesian", "sensors": sensors}))
    gt: dict[str, list] = {}
    for f in range(frames):
        gt[str(f)] = [{"object type": "Person", "object id": k + seed,
                       "3d location": [1.0 + k + 0.1 * f, 2.0 + 0.05 * f * k, 0.0],
                       "3d bounding box scale": [0.6, 0.6, 1.8], "3d bounding box rotation": [0.0, 0.0, 0.1 * k]}
                      for k in range(3)]
    (scene_dir / "ground_truth.json").write_text(json.dumps(gt))


def _sparse4d(root: Path) -> list[Path]:
    _aicity_scene(root / "train" / "train" / "Warehouse_000", 0)
    _aicity_scene(root / "train" / "train" / "Warehouse_001", 10)
    _aicity_scene(root / "eval" / "val" / "Warehouse_002", 20)
    return [root / "train", root / "eval"]


def _panoptic_role(role_dir: Path, split: str, scenes: list[str], with_images: bool) -> None:
    import numpy as np

    meta = role_dir / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((16, 16, 16), dtype=bool)
    mask[4:12, 4:12, 2:14] = True
    np.savez_compressed(meta / "frustum_mask.npz", mask=mask)
    (meta / "colormap.json").write_text(json.dumps(PANOPTIC_CATEGORIES, indent=1))
    images = []
    for s, scene in enumerate(scenes):
        for v in range(2):
            name = f"rgb_{v:04d}.png"
            write_png(role_dir / "data" / scene / name, 32, 24, s * 10 + v)
            (role_dir / "data" / scene / f"segmap_{v:04d}.json").write_text(json.dumps({"emulated_sample": True}))
            images.append({"id": len(images), "scene_id": scene, "file_name": name,
                           "segm_file": f"segmap_{v:04d}.json"})
    (meta / f"{split}.json").write_text(json.dumps({"images": images, "categories": PANOPTIC_CATEGORIES}))
    if with_images:
        for i in range(2):
            write_png(role_dir / "images" / f"view_{i:03d}.png", 32, 24, 70 + i)


def _nvpanoptix3d(root: Path) -> list[Path]:
    _panoptic_role(root / "train", "train", ["scene_0000", "scene_0001"], False)
    _panoptic_role(root / "eval", "val", ["scene_0002"], False)
    _panoptic_role(root / "inference", "test", ["scene_0003"], True)
    return [root / r for r in ("train", "eval", "inference")]


WRITERS: dict[str, Callable[[Path], list[Path]]] = {
    "rtdetr": _rtdetr,
    "centerpose": _centerpose,
    "action_recognition": _action_recognition,
    "sparse4d": _sparse4d,
    "nvpanoptix3d": _nvpanoptix3d,
}


def write(model: str, directory: str | Path) -> list[Path]:
    """Write the sample dataset of `model` under `directory`; returns the role folders written."""
    writer = WRITERS.get(model)
    if writer is None:
        raise UserError(f"no sample data for model {model!r}; models: {', '.join(sorted(WRITERS))}")
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    return writer(root)
