"""What the model registry stores: a model version (the champion record) and the events of a name's history.

Both are plain JSON objects with a `format` number. This taoflow writes FORMAT_VERSION and reads any format
up to it; a record from a newer taoflow is refused (`RegistryFormatError`) before anything is decided or
written, so an old client can never rewrite history it does not understand.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from taoflow.errors import UserError
from taoflow.promotion import Evaluation

FORMAT_VERSION = 1
EventKind = Literal["promoted", "rejected", "rolled_back"]
EVENT_KINDS = ("promoted", "rejected", "rolled_back")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class RegistryFormatError(UserError):
    """The registry holds records of a newer (or unreadable) format; nothing was read into a decision."""


class RegistryNotFound(UserError):
    """No such model/name in the registry."""


def check_name(kind: str, value: str) -> str:
    """Model and registry names become folder names: letters, digits, `.`, `_`, `-` (no `/`, no `..`)."""
    if not isinstance(value, str) or not NAME_PATTERN.match(value) or value in (".", ".."):
        raise UserError(f"{kind} {value!r}: use 1-63 letters, digits, '.', '_' or '-', starting with a "
                        "letter or digit")
    return value


def check_format(data: Any, where: str) -> dict[str, Any]:
    """The record as a dict, refusing a newer format or something that is not a registry record."""
    if not isinstance(data, dict) or not isinstance(data.get("format"), int):
        raise RegistryFormatError(f"{where} is not a model registry record (no integer 'format'); "
                                  "the registry may be corrupted: nothing was changed")
    if data["format"] > FORMAT_VERSION:
        raise RegistryFormatError(
            f"{where} was written by a newer taoflow (registry format {data['format']}; this taoflow reads "
            f"format {FORMAT_VERSION} and older): upgrade taoflow to use this registry; nothing was changed"
        )
    return data


@dataclass(frozen=True)
class ModelVersion:
    """One trained, exported and built model, as the registry records it (the champion record).

    `run_keys` and `results_uris` map pipeline steps (train, export, gen_trt_engine, evaluate, trt_evaluate) to
    their run keys and results folders;
    `kpis_pytorch` / `kpis_tensorrt` are its evaluate and TensorRT evaluate KPIs on the eval data whose digest
    is `eval_digest`; `data_digests` are the digests of every dataset role the pipeline read."""

    model: str
    run_keys: dict[str, str]
    checkpoint: str
    results_uris: dict[str, str] = field(default_factory=dict)  # step -> its results folder
    ptm: str | None = None  # what training started from: a PTM, or the champion of a warm start
    onnx: str | None = None
    engine: str | None = None
    precision: str | None = None  # fp32 | fp16 | int8 (gen_trt_engine.tensorrt.data_type)
    images: dict[str, str] = field(default_factory=dict)
    kpis_pytorch: dict[str, float] = field(default_factory=dict)
    kpis_tensorrt: dict[str, float] | None = None
    eval_digest: str | None = None
    data_digests: dict[str, str] = field(default_factory=dict)
    engine_bytes: int | None = None
    latency_ms: float | None = None
    emulated: bool = False

    @property
    def version_id(self) -> str:
        """The run key that names this version: its engine's, else its export's, else its training's."""
        for step in ("gen_trt_engine", "export", "train"):
            if self.run_keys.get(step):
                return self.run_keys[step]
        return next(iter(self.run_keys.values()), "?")

    @property
    def deployable(self) -> str:
        """What a deployment pipeline picks up: the engine, else the ONNX file, else the checkpoint."""
        return self.engine or self.onnx or self.checkpoint

    def files(self) -> dict[str, str]:
        """The store files this version needs, by kind."""
        out = {"checkpoint": self.checkpoint, "onnx": self.onnx, "engine": self.engine}
        return {k: v for k, v in out.items() if v}

    def matches(self, run_key: str) -> bool:
        """True when `run_key` (or a prefix of 6+ characters) is one of this version's run keys."""
        return len(run_key) >= 6 and any(k.startswith(run_key) for k in self.run_keys.values())

    def evaluation(self) -> Evaluation:
        """Its own recorded evaluation (used as the challenger side of a decision)."""
        return Evaluation(
            version=self.version_id, pytorch=self.kpis_pytorch, tensorrt=self.kpis_tensorrt,
            precision=self.precision, eval_digest=self.eval_digest, latency_ms=self.latency_ms,
            engine_bytes=self.engine_bytes,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: Any, where: str = "a model version record") -> ModelVersion:
        data = dict(check_format(data, where))
        data.pop("format")
        known = {f for f in cls.__dataclass_fields__}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise RegistryFormatError(f"{where} is incomplete ({exc}); nothing was changed") from None


@dataclass(frozen=True)
class RegistryEvent:
    """One entry of a name's append-only history. `seq` numbers them from 1 without gaps; it is the version
    the compare-and-swap is on. `champion` is the champion AFTER the event (unchanged by a rejection), so
    the current champion is the newest event's; `subject` is the version the event is about (the challenger,
    or the rollback target)."""

    seq: int
    kind: EventKind
    model: str
    name: str
    at: str  # UTC, ISO 8601
    by: str
    reason: str
    id: str  # unique per write: a retried PUT that already landed is recognised as our own
    subject: ModelVersion | None = None
    champion: ModelVersion | None = None
    previous_champion: str | None = None  # version_id of the champion before the event
    decision: dict[str, Any] | None = None  # promotion.Decision.to_dict() for promoted/rejected
    policy: dict[str, Any] | None = None
    context: dict[str, str] = field(default_factory=dict)  # e.g. flow run id, deployment

    def to_dict(self) -> dict[str, Any]:
        out = {"format": FORMAT_VERSION, **asdict(self)}
        out["subject"] = self.subject.to_dict() if self.subject else None
        out["champion"] = self.champion.to_dict() if self.champion else None
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str) -> RegistryEvent:
        data = dict(check_format(data, where))
        data.pop("format")
        if data.get("kind") not in EVENT_KINDS:
            raise RegistryFormatError(f"{where}: unknown event kind {data.get('kind')!r}; nothing was changed")
        for key in ("subject", "champion"):
            if data.get(key) is not None:
                data[key] = ModelVersion.from_dict(data[key], f"{where} ({key})")
        known = {f for f in cls.__dataclass_fields__}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError as exc:
            raise RegistryFormatError(f"{where} is incomplete ({exc}); nothing was changed") from None
