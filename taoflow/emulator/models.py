"""Per-model knowledge of the emulator: where each action reads its data, how TAO names the model and its
checkpoints, and the model's own failures.

Each model class reads the same spec keys TAO's entrypoint reads, opens the data with the shared readers
(taoflow.datasets.formats) and raises the exceptions TAO raises — a tarball where a directory is expected,
fp16 on NVPanoptix3D, a category id ≥ num_classes on RT-DETR, an export at a shape the model was not built
for. Counts it returns (samples) set the step numbers of checkpoints, as the dataloader length does in TAO.
Names (docs/tao-contract.md): the `name` passed to TAO's monitor_status per image, the checkpoint file name
(RT-DETR's ModelCheckpoint uses `model_{epoch:03d}`, TAOLightningModule `model_{epoch:03d}_{step:05d}`, with
`_` for `=`), the latest link `<checkpoint_filename>_latest.pth`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from taoflow.datasets import formats
from taoflow.emulator.spec import Spec


class EmulatedFailure(Exception):
    """A failure whose log lines are printed verbatim (CUDA asserts print before the exception)."""

    def __init__(self, lines: list[str], exc: BaseException, frames: list[str] | None = None):
        self.lines = lines  # printed before the traceback (CUDA asserts)
        self.frames = frames or []  # innermost traceback frames
        self.exc = exc
        super().__init__(str(exc))


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


class ModelEmulator:
    """Defaults for a TAO PyTorch network; subclasses override what their entrypoints do differently."""

    name = ""
    latest_link = ""
    onnx_key = "export.onnx_file"
    display_name = ""  # monitor_status(name=…) of the PyTorch scripts
    deploy_name: str | None = None  # monitor_status(name=…) of the TAO Deploy scripts (None: no TensorRT evaluate)
    step_checkpoints = True  # honours train.checkpoint_interval_unit: step (TAOLightningModule)
    onnx_exists_message = "Default onnx file {} already exists"

    def __init__(self, spec: Spec, results_dir: Path):
        self.spec = spec
        self.results_dir = results_dir

    # ---- sizes
    def batch_size(self) -> int:
        return max(int(self.spec.get("dataset.batch_size", 4)), 1)

    def steps_per_epoch(self, samples: int) -> int:
        return max(math.ceil(samples / self.batch_size()), 1)

    # ---- data per action (each returns a sample count and raises TAO's errors)
    def train_data(self) -> int:
        raise NotImplementedError

    def eval_data(self) -> int:
        raise NotImplementedError

    def inference_data(self) -> int:
        raise NotImplementedError

    def quantize_data(self) -> int:
        return self.train_data()

    def calibration_data(self) -> int:
        return 0

    # ---- model-specific checks
    def check_train(self) -> None:
        """Failures at model construction / trainer setup (before the first epoch)."""

    def first_step_failure(self) -> EmulatedFailure | None:
        """A failure the first training step hits (CUDA asserts)."""
        return None

    def check_export(self, checkpoint: dict[str, Any]) -> None:
        """Failures while tracing the model to ONNX."""

    def trained_with(self) -> dict[str, Any]:
        """What a checkpoint records about how it was built (checked again at export)."""
        return {}

    def has_validation(self) -> bool:
        """Whether training validates (writes "Eval metrics generated." lines)."""
        return True

    def checkpoint_name(self, epoch: int, step: int) -> str:
        return f"model_epoch_{epoch:03d}_step_{step:05d}.pth"

    def default_onnx(self, checkpoint: str) -> str:
        """`export.onnx_file` null: the checkpoint's path with `.onnx` (rtdetr/scripts/export.py:126-131)."""
        return str(Path(checkpoint).with_suffix(".onnx"))


class RTDETR(ModelEmulator):
    name = "rtdetr"
    latest_link = "rtdetr_model_latest.pth"
    display_name = "RT-DETR"
    deploy_name = "rtdetr"
    step_checkpoints = False  # pl_rtdetr_model.py:106-113: every_n_epochs only

    def checkpoint_name(self, epoch: int, step: int) -> str:
        return f"model_epoch_{epoch:03d}.pth"

    def has_validation(self) -> bool:
        return self.spec.has("dataset.val_data_sources")

    def _sources(self, key: str) -> list[formats.CocoInfo]:
        infos = []
        for source in _as_list(self.spec.get(key)):
            if not isinstance(source, dict) or "image_dir" not in source or "json_file" not in source:
                raise KeyError(f"{key} needs image_dir and json_file entries, got {source!r}")
            for image_dir in _as_list(source["image_dir"]):
                infos.append(formats.read_coco(source["json_file"], image_dir))
        if not infos:
            raise ValueError(f"{key} is empty: no dataset to read")
        return infos

    def train_data(self) -> int:
        self._train = self._sources("dataset.train_data_sources")
        self._val = self._sources("dataset.val_data_sources") if self.spec.has("dataset.val_data_sources") else []
        return sum(i.num_images for i in self._train)

    def first_step_failure(self) -> EmulatedFailure | None:
        num_classes = int(self.spec.get("dataset.num_classes", 80))
        worst = max(i.max_category_id for i in self._train + self._val)
        if worst < num_classes:
            return None
        lines = [
            ("/opt/pytorch/pytorch/aten/src/ATen/native/cuda/IndexKernel.cu:92: operator(): block: [0,0,0], "
            "thread: [0,0,0] Assertion `-sizes[i] <= index && index < sizes[i] && \"index out of bounds\"` "
            "failed."),
            f"(category_id {worst} >= dataset.num_classes {num_classes})",
        ]
        return EmulatedFailure(lines, RuntimeError(
            "CUDA error: device-side assert triggered\nCUDA kernel errors might be asynchronously reported at "
            "some other API call, so the stacktrace below might be incorrect.\nFor debugging consider passing "
            "CUDA_LAUNCH_BLOCKING=1\nCompile with `TORCH_USE_CUDA_DSA` to enable device-side assertions."))

    def eval_data(self) -> int:
        return sum(i.num_images for i in self._sources("dataset.test_data_sources"))

    def inference_data(self) -> int:
        sources = self.spec.get("dataset.infer_data_sources")
        if not isinstance(sources, dict):
            raise KeyError(f"dataset.infer_data_sources needs image_dir and classmap, got {sources!r}")
        formats.read_label_map(sources["classmap"])
        return sum(len(formats.read_image_folder(d)) for d in _as_list(sources.get("image_dir")))

    def quantize_data(self) -> int:
        count = self.train_data()
        if self.spec.has("dataset.quant_calibration_data_sources"):
            self._sources("dataset.quant_calibration_data_sources")
        return count

    def calibration_data(self) -> int:
        dirs = _as_list(self.spec.get("gen_trt_engine.tensorrt.calibration.cal_image_dir"))
        return sum(len(formats.read_image_folder(d)) for d in dirs)

    def trained_with(self) -> dict[str, Any]:
        return {"eval_spatial_size": list(self.spec.get("dataset.augmentation.eval_spatial_size", [640, 640]))}

    def check_export(self, checkpoint: dict[str, Any]) -> None:
        trained = checkpoint.get("trained_with", {}).get("eval_spatial_size", [640, 640])
        height = int(self.spec.get("export.input_height", 640))
        width = int(self.spec.get("export.input_width", 640))
        if [height, width] != list(trained):
            a = (height // 32) * (width // 32)
            b = (int(trained[0]) // 32) * (int(trained[1]) // 32)
            raise EmulatedFailure(
                [], frames=[('  File "/usr/local/lib/python3.12/dist-packages/nvidia_tao_pytorch/cv/rtdetr/model/'
                 'hybrid_encoder.py", line 306, in forward'),
                 "    memory = self.encoder[i](src_flatten, pos_embed=pos_embed)"],
                exc=RuntimeError(f"The size of tensor a ({a}) must match the size of tensor b ({b}) at "
                                 "non-singleton dimension 1"))


class CenterPose(ModelEmulator):
    name = "centerpose"
    latest_link = "centerpose_model_latest.pth"
    display_name = "Centerpose"
    deploy_name = "centerpose"

    def train_data(self) -> int:
        count = formats.read_centerpose_tar(self.spec.get("dataset.train_data")).num_images
        if self.spec.has("dataset.val_data"):
            formats.read_centerpose_tar(self.spec.get("dataset.val_data"))
        return count

    def check_train(self) -> None:
        joints = int(self.spec.get("dataset.num_joints", 8))
        if joints != 8:
            raise ValueError(f"num_joints mismatch: dataset.num_joints is {joints} but the annotations hold 8 "
                             "projected cuboid keypoints")

    def eval_data(self) -> int:
        return formats.read_centerpose_tar(self.spec.get("dataset.test_data")).num_images

    def inference_data(self) -> int:
        return formats.read_centerpose_tar(self.spec.get("dataset.inference_data")).num_images

    def calibration_data(self) -> int:
        paths = _as_list(self.spec.get("gen_trt_engine.tensorrt.calibration.cal_image_dir"))
        total = 0
        for path in paths:
            if Path(path).is_dir():
                total += len(formats.read_image_folder(path))
            else:
                total += formats.read_centerpose_tar(path).num_images
        return total


class ActionRecognition(ModelEmulator):
    name = "action_recognition"
    latest_link = "ar_model_latest.pth"
    display_name = "Action Recognition"
    onnx_exists_message = "Default output file {} already exists"

    def _streams(self) -> list[str]:
        kind = str(self.spec.get("model.model_type", "joint"))
        return {"rgb": ["rgb"], "of": ["u", "v"]}.get(kind, ["rgb", "u", "v"])

    def _label_map(self) -> dict[str, int]:
        label_map = self.spec.get("dataset.label_map")
        if not isinstance(label_map, dict) or not label_map:
            raise ValueError("dataset.label_map is required to build the ActionRecognitionModel "
                             "(e.g. {catch: 0, smile: 1})")
        return label_map

    def _clips(self, key: str, with_classes: bool = True) -> int:
        path = self.spec.get(key)
        if path is None:
            raise ValueError(f"{key} is not set")
        label_map = self._label_map()
        total = None
        for stream in self._streams():
            info = formats.read_clip_folder(path, with_classes=with_classes, stream=stream)
            unknown = [c for c in info.classes if c not in label_map]
            if unknown:
                raise KeyError(f"class folder {unknown[0]!r} of {path} is not in dataset.label_map")
            seq = int(self.spec.get("model.rgb_seq_length" if stream == "rgb" else "model.of_seq_length", 3))
            if info.min_frames < seq:
                raise ValueError(f"Sequence length mismatch: a clip under {path} has {info.min_frames} "
                                 f"{stream} frames, fewer than the configured sequence length {seq}")
            total = info.clips
        return total or 0

    def train_data(self) -> int:
        count = self._clips("dataset.train_dataset_dir")
        if self.spec.has("dataset.val_dataset_dir"):
            self._clips("dataset.val_dataset_dir")
        return count

    def eval_data(self) -> int:
        return self._clips("evaluate.test_dataset_dir")

    def inference_data(self) -> int:
        return self._clips("inference.inference_dataset_dir", with_classes=False)


class Sparse4D(ModelEmulator):
    name = "sparse4d"
    latest_link = "sparse4d_model_latest.pth"
    display_name = "Sparse4D"

    def _anchor(self) -> tuple[int, ...]:
        import numpy as np

        path = self.spec.get("model.head.instance_bank.anchor")
        if not path:
            raise ValueError("model.head.instance_bank.anchor is not set (the anchor dataset_convert writes at "
                             "aicity.anchor_init_config.output_file_name)")
        anchors = np.load(path)  # FileNotFoundError: [Errno 2] No such file or directory: '<path>' as in TAO
        return tuple(anchors.shape)

    def _ann(self, key: str) -> int:
        from taoflow.emulator.pickles import read_annotations

        return len(read_annotations(self.spec.get(key)).get("infos", []))

    def _data_root(self) -> None:
        formats.require_dir(self.spec.get("dataset.data_root"))

    def train_data(self) -> int:
        self._data_root()
        self._anchor()
        count = self._ann("dataset.train_dataset.ann_file")
        if self.spec.has("dataset.val_dataset.ann_file"):
            self._ann("dataset.val_dataset.ann_file")
        return count

    def eval_data(self) -> int:
        self._data_root()
        self._anchor()
        key = "dataset.test_dataset.ann_file" if self.spec.has("dataset.test_dataset.ann_file") else \
            "dataset.val_dataset.ann_file"
        return self._ann(key)

    def inference_data(self) -> int:
        return self.eval_data()

    def check_export(self, checkpoint: dict[str, Any]) -> None:
        self._anchor()


class NVPanoptix3D(ModelEmulator):
    name = "nvpanoptix3d"
    latest_link = "nvpanoptix3d_model_latest.pth"
    onnx_key = "export.onnx_file_2d"
    display_name = "NVPanoptix3D"  # its scripts are in no public release: the common pattern is assumed

    def batch_size(self) -> int:
        return max(int(self.spec.get("dataset.train.batch_size", 1)), 1)

    def check_train(self) -> None:
        precision = str(self.spec.get("train.precision", "fp32")).lower()
        if precision != "fp32":
            raise ValueError("Only fp32 precision is supported")

    def _meta(self) -> None:
        formats.read_frustum_mask(self.spec.get("dataset.frustum_mask_path"))
        formats.read_colormap(self.spec.get("dataset.label_map"))

    def _split(self, name: str) -> int:
        return formats.read_panoptic_split(self.spec.get(f"dataset.{name}.json_path"),
                                           self.spec.get(f"dataset.{name}.base_dir")).num_images

    def train_data(self) -> int:
        self._meta()
        count = self._split("train")
        if self.spec.has("dataset.val.json_path"):
            self._split("val")
        return count

    def eval_data(self) -> int:
        self._meta()
        return self._split("val" if self.spec.has("dataset.val.json_path") else "test")

    def inference_data(self) -> int:
        self._meta()
        images_dir = self.spec.get("inference.images_dir")
        count = len(formats.read_image_folder(images_dir))
        if count == 0:
            raise ValueError(f"Inference dataloader length is zero: no .jpg/.png images at the top level of "
                             f"inference.images_dir={images_dir} (subfolders are not scanned)")
        return count



MODELS: dict[str, type[ModelEmulator]] = {
    cls.name: cls for cls in (RTDETR, CenterPose, ActionRecognition, Sparse4D, NVPanoptix3D)
}


def empty_inference_error(images_dir: str) -> ValueError:
    return ValueError(f"Inference dataloader length is zero: no .jpg/.png images at the top level of "
                      f"{images_dir} (subfolders are not scanned)")
