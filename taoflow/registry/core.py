"""The model registry: per model and name (`rtdetr/prod`), who the champion is and how it got there.

Layout under the artifact store root (local folder or s3://), see docs/registry.md:

    models/<model>/<name>/registry.json        format marker, created with the first event
    models/<model>/<name>/events/00000001.json  the append-only history, one object per event
    models/<model>/<name>/champion.json         a copy of the newest event's champion, for deployments

The events are the truth. Each is created only if its sequence number is free (see `exclusive`), so two
concurrent promotions cannot both append event N: the loser re-reads, sees the winner as champion, and
decides again against it. `champion.json` is derived and rewritten after every event.
"""

from __future__ import annotations

import getpass
import json
import re
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from taoflow.promotion import (
    Check,
    Decision,
    Evaluation,
    MetricRule,
    PromotionError,
    PromotionPolicy,
    decide,
    find_kpi,
)
from taoflow.registry.exclusive import create_exclusive
from taoflow.registry.records import (
    FORMAT_VERSION,
    ModelVersion,
    RegistryEvent,
    RegistryFormatError,
    RegistryNotFound,
    check_format,
    check_name,
)
from taoflow.store import ArtifactStore

EVENT_FILE = re.compile(r"^(\d{8})\.json$")
MAX_ATTEMPTS = 20

# Gives the champion's PyTorch evaluate KPIs on the challenger's eval data (the pipeline runs the cached
# evaluate action on the champion's checkpoint).
ChampionEvaluator = Callable[[ModelVersion], Mapping[str, Any]]


class ChampionFilesMissing(PromotionError):
    """The champion's checkpoint, ONNX or engine is gone from the store: nothing to compare or deploy."""


@dataclass(frozen=True)
class RegistryState:
    model: str
    name: str
    seq: int  # newest event's sequence number, 0 when there is none
    latest: RegistryEvent | None

    @property
    def champion(self) -> ModelVersion | None:
        return self.latest.champion if self.latest else None


@dataclass(frozen=True)
class PromotionOutcome:
    decision: Decision
    event: RegistryEvent  # the event that records it (an earlier one when nothing new was written)
    written: bool  # False: the challenger already was the champion, or this rejection was recorded before

    @property
    def promoted(self) -> bool:
        return self.decision.promote

    @property
    def champion(self) -> ModelVersion | None:
        return self.event.champion


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _who() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers: the host still says where
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class ModelRegistry:
    """The registry in one artifact store (default: `$TAOFLOW_STORE`, else `./.taoflow`)."""

    def __init__(self, store: ArtifactStore | str | None = None):
        self.store = store if isinstance(store, ArtifactStore) else ArtifactStore(store)

    # ------------------------------------------------------------------ layout
    def folder(self, model: str, name: str) -> str:
        return self.store.join(self.store.root, "models", check_name("model", model), check_name("name", name))

    def _events_folder(self, model: str, name: str) -> str:
        return self.store.join(self.folder(model, name), "events")

    def _event_uri(self, model: str, name: str, seq: int) -> str:
        return self.store.join(self._events_folder(model, name), f"{seq:08d}.json")

    def champion_uri(self, model: str, name: str) -> str:
        return self.store.join(self.folder(model, name), "champion.json")

    # ------------------------------------------------------------------ reads
    def _read_record(self, uri: str) -> Any:
        try:
            return self.store.read_json(uri)
        except json.JSONDecodeError as exc:
            raise RegistryFormatError(f"{uri} is not valid JSON ({exc}); nothing was changed") from None

    def _check_marker(self, model: str, name: str) -> None:
        uri = self.store.join(self.folder(model, name), "registry.json")
        try:
            check_format(self._read_record(uri), uri)
        except FileNotFoundError:
            pass

    def _sequence(self, model: str, name: str) -> list[int]:
        seqs = []
        for entry in self.store.list_files(self._events_folder(model, name), include_dirs=False):
            match = EVENT_FILE.match(entry.path)
            if match:
                seqs.append(int(match.group(1)))
        return sorted(seqs)

    def _event(self, model: str, name: str, seq: int) -> RegistryEvent:
        uri = self._event_uri(model, name, seq)
        return RegistryEvent.from_dict(self._read_record(uri), uri)

    def state(self, model: str, name: str) -> RegistryState:
        """The newest event (one listing and one read), refusing a registry of a newer format."""
        self._check_marker(model, name)
        seqs = self._sequence(model, name)
        if not seqs:
            return RegistryState(model, name, 0, None)
        return RegistryState(model, name, seqs[-1], self._event(model, name, seqs[-1]))

    def history(self, model: str, name: str) -> list[RegistryEvent]:
        """Every event of the name, oldest first; RegistryNotFound when it has none."""
        self._check_marker(model, name)
        seqs = self._sequence(model, name)
        if not seqs:
            raise self._not_found(model, name)
        uris = [self._event_uri(model, name, s) for s in seqs]
        bodies = self.store.fs.cat([self._fs_path(u) for u in uris])  # s3fs fetches them concurrently
        events = []
        for uri in uris:
            try:
                data = json.loads(bodies[self._fs_path(uri)])
            except json.JSONDecodeError as exc:
                raise RegistryFormatError(f"{uri} is not valid JSON ({exc}); nothing was changed") from None
            events.append(RegistryEvent.from_dict(data, uri))
        return events

    def _fs_path(self, uri: str) -> str:
        return str(self.store.local_path(uri)) if self.store.is_local else uri.split("://", 1)[1]

    def champion(self, model: str, name: str) -> ModelVersion | None:
        """The current champion, or None (no event yet, or only rejections)."""
        return self.state(model, name).champion

    def names(self) -> list[RegistryState]:
        """Every model/name in the store with its newest event, sorted."""
        root = self.store.join(self.store.root, "models")
        found: set[tuple[str, str]] = set()
        for entry in self.store.list_files(root, include_dirs=False):
            parts = entry.path.split("/")
            if len(parts) == 4 and parts[2] == "events" and EVENT_FILE.match(parts[3]):
                found.add((parts[0], parts[1]))
        return [self.state(model, name) for model, name in sorted(found)]

    def _not_found(self, model: str, name: str) -> RegistryNotFound:
        others = sorted(n for m, n in ((s.model, s.name) for s in self.names()) if m == model)
        hint = (f"names registered for {model}: {', '.join(others)}" if others
                else f"nothing is registered for {model} yet")
        return RegistryNotFound(f"no registry entry {model}/{name} in {self.store.root}; {hint}")

    def missing_files(self, version: ModelVersion) -> list[str]:
        """`kind uri` for each file of the version that is no longer in the store."""
        missing = []
        for kind, uri in version.files().items():
            store = self.store if self._same_store(uri) else ArtifactStore(uri)
            if not store.exists(uri):
                missing.append(f"{kind} {uri}")
        return missing

    def _same_store(self, uri: str) -> bool:
        return uri.startswith("s3://") == (not self.store.is_local)

    def require_files(self, version: ModelVersion, model: str, name: str, role: str) -> None:
        missing = self.missing_files(version)
        if missing:
            raise ChampionFilesMissing(
                f"{model}/{name}: the {role} {version.version_id} has files missing from the store: "
                f"{'; '.join(missing)}. Restore them, or roll back to another champion "
                f"(taoflow models rollback {model} {name} --to RUN_KEY); nothing was compared or changed"
            )

    def warm_start_checkpoint(self, model: str, name: str) -> str | None:
        """The champion's checkpoint URI, to use as the `pretrained_model` (PTM) of a retraining run; None when
        the name has no champion yet. Its files must still be in the store."""
        champion = self.champion(model, name)
        if champion is None:
            return None
        self.require_files(champion, model, name, "champion")
        return champion.checkpoint

    # ------------------------------------------------------------------ writes
    def _append(self, event: RegistryEvent) -> bool:
        """Create event `seq` if it is free. False: another writer got that number first."""
        marker = self.store.join(self.folder(event.model, event.name), "registry.json")
        if not self.store.exists(marker):
            create_exclusive(self.store, marker, _dump({"format": FORMAT_VERSION, "created": event.at}))
        uri = self._event_uri(event.model, event.name, event.seq)
        if create_exclusive(self.store, uri, _dump(event.to_dict())):
            self._refresh_champion_file(event)
            return True
        try:  # a retried PUT whose first attempt landed answers "exists": recognise our own event
            return self._event(event.model, event.name, event.seq).id == event.id
        except FileNotFoundError:  # a 409 conflict: the other write has not landed yet
            return False

    def _refresh_champion_file(self, event: RegistryEvent) -> None:
        """Write champion.json from `event`, then again from any newer event: a slow writer's copy can only
        land before the newer writer's own (it lists after writing), so the file converges to the newest."""
        seq, current = event.seq, event
        while True:
            body = {"format": FORMAT_VERSION, "seq": seq, "model": current.model, "name": current.name,
                    "updated": current.at,
                    "champion": current.champion.to_dict() if current.champion else None}
            self.store.write_json_atomic(self.champion_uri(current.model, current.name), body)
            newest = self._sequence(current.model, current.name)[-1]
            if newest <= seq:
                return
            seq, current = newest, self._event(current.model, current.name, newest)

    def promote(
        self, challenger: ModelVersion, name: str, *, rule: MetricRule, policy: PromotionPolicy | None = None,
        evaluate_champion: ChampionEvaluator | None = None, context: Mapping[str, str] | None = None,
    ) -> PromotionOutcome:
        """Decide on `challenger` against the current champion of `challenger.model`/`name` and record it.

        The champion's KPIs on the challenger's eval data come from `evaluate_champion(champion)`; without
        it, the champion's recorded KPIs are used when they are on the same eval data (same digest), else
        this refuses. A concurrent promotion that lands first makes this re-read and decide again against
        the new champion. Raises ChampionFilesMissing when the champion's files are gone."""
        policy = policy or PromotionPolicy()
        model = challenger.model
        self.folder(model, name)  # validates the names
        missing = self.missing_files(challenger)
        if missing:
            raise PromotionError(f"the challenger {challenger.version_id} has files missing from the store: "
                                 f"{'; '.join(missing)}; nothing was recorded")
        evaluated: dict[str, Evaluation] = {}
        for _ in range(MAX_ATTEMPTS):
            state = self.state(model, name)
            champion = state.champion
            if champion is not None and champion.version_id == challenger.version_id:
                return self._unchanged(state, challenger, rule)
            if champion is not None:
                self.require_files(champion, model, name, "champion")
                if champion.version_id not in evaluated:
                    evaluated[champion.version_id] = self._champion_evaluation(champion, challenger,
                                                                               evaluate_champion)
            decision = decide(challenger.evaluation(), evaluated.get(champion.version_id) if champion else None,
                              rule, policy, model=model)
            repeat = self._same_rejection(state, challenger, decision)
            if repeat is not None:
                return PromotionOutcome(decision, repeat, written=False)
            event = RegistryEvent(
                seq=state.seq + 1, kind="promoted" if decision.promote else "rejected", model=model, name=name,
                at=_now(), by=_who(), reason=decision.summary(), id=uuid.uuid4().hex, subject=challenger,
                champion=challenger if decision.promote else champion,
                previous_champion=champion.version_id if champion else None, decision=decision.to_dict(),
                policy=policy.to_dict(), context=dict(context or {}),
            )
            if self._append(event):
                return PromotionOutcome(decision, event, written=True)
        raise PromotionError(f"{model}/{name}: {MAX_ATTEMPTS} other registry updates landed while deciding; "
                             "nothing was recorded, run the promotion again")

    def _champion_evaluation(self, champion: ModelVersion, challenger: ModelVersion,
                             evaluate_champion: ChampionEvaluator | None) -> Evaluation:
        if evaluate_champion is not None:
            kpis = dict(evaluate_champion(champion))
        elif champion.eval_digest == challenger.eval_digest:
            kpis = champion.kpis_pytorch
        else:
            raise PromotionError(
                f"the champion {champion.version_id} was evaluated on other eval data ({champion.eval_digest}) "
                f"than the challenger ({challenger.eval_digest}); evaluate the champion's checkpoint on the "
                "challenger's eval data and pass its KPIs (evaluate_champion)"
            )
        return replace(champion.evaluation(), pytorch=kpis, tensorrt=None, eval_digest=challenger.eval_digest)

    def _unchanged(self, state: RegistryState, challenger: ModelVersion, rule: MetricRule) -> PromotionOutcome:
        """The challenger already is the champion (a retried or re-run promotion): nothing new to record.
        champion.json is rewritten, in case the run that promoted it died before doing so."""
        assert state.latest is not None
        self._refresh_champion_file(state.latest)
        found = find_kpi(challenger.kpis_pytorch, rule, model=challenger.model)
        version = challenger.version_id
        decision = Decision(
            promote=True, metric=found[0] if found else rule.name, direction=rule.direction,
            checks=(Check("champion", True, f"{version} already is the champion of {state.model}/{state.name} "
                                            f"(event #{state.seq})"),),
            challenger=version, champion=version, challenger_value=found[1] if found else None,
        )
        return PromotionOutcome(decision, state.latest, written=False)

    @staticmethod
    def _same_rejection(state: RegistryState, challenger: ModelVersion, decision: Decision) -> RegistryEvent | None:
        latest = state.latest
        if (decision.promote or latest is None or latest.kind != "rejected" or latest.subject is None
                or latest.subject.version_id != challenger.version_id):
            return None
        return latest

    def rollback(self, model: str, name: str, *, to: str | None = None, reason: str | None = None,
                 context: Mapping[str, str] | None = None) -> RegistryEvent:
        """Make an earlier champion the champion again (default: the one before the current champion).

        `to` is any run key (or a prefix of 6+ characters) of that version. Its files must be in the store;
        the current champion's need not be (rolling back is how a deleted champion is replaced)."""
        for _ in range(MAX_ATTEMPTS):
            history = self.history(model, name)
            latest = history[-1]
            current = latest.champion
            target = self._rollback_target(model, name, history, to)
            if current is not None and target.version_id == current.version_id:
                raise PromotionError(f"{target.version_id} already is the champion of {model}/{name}")
            self.require_files(target, model, name, "rollback target")
            was = current.version_id if current else "none"
            why = reason or "rollback requested"
            event = RegistryEvent(
                seq=latest.seq + 1, kind="rolled_back", model=model, name=name, at=_now(), by=_who(),
                reason=f"rolled back from {was} to {target.version_id}: {why}", id=uuid.uuid4().hex,
                subject=target, champion=target, previous_champion=current.version_id if current else None,
                context=dict(context or {}),
            )
            if self._append(event):
                return event
        raise PromotionError(f"{model}/{name}: {MAX_ATTEMPTS} other registry updates landed during the "
                             "rollback; nothing was changed, run it again")

    @staticmethod
    def _rollback_target(model: str, name: str, history: list[RegistryEvent], to: str | None) -> ModelVersion:
        champions: list[ModelVersion] = []
        for event in history:
            if event.kind in ("promoted", "rolled_back") and event.champion is not None:
                champions.append(event.champion)
        if to is not None:
            hits = {v.version_id: v for v in champions if v.matches(to)}
            if len(hits) == 1:
                return next(iter(hits.values()))
            known = ", ".join(dict.fromkeys(v.version_id for v in champions)) or "none"
            problem = "matches several" if hits else "is not a run key of any"
            raise PromotionError(f"--to {to!r} {problem} former champion of {model}/{name} (champions so far: "
                                 f"{known}; give 6 or more characters of a run key)")
        current = history[-1].champion
        for version in reversed(champions):
            if current is None or version.version_id != current.version_id:
                return version
        raise PromotionError(f"{model}/{name} has had no other champion to roll back to")


def _dump(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, default=str) + "\n").encode()
