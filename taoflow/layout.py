"""Where TAO writes a run's results, and which `results_dir` to hand it so they land in the store's folder.

TAO PyTorch and TAO Deploy append a folder to the spec's `results_dir` unless `<action>.results_dir` is set
(`update_results_dir`): PyTorch the action's own name (`train/`, `export/`, `distill/` …), Deploy its task
name (`gen_trt_engine/`, `trt_evaluate/`, `trt_inference/`). Data Services writes into `results_dir` itself.
Sources: NVIDIA/tao_pytorch_backend nvidia_tao_pytorch/core/utilities.py:57-78; NVIDIA/tao_deploy
nvidia_tao_deploy/cv/common/utils.py:24-49; NVIDIA/tao_dataset_suite nvidia_tao_ds/core/decorators.py:42-57.

The store keeps each step at `<root>/runs/<model>/<run_key>/<step>/`. When TAO's folder name is the step's
folder name, taoflow hands TAO the run folder (`<root>/runs/<model>/<run_key>`) and TAO's own sub-folder *is*
the step's folder; otherwise (Data Services, a step named unlike TAO's folder) it hands the step's folder and
readers also look one level down (older layouts put everything there too).
"""

from __future__ import annotations

import posixpath

# TAO Deploy's task → folder map (nvidia_tao_deploy/cv/common/utils.py:24-26).
DEPLOY_FOLDERS = {"gen_trt_engine": "gen_trt_engine", "evaluate": "trt_evaluate", "inference": "trt_inference"}


def tao_folder(image: str | None, tao_action: str) -> str | None:
    """The folder TAO appends to `results_dir` for this image role and TAO action (None: it appends none)."""
    if image == "data-services":
        return None
    if image == "deploy":
        return DEPLOY_FOLDERS.get(tao_action, tao_action)
    return tao_action


def results_dir_for(results_uri: str, image: str | None, tao_action: str) -> str:
    """The `results_dir` to hand TAO so that it writes exactly into `results_uri` (see the module docstring)."""
    folder = tao_folder(image, tao_action)
    trimmed = results_uri.rstrip("/")
    if folder and posixpath.basename(trimmed) == folder and "/" in trimmed:
        return posixpath.dirname(trimmed)
    return results_uri


def written_to(results_dir: str, image: str | None, tao_action: str, section_results_dir: str | None = None) -> str:
    """Where TAO writes, given the spec's `results_dir` (and `<action>.results_dir`, which wins)."""
    if section_results_dir:
        return section_results_dir
    folder = tao_folder(image, tao_action)
    return posixpath.join(results_dir, folder) if folder else results_dir


def candidate_folders(image: str | None, tao_action: str) -> list[str]:
    """Sub-folders of a step's results where TAO's files may sit in older layouts (TAO handed the step's
    folder itself): its own folder name, and the PyTorch name of a Deploy task."""
    names = [tao_folder(image, tao_action), tao_action]
    return [n for i, n in enumerate(names) if n and n not in names[:i]]
