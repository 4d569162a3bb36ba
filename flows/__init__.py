"""Prefect flows: one pipeline per TAO model, the generic pipeline, the AutoML sweep, the action flow."""

MODEL_FLOWS = {
    "rtdetr": ("flows.rtdetr", "rtdetr_pipeline", "RTDETRParameters"),
    "centerpose": ("flows.centerpose", "centerpose_pipeline", "CenterPoseParameters"),
    "action_recognition": ("flows.action_recognition", "action_recognition_pipeline",
                           "ActionRecognitionParameters"),
    "sparse4d": ("flows.sparse4d", "sparse4d_pipeline", "Sparse4DParameters"),
    "nvpanoptix3d": ("flows.nvpanoptix3d", "nvpanoptix3d_pipeline", "NVPanoptix3DParameters"),
}


def model_flow(model: str):
    """(run, parameters class) of a model's pipeline: `run(params, **options)` calls the model's flow (whose
    parameters are top-level, see flows/parameters.py) with a parameters-class instance."""
    import importlib
    from functools import partial

    from flows.pipeline import run_with

    module_name, flow_name, params_name = MODEL_FLOWS[model]
    module = importlib.import_module(module_name)
    return partial(run_with, getattr(module, flow_name)), getattr(module, params_name)


def pipeline_flow_of(model: str):
    """The Prefect flow object of a model's pipeline (what deployments run)."""
    import importlib

    module_name, flow_name, _ = MODEL_FLOWS[model]
    return getattr(importlib.import_module(module_name), flow_name)
