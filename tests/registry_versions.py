"""Model versions with real files in a store, for registry and `taoflow models` tests."""

from __future__ import annotations

from taoflow.registry import ModelVersion
from taoflow.store import ArtifactStore


def make_version(store: ArtifactStore, key: str, mAP: float, trt: float | None = None, *,
                 precision: str = "fp16", digest: str = "eval-1", model: str = "rtdetr") -> ModelVersion:
    """A version whose checkpoint, ONNX and engine exist in `store`; `key` (6+ chars) names its engine run.

    KPIs use TAO's names: PyTorch evaluate `test_mAP`, TensorRT evaluate (TAO Deploy results.json) `AP`."""
    train = store.results_uri(model, key + "-t", "train")
    export = store.results_uri(model, key + "-x", "export")
    engine_dir = store.results_uri(model, key, "gen_trt_engine")
    files = {"checkpoint": store.join(train, "model_epoch_009.pth"), "onnx": store.join(export, "model.onnx"),
             "engine": store.join(engine_dir, "model.engine")}
    for kind, uri in files.items():
        store.write_bytes_atomic(uri, f"{kind} of {key}".encode())
    return ModelVersion(
        model=model, run_keys={"train": key + "-t", "export": key + "-x", "gen_trt_engine": key},
        checkpoint=files["checkpoint"], onnx=files["onnx"], engine=files["engine"], precision=precision,
        images={"train": "nvcr.io/nvidia/tao/tao-toolkit:6.26.3-pyt"},
        kpis_pytorch={"test_mAP": mAP, "test_mAP50": min(mAP * 1.4, 0.99)},
        kpis_tensorrt={"AP": mAP if trt is None else trt}, eval_digest=digest,
        data_digests={"train": "d-train", "eval": digest}, engine_bytes=len(f"engine of {key}"),
    )
