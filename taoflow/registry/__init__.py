"""The model registry in the artifact store: champions, their history, promotion and rollback.

Public API (engine only, no Prefect): see docs/registry.md.

    registry = ModelRegistry(store_root)
    challenger = version_from_pipeline(store, skill, request, results, runs)
    outcome = registry.promote(challenger, "prod", rule=MetricRule.for_skill(skill),
                               policy=PromotionPolicy.for_skill(skill), evaluate_champion=fn)
    registry.rollback("rtdetr", "prod", to="3f2a…", reason="bad field reports")
    registry.warm_start_checkpoint("rtdetr", "prod")  # the champion's checkpoint, as a PTM
"""

from taoflow.promotion import Decision, Evaluation, MetricRule, PromotionError, PromotionPolicy, decide
from taoflow.registry.core import ChampionFilesMissing, ModelRegistry, PromotionOutcome, RegistryState
from taoflow.registry.exclusive import ConditionalWritesUnsupported, create_exclusive
from taoflow.registry.records import (
    FORMAT_VERSION,
    ModelVersion,
    RegistryEvent,
    RegistryFormatError,
    RegistryNotFound,
)
from taoflow.registry.versions import (
    champion_evaluate_run,
    eval_digest,
    upstream_results,
    version_from_pipeline,
)

__all__ = [
    "FORMAT_VERSION",
    "ChampionFilesMissing",
    "ConditionalWritesUnsupported",
    "Decision",
    "Evaluation",
    "MetricRule",
    "ModelRegistry",
    "ModelVersion",
    "PromotionError",
    "PromotionOutcome",
    "PromotionPolicy",
    "RegistryEvent",
    "RegistryFormatError",
    "RegistryNotFound",
    "RegistryState",
    "champion_evaluate_run",
    "create_exclusive",
    "decide",
    "eval_digest",
    "upstream_results",
    "version_from_pipeline",
]
