"""The TAO emulator: the TAO container's command-line contract without a GPU.

`python -m taoflow.emulator MODEL ACTION -e SPEC [KEY=VALUE ...]` loads the spec as TAO does, reads the
dataset for real, and writes what TAO writes where TAO writes it (docs/tao-contract.md): results in
`<results_dir>/<action>/` (TAO Deploy's `gen_trt_engine/`, `trt_evaluate/`, `trt_inference/`), status.json
lines as TAO's loggers write them, checkpoints named per model (`model_epoch_XXX.pth` for RT-DETR,
`model_epoch_XXX_step_YYYYY.pth` otherwise) with a latest link, ONNX files, engines, calibration caches,
quantized models, TensorRT evaluation files, Sparse4D's per-scene OVPKL pickles and anchors — with TAO's
error messages and exit codes. Every file a person reads says EMULATED.

Modules: cli (the entrypoint and monitor_status), train, actions (PyTorch evaluate/inference/export/quantize),
deploy (TensorRT), convert (Data Services), metrics (TAO's KPI dicts), models (per-model names, data and
failures), faults (`TAOFLOW_EMULATOR_FAULT`), artifacts, pickles, spec.
Environment: `TAOFLOW_EMULATOR_EPOCH_SECONDS` (seconds per training epoch, default 0.05) and
`TAOFLOW_EMULATOR_FAULT` (fault injection, see faults.py). Imports stay light (no Prefect, Optuna or s3fs)
so a process starts fast.
"""
