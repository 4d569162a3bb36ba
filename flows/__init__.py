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
    """(flow function, parameters class) of a model's pipeline."""
    import importlib

    module_name, flow_name, params_name = MODEL_FLOWS[model]
    module = importlib.import_module(module_name)
    return getattr(module, flow_name), getattr(module, params_name)
