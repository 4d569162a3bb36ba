"""Model rules: checks beyond the JSON schema, each one a TAO failure seen in practice.

Rules are functions registered per model with `@rule(model, actions=...)`. They get a RuleContext (the spec
as TAO holds it after its merge: converted values, resolved interpolations) and yield `Problem`s naming the
dotted key, the value and what is allowed; a Problem with severity WARNING is reported without failing.
Rules that need the run's inputs (an anchor file, a label map, camera intrinsics) do not fire on an unfilled
skeleton (a template whose dataset and parent-model keys are still placeholders) unless validation is
`complete`.

Small dataset files (COCO annotations, label maps) are read when reachable: local paths always, remote
URIs only when an S3 endpoint or credentials are configured; anything unreadable is skipped silently.
"""

from taoflow.rules import action_recognition, centerpose, nvpanoptix3d, rtdetr, sparse4d  # noqa: F401  (registers)
from taoflow.rules.core import RULES, RuleContext, is_unset, rule, run_rules

__all__ = ["RULES", "RuleContext", "is_unset", "rule", "run_rules"]
