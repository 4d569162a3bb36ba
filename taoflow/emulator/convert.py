"""Emulated Sparse4D dataset_convert (TAO Data Services `annotations convert`, AICity → OVPKL).

What the converter writes (NVIDIA/tao_dataset_suite nvidia_tao_ds/annotations/conversion/aicity_to_ovpkl.py;
docs/tao-contract.md): into `results_dir` itself (Data Services appends no action folder), for every split in
`aicity.split` (comma-separated) one pickle per scene — per scene and camera group when camera grouping is on
— at `<results_dir>/<split>/<scene>[+<group>]_infos_<split>.pkl` (:237-244), `map_object_hash_to_object_id
.json` at `<results_dir>/` (:276-284, :607-608), and when the splits include `train` and `num_anchor > 0`
the anchors, k-means over the train boxes, at `<results_dir>/<anchor_init_config.output_file_name>`
(:112-120, :645-717; fewer anchors when there are fewer boxes, none when there is no box). No
`annotations.pkl`. Sparse4D reads `ann_file` as such a split folder. Real TAO first explodes the mp4 videos
into jpg frames (:71-74, :123-138); the emulator cannot decode video and skips that.

Group names come from NVIDIA's calibration loader (not public); the emulator names one group per scene
`bev-sensor-1`. A RuntimeError inside the converter is printed and the process exits 0 without TAO's
success line (nvidia_tao_ds/annotations/scripts/convert.py:36-53).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from taoflow.emulator import artifacts
from taoflow.emulator.context import ActionContext, is_set, log
from taoflow.emulator.spec import ConfigError

FPS = 30.0  # spatialai_data_utils.constants.FPS (not public): the frame rate of AICity's videos
X, Y, Z, W, L, H, SIN_YAW, COS_YAW = range(8)


def _frames(gt: dict[str, Any]) -> list[int]:
    return sorted(int(k) for k in gt if str(k).isdigit())


def _scene_infos(scene: str, sub_scene: str, gt: dict[str, Any], ids: dict[str, Any], group: str | None
                 ) -> list[dict[str, Any]]:
    infos = []
    for frame in _frames(gt):
        annotations = gt.get(str(frame)) or []
        boxes, names, global_ids = [], [], []
        for anno in annotations:
            name = anno.get("object name", str(anno.get("object id")))
            if name not in ids["objects"]:
                ids["max_object_id"] += 1
                ids["objects"][name] = ids["max_object_id"]
                ids["no_of_objects"] = len(ids["objects"])
            global_ids.append(ids["objects"][name])
            location = list(anno.get("3d location", [0.0, 0.0, 0.0]))
            scale = list(anno.get("3d bounding box scale", [1.0, 1.0, 1.0]))
            rotation = anno.get("3d bounding box rotation", [0.0, 0.0, 0.0])
            boxes.append([*location, *scale, -float(rotation[2])])
            names.append(anno.get("object type", ""))
        info = {"frame_idx": frame, "cams": {}, "scene_name": scene, "timestamp": frame / FPS,
                "token": f"{sub_scene}__{frame:09}", "gt_boxes": boxes, "gt_names": names,
                "instance_inds": list(range(len(boxes))), "asset_inds": global_ids, "emulated": True}
        if group is not None:
            info["scene_name"], info["group_name"] = sub_scene, group
        infos.append(info)
    return infos


def _anchors(boxes: list[list[float]], count: int, path: Path) -> tuple[int, int]:
    """Anchors like TAO's k-means (centres of `count` clusters, log mean size, cos(yaw)=1), without sklearn:
    evenly spaced boxes sorted by position stand in for the cluster centres."""
    import numpy as np

    n = min(count, len(boxes))
    data = np.array(boxes, dtype=np.float64)
    order = np.lexsort((data[:, Z], data[:, Y], data[:, X]))
    picks = data[order[np.linspace(0, len(data) - 1, n).round().astype(int)]]
    anchor = np.zeros((n, 11))
    anchor[:, [X, Y, Z]] = picks[:, [X, Y, Z]]
    anchor[:, [W, L, H]] = np.log(data[:, [W, L, H]].mean(axis=0))
    anchor[:, COS_YAW] = 1
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        np.save(fh, anchor)
    os.replace(tmp, path)
    return anchor.shape


def _mandatory(ctx: ActionContext, key: str) -> Any:
    value = ctx.spec.get(key)
    if not is_set(value):  # TAO Core leaves these `???`: OmegaConf raises when they are read
        raise ConfigError("MissingMandatoryValue", f"Missing mandatory value: {key}", key, "AICityConfig")
    return value


def dataset_convert(ctx: ActionContext) -> None:
    from taoflow.datasets import formats
    from taoflow.emulator.pickles import write_annotations

    ctx.fire_due_fault(None)
    root = ctx.spec.get("aicity.root")
    if not is_set(root) or not os.path.isdir(root):
        raise FileNotFoundError(f"Root path {root} does not exist")
    version = str(_mandatory(ctx, "aicity.version"))
    if version == "2024":
        raise NotImplementedError("2024 version is not implemented")
    if version != "2025":
        raise ValueError(f"Invalid version: {version}")
    splits = str(_mandatory(ctx, "aicity.split")).split(",")
    grouping = str(ctx.spec.get("aicity.camera_grouping_mode") or "")
    out = ctx.results_dir
    ids_path = out / "map_object_hash_to_object_id.json"
    ids = json.loads(ids_path.read_text()) if ids_path.exists() else {"no_of_objects": 0, "max_object_id": 0,
                                                                       "objects": {}}
    train_boxes: list[list[float]] = []
    for split in splits:
        info = formats.read_aicity(root, split)
        for scene in info.scenes:
            gt = formats.load_json(Path(root) / split / scene / "ground_truth.json")
            group = "bev-sensor-1" if grouping else None
            sub_scene = f"{scene}+{group}" if group else scene
            infos = _scene_infos(scene, sub_scene, gt, ids, group)
            path = out / split / f"{sub_scene}_infos_{split}.pkl"
            write_annotations(path, {"infos": infos, "metadata": {"version": version, "split_type": split}})
            artifacts.write_atomic(ids_path, json.dumps(ids).encode())
            log(f"{path} saved!")
            if split == "train":
                train_boxes += [box for i in infos for box in i["gt_boxes"]]
    count = int(ctx.spec.get("aicity.anchor_init_config.num_anchor", 900))
    if "train" in splits and count > 0:
        name = str(ctx.spec.get("aicity.anchor_init_config.output_file_name", "anchor_init.npy"))
        path = out / (name if name.endswith(".npy") else name + ".npy")  # np.save appends .npy
        if not train_boxes:
            log(f"No ground truth boxes available for anchor initialization after filtering. Ann file/dir: "
                f"{out / 'train'}. Skipping anchor generation.")
        else:
            shape = _anchors(train_boxes, count, path)
            log(f"===========Done! Save results to {path}.=========== {shape}  [EMULATED]")
    log(f"Converted splits {', '.join(splits)} of {root} into {out}  [EMULATED]")

