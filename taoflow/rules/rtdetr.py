"""RT-DETR rules (see taoflow/rules/__init__.py)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from taoflow.rules.core import RuleContext, coco_category_ids, is_unset, read_json, rule
from taoflow.validate import Problem

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
