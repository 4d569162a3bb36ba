"""How TAO really reads a spec, as data: rules the generated schemas carry (each cited in NVIDIA's source)."""

from __future__ import annotations

from typing import Any

# ------------------------------------------------------------------------ how TAO really reads a spec
# TAO Core's dataclasses say less than TAO's code does. These rules, each checked in NVIDIA's source (cited),
# make the schemas accept what TAO accepts. Sources: tao_pytorch_backend / tao_deploy are NVIDIA's GitHub
# repositories (release 6.25.10 / 6.25.11); NVPanoptix3D is not in them, its code is read from the
# nvidia-tao-pytorch 7.3.0 wheel on PyPI.

# TAO Core metadata that OmegaConf's merge ignores and TAO's code does not check: valid_min/valid_max and
# math_cond (minimum/maximum/exclusive*) and TAO's regex patterns. A value outside them is a warning (NVIDIA's
# own specs break them: centerpose gen_trt_engine max_batch_size 4 / opt_batch_size 2 against valid_min 8 / 4,
# nvidia_tao_core/config/centerpose/deploy.py:36-53 vs tao_deploy:nvidia_tao_deploy/cv/centerpose/specs/
# gen_trt_engine.yaml). The validator reads this list from each schema (`x-tao-advisory-keywords`).
ADVISORY_KEYWORDS = ["exclusiveMaximum", "exclusiveMinimum", "maximum", "minimum", "pattern"]

# Options TAO compares after `.lower()`: any case of a valid option is accepted (`x-tao-ignore-case`).
_TRT_DATA_TYPE = "tao_deploy:nvidia_tao_deploy/cv/common/initialize_experiments.py:54"
_QUANT_MODE = ("tao_pytorch_backend:nvidia_tao_pytorch/core/quantization/backends/modelopt/modelopt.py:105, "
               "torchao/torchao.py:209")
_QUANT_ALGORITHM = "tao_pytorch_backend:nvidia_tao_pytorch/core/quantization/backends/modelopt/utils.py:226"
_PANOPTIX = "nvidia-tao-pytorch 7.3.0 (PyPI):nvidia_tao_pytorch/cv/nvpanoptix3d/"
CASE_INSENSITIVE_OPTIONS: dict[str, dict[str, str]] = {
    "rtdetr": {
        "train.precision": "tao_pytorch_backend:nvidia_tao_pytorch/cv/rtdetr/scripts/train.py:93-97",
        # train.py lower-cases it to pick the Lightning strategy; pl_rtdetr_model.py:205 and distiller.py:328
        # compare "fsdp" as written, so FSDP in upper case would also need lower case there (DDP is fine).
        "train.distributed_strategy": "tao_pytorch_backend:nvidia_tao_pytorch/cv/rtdetr/scripts/train.py:107-111",
        "gen_trt_engine.tensorrt.data_type": _TRT_DATA_TYPE,
        "quantize.mode": _QUANT_MODE,
        "quantize.algorithm": _QUANT_ALGORITHM,
    },
    "centerpose": {"gen_trt_engine.tensorrt.data_type": _TRT_DATA_TYPE},
    "sparse4d": {
        "train.precision": "tao_pytorch_backend:nvidia_tao_pytorch/cv/sparse4d/scripts/train.py:42-46",
        "quantize.mode": _QUANT_MODE,
        "quantize.algorithm": _QUANT_ALGORITHM,
    },
    "nvpanoptix3d": {
        "train.optim.lr_scheduler": _PANOPTIX + "utils/helper.py:370,379 (NVIDIA's specs write WarmupPoly)",
        "train.optim.type": _PANOPTIX + "utils/helper.py:354",
        "train.precision": _PANOPTIX + "scripts/train.py:38",
        "train.distributed_strategy": _PANOPTIX + "scripts/train.py:46",
        # Not model.mode nor dataset.name: pl_model_2d.py:53,77 lower-case them, but model/model_2d.py:245 and
        # model/reconstruction/decoder.py:95 compare them as written.
    },
}

# Options TAO's code takes beyond TAO Core's valid_options.
EXTRA_OPTIONS: dict[str, dict[str, tuple[list[Any], str]]] = {
    "nvpanoptix3d": {"train.optim.type": (["SGD"], _PANOPTIX + "utils/helper.py:354-359 (sgd and adamw)")},
}

# Options of keys TAO's code never reads: a value outside TAO Core's list is a warning (`x-tao-unread`).
UNREAD_OPTIONS: dict[str, dict[str, str]] = {
    "nvpanoptix3d": {
        "inference.mode": _PANOPTIX + " reads model.mode, never inference.mode (no reference in cv/nvpanoptix3d)",
    },
}

# Keys TAO's code reads in more shapes than the dataclass annotation says. `key[]` means each item of a list.
# The strict merge lets both shapes through (a container is not checked as an item of a list of ints, nor as
# a new value of a Dict[str, str]); the schema then accepts exactly the shapes TAO's code reads.
EXTRA_SHAPES: dict[str, dict[str, tuple[dict[str, Any], str]]] = {
    "rtdetr": {
        "dataset.infer_data_sources.image_dir": (
            {"type": "array", "items": {"type": "string"}},
            "tao_pytorch_backend:nvidia_tao_pytorch/cv/rtdetr/dataloader/pl_od_data_module.py:107-109 "
            "(a string becomes a one-item list)",
        ),
        "dataset.augmentation.multi_scales[]": (
            {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2},
            "tao_pytorch_backend:nvidia_tao_pytorch/cv/rtdetr/model/pl_rtdetr_model.py:236-247 "
            "(an int is a square size, a [h, w] pair a rectangle)",
        ),
    },
}
