"""The TAO emulator: the TAO container's command-line contract without a GPU.

`python -m taoflow.emulator MODEL ACTION -e SPEC [KEY=VALUE ...]` loads the spec as TAO does, reads the
dataset for real, and writes what TAO writes (status.json lines, `model_epoch_XXX_step_YYYYY.pth`
checkpoints and a latest link, ONNX files, engines, calibration caches, Sparse4D annotation pickles and
anchors), with TAO's error messages and exit codes. Every file a person reads says EMULATED.
Environment: `TAOFLOW_EMULATOR_EPOCH_SECONDS` (seconds per training epoch, default 0.05) and
`TAOFLOW_EMULATOR_FAULT` (fault injection, see faults.py). Imports stay light (no Prefect, Optuna or s3fs)
so a process starts fast.
"""
