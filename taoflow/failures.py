"""Why a TAO run failed: the skill's error patterns, then patterns every TAO network shares, then the exit
code. `infra` failures are retried (resuming from the newest checkpoint); `program` and `spec` ones are not."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# Exit codes meaning "the process was killed from outside" (SIGKILL/SIGTERM as negative Popen codes or as
# shell-style 128+N): preemption, eviction, OOM-killer, a node going away. Retryable when no pattern says
# otherwise.
KILLED_EXIT_CODES = {-9, -15, 137, 143}

# Generic patterns, tried after the skill's own error patterns: failures every TAO network shares.
GENERIC_PATTERNS: tuple[tuple[str, str, str, str], ...] = (
    ("cuda_oom", r"CUDA out of memory|torch\.OutOfMemoryError|OutOfMemoryError", "infra",
     "The GPU ran out of memory; reduce the batch size or use a GPU with more memory."),
    ("nccl", r"NCCL error|ncclInternalError|ncclSystemError|NCCL WARN", "infra",
     "A collective-communication failure between GPUs or nodes; retried from the newest checkpoint."),
    ("preempted", r"Received SIGTERM|Preempted|preempted|Evicted", "infra",
     "The process was preempted; retried from the newest checkpoint."),
    ("config_key", r"omegaconf\.errors\.ConfigKeyError|ConfigKeyError: Key '", "spec",
     "The spec has a key TAO does not know (see `full_key` in the log); remove or rename it."),
    ("config_type", r"omegaconf\.errors\.(ValidationError|ConfigTypeError)|ValidationError: ", "spec",
     "A spec value has the wrong type (see `full_key` in the log); fix the value."),
    ("missing_value", r"MissingMandatoryValue", "spec",
     "A mandatory spec value is missing (see `full_key` in the log)."),
    ("empty_dataloader", r"[Dd]ataloader length is zero|num_samples should be a positive integer value", "spec",
     ("The dataset yielded no samples: inference image folders are scanned only at the top level for "
     ".jpg/.png files; point the spec at a flat folder of images.")),
    ("onnx_exists", r"Default (?:onnx|output) file .* already exists", "spec",
     "TAO refuses to overwrite an existing ONNX file: set export.onnx_file to a new path or remove the old "
     "file (a retry of the same run moves its failed attempt's ONNX aside by itself)."),
    ("missing_path", r"(FileNotFoundError|NotADirectoryError|IsADirectoryError)", "spec",
     "A dataset or checkpoint path in the spec does not exist or has the wrong kind; check the path named in the log."),
)


@dataclass(frozen=True)
class FailureInfo:
    failure_class: str
    remedy: str
    pattern: str | None
    message: str


def classify_failure(log_text: str, exit_code: int | None, skill: Any = None) -> FailureInfo:
    """Why a run failed: the skill's error patterns first, then the shared ones, then the exit code.

    `infra` is retryable (resume from the newest checkpoint); `program` and `spec` are not."""
    message = last_error_line(log_text)
    if skill is not None:
        pattern = skill.classify(log_text)
        if pattern is not None:
            return FailureInfo(pattern.failure_class, pattern.remedy, pattern.name, message)
    for name, regex, klass, remedy in GENERIC_PATTERNS:
        if re.search(regex, log_text, re.MULTILINE):
            return FailureInfo(klass, remedy, name, message)
    if exit_code in KILLED_EXIT_CODES:
        return FailureInfo(
            "infra", "The process was killed (SIGKILL/SIGTERM: preemption, eviction or the OOM killer); "
            "retried from the newest checkpoint.", None, message or f"killed (exit code {exit_code})")
    return FailureInfo("program", "TAO failed with an error no known pattern explains; read the log.", None,
                       message or f"exit code {exit_code}")


_ERROR_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(Error|Exception|Interrupt)|RuntimeError|AssertionError)\b.*")


def last_error_line(log_text: str) -> str:
    """The last `SomethingError: ...` line of a log (what a person wants in a one-line summary)."""
    found = ""
    for line in log_text.splitlines():
        if _ERROR_LINE.match(line):
            found = line.strip()
    return found
