"""Rule registry, context and the reading of small dataset files the rules look at."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from taoflow.dotted import get_dotted
from taoflow.skill import Skill
from taoflow.validate import ABSENT, MISSING_VALUE, Problem

_ABSENT = ABSENT
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tar.xz", ".zip")
PARENT_HANDOFFS = {"parent_model", "parent_model_folder", "parent_model_or_ptm"}


@dataclass(frozen=True)
class RuleContext:
    skill: Skill
    action: str
    spec: Mapping[str, Any]
    force: frozenset[str] = field(default_factory=frozenset)
    complete: bool = False
    read_data: bool = True

    @property
    def tao_action(self) -> str:
        return self.skill.action(self.action).tao_action

    def get(self, key: str, default: Any = _ABSENT) -> Any:
        return get_dotted(self.spec, key, default)

    def is_skeleton(self, exclude: str = "") -> bool:
        """True for an unfilled template: every dataset and parent-model key of the action is unset."""
        act = self.skill.action(self.action)
        keys = [ds.key for ds in act.data_sources] + [k for k, fn in act.handoffs.items() if fn in PARENT_HANDOFFS]
        keys = [k for k in keys if k != exclude]
        return all(is_unset(self.get(k)) for k in keys)

    def needs_inputs(self, key: str) -> bool:
        """Whether a rule that asks for a run input should fire (see the module docstring)."""
        return self.complete or not self.is_skeleton(exclude=key)


def is_unset(value: Any) -> bool:
    """Absent, null, empty or TAO's `???` placeholder (also inside lists and mappings)."""
    if value is _ABSENT or value is None or value == "" or value == MISSING_VALUE:
        return True
    if isinstance(value, list):
        return all(is_unset(v) for v in value)
    if isinstance(value, Mapping):
        return all(is_unset(v) for v in value.values())
    return False


RuleFunc = Callable[[RuleContext], Iterable[Problem]]


@dataclass(frozen=True)
class Rule:
    model: str
    func: RuleFunc
    actions: frozenset[str] | None  # TAO action names; None = every action

    def applies(self, ctx: RuleContext) -> bool:
        return self.actions is None or ctx.tao_action in self.actions or ctx.action in self.actions


RULES: dict[str, list[Rule]] = {}


def rule(model: str, actions: Iterable[str] | None = None) -> Callable[[RuleFunc], RuleFunc]:
    """Register a rule for `model`, limited to the given TAO (or skill) action names."""

    def register(func: RuleFunc) -> RuleFunc:
        RULES.setdefault(model, []).append(Rule(model, func, frozenset(actions) if actions else None))
        return func

    return register


def run_rules(ctx: RuleContext) -> list[Problem]:
    problems: list[Problem] = []
    for entry in RULES.get(ctx.skill.name, []):
        if entry.applies(ctx):
            problems += list(entry.func(ctx))
    return problems


# ------------------------------------------------------------------ reading small dataset files
def _remote_allowed() -> bool:
    """Remote reads only when S3 is configured (no credential probing or AWS round trips otherwise)."""
    if os.environ.get("TAOFLOW_VALIDATE_REMOTE", "1") == "0":
        return False
    names = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_PROFILE",
             "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
             "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
    return any(os.environ.get(n) for n in names)


@lru_cache(maxsize=128)
def _read_local_json(path: str, mtime: float, size: int) -> Any:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


@lru_cache(maxsize=128)
def _read_remote_json(uri: str) -> Any:
    from taoflow.store import ArtifactStore

    scheme_root = uri.split("://", 1)[0] + "://" + uri.split("://", 1)[1].split("/", 1)[0]
    store = ArtifactStore(scheme_root)
    return json.loads(store.read_text(uri))


def read_json(uri: Any, ctx: RuleContext) -> Any:
    """The parsed JSON at a local path or remote URI, or None when it cannot be read."""
    if not ctx.read_data or not isinstance(uri, str) or is_unset(uri):
        return None
    try:
        if "://" in uri and not uri.startswith("file://"):
            if not uri.startswith(("s3://", "s3a://")) or not _remote_allowed():
                return None
            return _read_remote_json(uri)
        path = uri.removeprefix("file://")
        stat = os.stat(path)
        return _read_local_json(path, stat.st_mtime, stat.st_size)
    except Exception:
        return None


def coco_category_ids(data: Any) -> list[int] | None:
    """Category ids of a COCO annotation file: from `categories`, plus any used by `annotations`."""
    if not isinstance(data, Mapping):
        return None
    ids: set[int] = set()
    for entry in data.get("categories") or []:
        if isinstance(entry, Mapping) and isinstance(entry.get("id"), int):
            ids.add(entry["id"])
    for entry in data.get("annotations") or []:
        if isinstance(entry, Mapping) and isinstance(entry.get("category_id"), int):
            ids.add(entry["category_id"])
    return sorted(ids) if ids else None
