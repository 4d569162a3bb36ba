"""Spec fixtures for the emulator and local-launcher tests: the specs TAO would get for each action of the five
models, pointing at `taoflow sample-data` folders. Built by hand from the skills' data-source tables (the
values `taoflow.spec.build_spec` fills in), so these tests exercise the emulator and the launcher on their own.
The last test checks the hand-built train specs against TAO Core's own config classes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

RTDETR_CLASSES = 5  # sample data category ids 1..4


def rtdetr_source(role_dir: Path) -> dict[str, str]:
    return {"image_dir": str(role_dir / "images"), "json_file": str(role_dir / "annotations.json")}


def results_dirs(model: str, action: str, results: Path) -> dict[str, Any]:
    """Spec values that make TAO write into `results`: the run folder as `results_dir` when `results` is named
    after TAO's own action folder (as taoflow's planner hands it, taoflow/layout.py), else also
    `<action>.results_dir`, which TAO's update_results_dir honours first."""
    from taoflow.layout import results_dir_for
    from taoflow.skill import load_skill

    step = load_skill(model).action(action)
    handed = results_dir_for(str(results), step.image.value, step.tao_action)
    if step.image.value == "data-services" or handed != str(results):
        return {"results_dir": handed}
    return {"results_dir": str(results.parent), step.tao_action: {"results_dir": str(results)}}


def make_spec(model: str, action: str, data: Path, results: Path, up: dict[str, Any]) -> dict[str, Any]:
    """The spec of `action` (a skill action name) that makes TAO write into `results`; `up` holds upstream
    files: checkpoint, onnx, engine, convert_train, convert_eval."""
    placement = results_dirs(model, action, results)
    spec: dict[str, Any] = {"results_dir": placement["results_dir"]}
    train_cfg = {"num_epochs": up.get("num_epochs", 4), "checkpoint_interval": up.get("interval", 1),
                 "validation_interval": 1, "seed": 7}
    if model == "rtdetr":
        ds: dict[str, Any] = {"num_classes": up.get("num_classes", RTDETR_CLASSES), "batch_size": 4}
        spec["dataset"] = ds
        if action == "train":
            ds["train_data_sources"] = [rtdetr_source(data / "train")]
            ds["val_data_sources"] = rtdetr_source(data / "eval")
            spec["train"] = {**train_cfg, "optim": {"lr": 2e-4}}
        elif action == "evaluate":
            ds["test_data_sources"] = rtdetr_source(data / "eval")
            spec["evaluate"] = {"checkpoint": up["checkpoint"]}
        elif action == "trt_evaluate":
            ds["test_data_sources"] = rtdetr_source(data / "eval")
            spec["evaluate"] = {"trt_engine": up["engine"]}
        elif action == "inference":
            ds["infer_data_sources"] = {"image_dir": [str(data / "inference" / "images")],
                                        "classmap": str(data / "inference" / "label_map.txt")}
            spec["inference"] = {"checkpoint": up["checkpoint"]}
        elif action == "export":
            spec["export"] = {"checkpoint": up["checkpoint"], "onnx_file": str(results / "rtdetr.onnx"),
                              "input_height": up.get("height", 640), "input_width": up.get("width", 640)}
        elif action == "quantize":
            ds["train_data_sources"] = [rtdetr_source(data / "train")]
            ds["val_data_sources"] = rtdetr_source(data / "eval")
            ds["quant_calibration_data_sources"] = rtdetr_source(data / "train")
            spec["quantize"] = {"model_path": up["checkpoint"], "backend": "modelopt.pytorch",
                                "layers": [{"module_name": "*", "weights": {"dtype": "float8_e4m3fn"},
                                            "activations": {"dtype": "float8_e4m3fn"}}]}
        elif action == "gen_trt_engine":
            spec["gen_trt_engine"] = _engine(up, results, [str(data / "train" / "images")])
    elif model == "centerpose":
        ds = {"category": "bike", "batch_size": 2}
        spec["dataset"] = ds
        if action == "train":
            ds.update(train_data=str(data / "train" / "train.tar.gz"), val_data=str(data / "eval" / "val.tar.gz"))
            spec["train"] = train_cfg
        elif action in ("evaluate", "trt_evaluate"):
            ds["test_data"] = str(data / "eval" / "test.tar.gz")
            spec["evaluate"] = {"trt_engine": up["engine"]} if action == "trt_evaluate" else \
                {"checkpoint": up["checkpoint"]}
        elif action == "inference":
            ds["inference_data"] = str(data / "inference" / "val.tar.gz")
            spec["inference"] = {"checkpoint": up["checkpoint"]}
        elif action == "export":
            spec["export"] = {"checkpoint": up["checkpoint"], "onnx_file": str(results / "centerpose.onnx")}
        elif action == "gen_trt_engine":
            # TAO Deploy calibrates from image folders only (initialize_experiments.py:79-88): fp16 here
            spec["gen_trt_engine"] = _engine(up, results, None, data_type="FP16")
    elif model == "action_recognition":
        label_map = {"catch": 0, "smile": 1}
        spec["dataset"] = {"label_map": label_map, "batch_size": 2}
        spec["model"] = {"model_type": "rgb"}
        if action == "train":
            spec["dataset"].update(train_dataset_dir=str(data / "train" / "train"),
                                   val_dataset_dir=str(data / "eval" / "test"))
            spec["train"] = train_cfg
        elif action == "evaluate":
            spec["evaluate"] = {"checkpoint": up["checkpoint"], "test_dataset_dir": str(data / "eval" / "test")}
        elif action == "inference":
            spec["inference"] = {"checkpoint": up["checkpoint"], "inference_dataset_dir": str(data / "inference")}
        elif action == "export":
            spec["export"] = {"checkpoint": up["checkpoint"], "onnx_file": str(results / "action_recognition.onnx")}
    elif model == "sparse4d":
        if action == "dataset_convert":
            return {"results_dir": str(results),  # Data Services writes here, no action folder
                    "aicity": {"root": str(up["root"]), "split": up["split"], "version": "2025",
                               "camera_grouping_mode": up.get("grouping", "")}}
        spec["dataset"] = {
            "data_root": str(data / "train"), "batch_size": 1,
            "train_dataset": {"ann_file": str(up["convert_train"] / "train")},
            "val_dataset": {"ann_file": str(up["convert_eval"] / "val")},
            "test_dataset": {"ann_file": str(up["convert_eval"] / "val")},
        }
        spec["model"] = {"head": {"instance_bank": {"anchor": str(up["convert_train"] / "anchor_init.npy")}}}
        if action == "train":
            spec["train"] = train_cfg
        elif action == "evaluate":
            spec["dataset"]["data_root"] = str(data / "eval")
            spec["evaluate"] = {"checkpoint": up["checkpoint"]}
        elif action == "export":
            spec["export"] = {"checkpoint": up["checkpoint"], "onnx_file": str(results / "sparse4d.onnx")}
        elif action == "quantize":
            spec["quantize"] = {"model_path": up["checkpoint"]}
    elif model == "nvpanoptix3d":
        role = {"train": "train", "evaluate": "eval", "inference": "inference", "export": "train"}[action]
        meta = data / role / "meta"
        spec["dataset"] = {"frustum_mask_path": str(meta / "frustum_mask.npz"),
                           "label_map": str(meta / "colormap.json"), "contiguous_id": True, "enable_3d": True}
        if action == "train":
            spec["dataset"]["train"] = {"json_path": str(meta / "train.json"), "base_dir": str(data / "train")}
            spec["dataset"]["val"] = {"json_path": str(data / "eval" / "meta" / "val.json"),
                                      "base_dir": str(data / "eval")}
            spec["train"] = {**train_cfg, "precision": up.get("precision", "fp32")}
        elif action == "evaluate":
            spec["dataset"]["val"] = {"json_path": str(meta / "val.json"), "base_dir": str(data / "eval")}
            spec["evaluate"] = {"checkpoint": up["checkpoint"]}
        elif action == "inference":
            spec["inference"] = {"checkpoint": up["checkpoint"],
                                 "images_dir": str(up.get("images_dir", data / "inference" / "images"))}
        elif action == "export":
            spec["export"] = {"checkpoint": up["checkpoint"], "onnx_file_2d": str(results / "nvpanoptix3d_2d.onnx")}
    else:
        raise ValueError(model)
    for section, values in placement.items():
        if isinstance(values, dict):
            spec.setdefault(section, {}).update(values)
    return spec


def _engine(up: dict[str, Any], results: Path, cal: list[str] | None, data_type: str = "INT8") -> dict[str, Any]:
    engine: dict[str, Any] = {"onnx_file": up["onnx"], "trt_engine": str(results / "model.engine"),
                              "tensorrt": {"data_type": data_type}}
    if cal is not None:
        engine["tensorrt"]["calibration"] = {"cal_image_dir": cal, "cal_cache_file": str(results / "cal.bin"),
                                             "cal_batch_size": 1, "cal_batches": 2}
    return engine


@pytest.mark.parametrize("model", ["rtdetr", "centerpose", "action_recognition", "nvpanoptix3d"])
def test_hand_built_train_specs_merge_into_tao_core_config(model, tmp_path):
    """The fixtures above must be specs TAO itself accepts: merged strictly into TAO Core's ExperimentConfig."""
    from importlib import import_module

    from omegaconf import OmegaConf

    spec = make_spec(model, "train", tmp_path, tmp_path / "results", {})
    config = import_module(f"nvidia_tao_core.config.{model}.default_config").ExperimentConfig
    merged = OmegaConf.merge(OmegaConf.structured(config), spec)
    assert merged.train.num_epochs == 4
