"""The AutoML search space: which spec keys a sweep varies, over which values, on which scale.

Sources, later ones winning:
1. the train schema's `x-tao-automl-default-parameters` (TAO Core's list), restricted to the spec sections
   the skill's train action reads (TAO's rtdetr list also names `distill.teacher.*`, which train never
   reads) and without keys that cannot change the model (`workers`);
2. the skill's `automl.parameters`, replacing that list when given;
3. the user's `KEY=LOW:HIGH[:log]` ranges and `KEY=a,b,c` lists (`--param`): they *extend* the default
   space — a key already in it gets the user's range, a new key is added — unless the base is `none`
   (`--space none`), when they are the whole space.

Bounds come from the schema (`minimum`/`maximum`/`exclusive*`, `x-tao-valid-min/max`). Where TAO leaves
a bound open (`inf`) or at 0 for a rate, the searched range is derived from the default (see `_default_range`)
— NVIDIA's AutoML samples rates linearly over [0, 1] and spends nearly every trial above 0.1. Learning
rates and weight decays are searched on a log scale (by name). Distributions are Optuna's.
`x-tao-depends-on` (RT-DETR's `num_select` ≤ `num_queries`) is applied when a trial's values become spec
overrides: the child is clamped to its parent. `x-tao-option-weights` are not used (Optuna's categorical
distributions are uniform; the TPE sampler learns the weights that matter).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from taoflow.dotted import parse_value
from taoflow.errors import UserError
from taoflow.skill import Skill, load_skill

# Leaf names searched on a log scale: rates and decays span decades.
LOG_LEAVES = {"lr", "learning_rate", "base_lr", "min_lr", "max_lr", "lr_backbone", "backbone_lr",
              "weight_decay", "wd", "eps"}
# Leaf names that cannot change the trained model: not searched by default (a user may still ask).
NON_MODEL_LEAVES = {"workers", "num_workers", "pin_memory", "num_gpus", "gpu_ids", "num_nodes"}


def is_log_name(key: str) -> bool:
    leaf = key.rsplit(".", 1)[-1]
    return leaf in LOG_LEAVES or leaf.endswith(("_lr", "weight_decay"))


@dataclass(frozen=True)
class Param:
    """One searched spec key. `source` is `schema`, `skill` or `user`; `depends_on` a key it may not exceed."""

    key: str
    distribution: BaseDistribution
    source: str
    depends_on: str | None = None

    @property
    def log(self) -> bool:
        return bool(getattr(self.distribution, "log", False))

    def describe(self) -> str:
        d = self.distribution
        if isinstance(d, CategoricalDistribution):
            return f"{self.key} in {list(d.choices)}"
        scale = " (log)" if self.log else ""
        return f"{self.key} in [{d.low:g}, {d.high:g}]{scale}"


SPACE_BASES = ("default", "none")


@dataclass
class SearchSpace:
    model: str
    params: dict[str, Param] = field(default_factory=dict)
    base: str = "default"  # "default": the model's AutoML parameters plus --param; "none": --param only
    defaults_from: str = ""  # where the default parameters came from (for people)
    replaced: list[str] = field(default_factory=list)  # default parameters whose range --param replaced
    added: list[str] = field(default_factory=list)  # parameters --param added

    def origin(self) -> str:
        """Where the parameters come from, and whether --param replaced or extended the defaults."""
        if self.base == "none":
            return "only the --param ranges (--space none: the model's default parameters are not searched)"
        defaults = len(self.params) - len(self.added)
        text = f"{defaults} from {self.defaults_from}" if self.defaults_from else f"{defaults} default"
        if not self.replaced and not self.added:
            return text
        changes = []
        if self.replaced:
            changes.append(f"replaced the range of {', '.join(self.replaced)}")
        if self.added:
            changes.append(f"added {', '.join(self.added)}")
        return (text + "; --param " + " and ".join(changes)
                + " (--param extends the default space; --space none searches only the --param ranges)")

    def distributions(self) -> dict[str, BaseDistribution]:
        return {key: p.distribution for key, p in self.params.items()}

    def suggest(self, trial: Any) -> dict[str, Any]:
        """Ask an Optuna trial for every parameter (in key order, so samplers see a stable space)."""
        out: dict[str, Any] = {}
        for key, p in sorted(self.params.items()):
            d = p.distribution
            if isinstance(d, CategoricalDistribution):
                out[key] = trial.suggest_categorical(key, list(d.choices))
            elif isinstance(d, IntDistribution):
                out[key] = trial.suggest_int(key, d.low, d.high, step=d.step, log=d.log)
            else:
                out[key] = trial.suggest_float(key, d.low, d.high, step=d.step, log=d.log)
        return out

    def overrides(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Trial values as spec overrides, with `x-tao-depends-on` applied (child clamped to its parent)."""
        out = {key: _plain(value) for key, value in values.items()}
        for key, p in self.params.items():
            parent = p.depends_on
            if parent and key in out and parent in out:
                child, bound = out[key], out[parent]
                if isinstance(child, (int, float)) and isinstance(bound, (int, float)) and child > bound:
                    out[key] = type(child)(bound)
        return out

    def baseline(self, spec_value: Any) -> dict[str, Any]:
        """The searched keys' values in a spec (`spec_value(key)`), those a trial may take: the run's own
        values, for the sweep's baseline trial. A key whose value lies outside its range (or off its step, or
        not among its choices) is left to the sampler."""
        out: dict[str, Any] = {}
        for key, p in sorted(self.params.items()):
            value = _admitted(spec_value(key), p.distribution)
            if value is not None:
                out[key] = value
        return out

    def grid(self, points: int = 3) -> dict[str, list[Any]]:
        """The GridSampler's space: categorical choices as they are, ranges as `points` values
        (geometric on a log scale), so `grid` sweeps are finite and cover each range's ends."""
        out: dict[str, list[Any]] = {}
        for key, p in sorted(self.params.items()):
            d = p.distribution
            if isinstance(d, CategoricalDistribution):
                out[key] = list(d.choices)
                continue
            lo, hi = float(d.low), float(d.high)
            if p.log:
                values = [lo * (hi / lo) ** (i / (points - 1)) for i in range(points)]
            else:
                values = [lo + (hi - lo) * i / (points - 1) for i in range(points)]
            if isinstance(d, IntDistribution):
                out[key] = sorted({round(v) for v in values})
            else:
                out[key] = [float(f"{v:.6g}") for v in values]
        return out

    def describe(self) -> list[str]:
        return [p.describe() for _, p in sorted(self.params.items())]


def _admitted(value: Any, dist: BaseDistribution) -> Any:
    """`value` as `dist` holds it, or None when `dist` cannot (see SearchSpace.baseline)."""
    if isinstance(dist, CategoricalDistribution):
        return value if value is not None and value in dist.choices else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    if isinstance(dist, IntDistribution):
        if value != int(value):
            return None
        value = int(value)
    else:
        value = float(value)
    if not dist.low <= value <= dist.high:
        return None
    step = getattr(dist, "step", None)
    if step and not math.isclose((value - dist.low) / step, round((value - dist.low) / step), abs_tol=1e-8):
        return None
    return value


def _plain(value: Any) -> Any:
    """numpy scalars and the like as plain Python values (specs are YAML)."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


# ------------------------------------------------------------------------------------------- schema access

def load_train_schema(skill: Skill) -> dict[str, Any]:
    from taoflow.validate import schema_path

    path = schema_path(skill, "train")
    if path is None:
        raise UserError(f"{skill.name}: AutoML needs skills/{skill.name}/schemas/train.schema.json, which is missing")
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def schema_property(schema: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    """The schema node of a dotted key (following local `$ref`s), or None when the key does not exist."""
    node: Any = schema
    for part in key.split("."):
        node = _deref(node, schema)
        props = node.get("properties") if isinstance(node, Mapping) else None
        if not isinstance(props, Mapping) or part not in props:
            return None
        node = props[part]
    return _deref(node, schema)


def _deref(node: Any, root: Mapping[str, Any]) -> Any:
    for _ in range(20):
        if not (isinstance(node, Mapping) and isinstance(node.get("$ref"), str) and node["$ref"].startswith("#/")):
            return node
        target: Any = root
        for part in node["$ref"][2:].split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        node = target
    return node


def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _kind(prop: Mapping[str, Any]) -> str:
    """integer | number | boolean | enum | string | other."""
    if "enum" in prop:
        return "enum"
    kind = prop.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    return kind if kind in ("integer", "number", "boolean", "string") else "other"


@dataclass(frozen=True)
class _Bounds:
    low: float | None
    high: float | None
    low_exclusive: bool
    high_exclusive: bool

    def admits(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (self.low_exclusive and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_exclusive and value == self.high)))

    def text(self) -> str:
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        return f"{'(' if self.low_exclusive else '['}{lo}, {hi}{')' if self.high_exclusive else ']'}"


def _bounds(prop: Mapping[str, Any]) -> _Bounds:
    low, low_ex = _finite(prop.get("minimum")), False
    if _finite(prop.get("exclusiveMinimum")) is not None:
        ex = _finite(prop["exclusiveMinimum"])
        if low is None or ex >= low:
            low, low_ex = ex, True
    if low is None:
        low = _finite(prop.get("x-tao-valid-min"))
    high, high_ex = _finite(prop.get("maximum")), False
    if _finite(prop.get("exclusiveMaximum")) is not None:
        ex = _finite(prop["exclusiveMaximum"])
        if high is None or ex <= high:
            high, high_ex = ex, True
    if high is None:
        high = _finite(prop.get("x-tao-valid-max"))
    return _Bounds(low, high, low_ex, high_ex)


def _default_range(key: str, prop: Mapping[str, Any], bounds: _Bounds) -> tuple[float, float, bool]:
    """(low, high, log) searched when the user gives no range: the schema's bounds where finite and
    usable, else derived from the default (rates: default / 100 … default × 100)."""
    default = _finite(prop.get("default"))
    kind = _kind(prop)
    log = is_log_name(key)
    if log:
        centre = default if default and default > 0 else 1e-4
        low = centre / 100.0
        high = centre * 100.0
        if bounds.low is not None:
            low = max(low, bounds.low if bounds.low > 0 else low)
        if bounds.high is not None:
            high = min(high, bounds.high)
        return low, high, True
    low = bounds.low if bounds.low is not None else (min(default, 0.0) if default is not None else 0.0)
    if bounds.high is not None:
        high = bounds.high
    elif default is not None and default > 0:
        high = default * (4.0 if kind == "integer" else 10.0)
    else:
        high = low + (16 if kind == "integer" else 1.0)
    if kind == "integer":
        low_i = math.floor(low) + (1 if bounds.low_exclusive and float(low).is_integer() else 0)
        low_i = math.ceil(low) if not float(low).is_integer() else low_i
        high_i = math.floor(high) - (1 if bounds.high_exclusive and float(high).is_integer() else 0)
        high_i = max(high_i, low_i + 1)
        return low_i, high_i, low_i >= 1 and high_i / low_i >= 16
    span = high - low
    if bounds.low_exclusive:
        low += span * 1e-3
    if bounds.high_exclusive:
        high -= span * 1e-3
    return low, high, False


def _integer_param(key: str, low: int, high: int, log: bool, prop: Mapping[str, Any], source: str,
                   depends: str | None) -> Param:
    """An integer parameter honouring TAO's `x-tao-math-cond`: `/ N` (a multiple of N) and `^ N` (a power
    of N) become a stepped range or the list of powers inside [low, high]; `> 0`-style conditions are
    already exclusive bounds in the generated schema."""
    cond = str(prop.get("x-tao-math-cond") or "").replace(" ", "")
    match = re.fullmatch(r"([/^])(\d+)", cond)
    if match and int(match.group(2)) > 1:
        n = int(match.group(2))
        if match.group(1) == "/":
            first, last = -(-low // n) * n, high // n * n
            if first < last:
                return Param(key, IntDistribution(first, last, step=n), source, depends)
        else:
            powers = [n**k for k in range(64) if low <= n**k <= high]
            if powers:
                return Param(key, CategoricalDistribution(powers), source, depends)
    return Param(key, IntDistribution(low, high, log=log), source, depends)


def _schema_param(key: str, prop: Mapping[str, Any], source: str) -> Param | None:
    kind = _kind(prop)
    depends = prop.get("x-tao-depends-on") if isinstance(prop.get("x-tao-depends-on"), str) else None
    if kind == "enum":
        return Param(key, CategoricalDistribution(list(prop["enum"])), source, depends)
    if kind == "boolean":
        return Param(key, CategoricalDistribution([False, True]), source, depends)
    if kind not in ("integer", "number"):
        return None  # strings without options, lists, objects: not searchable without a user list
    low, high, log = _default_range(key, prop, _bounds(prop))
    if kind == "integer":
        return _integer_param(key, int(low), int(high), log, prop, source, depends)
    return Param(key, FloatDistribution(float(low), float(high), log=log), source, depends)


# ------------------------------------------------------------------------------------------- user params

def parse_param(text: str) -> tuple[str, str]:
    """`KEY=LOW:HIGH[:log]` or `KEY=a,b,c` → (key, right-hand side)."""
    key, sep, rhs = text.partition("=")
    key, rhs = key.strip(), rhs.strip()
    if not sep or not key or not rhs:
        raise UserError(f"invalid --param {text!r}: use KEY=LOW:HIGH[:log] or KEY=a,b,c "
                        f"(e.g. train.optim.lr=1e-5:1e-3:log)")
    return key, rhs


def _user_param(key: str, rhs: str, prop: Mapping[str, Any]) -> Param:
    kind = _kind(prop)
    bounds = _bounds(prop)
    depends = prop.get("x-tao-depends-on") if isinstance(prop.get("x-tao-depends-on"), str) else None
    if ":" in rhs and "," not in rhs:
        parts = [p.strip() for p in rhs.split(":")]
        log = False
        if len(parts) == 3:
            if parts[2].lower() != "log":
                raise UserError(f"{key}={rhs}: the third part of a range can only be 'log'")
            log = True
            parts = parts[:2]
        if len(parts) != 2:
            raise UserError(f"{key}={rhs}: a range is LOW:HIGH or LOW:HIGH:log")
        if kind not in ("integer", "number"):
            what = {"enum": "categorical", "boolean": "boolean", "string": "string"}.get(kind, "non-numeric")
            raise UserError(f"{key}={rhs}: {key} is a {what} parameter; give a list of values (a,b,c), not a range")
        low, high = (parse_value(p) for p in parts)
        for value in (low, high):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise UserError(f"{key}={rhs}: {value!r} is not a number")
            if kind == "integer" and not float(value).is_integer():
                raise UserError(f"{key}={rhs}: {key} is an integer; {value!r} is not")
        if low >= high:
            raise UserError(f"{key}={rhs}: LOW must be below HIGH (got {low:g} ≥ {high:g})")
        if log and low <= 0:
            raise UserError(f"{key}={rhs}: a log range needs LOW > 0 (got {low:g})")
        for value in (low, high):
            if not bounds.admits(float(value)):
                raise UserError(f"{key}={rhs}: {value:g} is outside the schema's allowed range {bounds.text()}")
        if kind == "integer":
            return _integer_param(key, int(low), int(high), log, prop, "user", depends)
        return Param(key, FloatDistribution(float(low), float(high), log=log), "user", depends)
    values = [parse_value(v) for v in rhs.split(",")]
    if any(v == "" for v in values):
        raise UserError(f"{key}={rhs}: empty value in the list")
    checked = [_check_value(key, v, prop, kind, bounds) for v in values]
    return Param(key, CategoricalDistribution(list(dict.fromkeys(checked))), "user", depends)


def _check_value(key: str, value: Any, prop: Mapping[str, Any], kind: str, bounds: _Bounds) -> Any:
    if kind == "enum":
        if value not in prop["enum"]:
            raise UserError(f"{key}: {value!r} is not one of {prop['enum']}")
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise UserError(f"{key}: {value!r} is not true/false")
        return value
    if kind in ("integer", "number"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{key}: {value!r} is not a number")
        if kind == "integer":
            if not float(value).is_integer():
                raise UserError(f"{key}: {key} is an integer; {value!r} is not")
            value = int(value)
        if not bounds.admits(float(value)):
            raise UserError(f"{key}: {value!r} is outside the schema's allowed range {bounds.text()}")
        return value
    if kind == "string":
        return str(value)
    raise UserError(f"{key}: {kind} parameters cannot be searched")


# ------------------------------------------------------------------------------------------- builder

def build_space(
    skill: Skill | str,
    user_params: Iterable[str] | Mapping[str, str] = (),
    *,
    schema: Mapping[str, Any] | None = None,
    base: str = "default",
) -> SearchSpace:
    """The search space of a skill's train action (see the module docstring for the rules).

    `user_params`: `KEY=LOW:HIGH[:log]` / `KEY=a,b,c` strings, or a mapping of key to the right-hand side.
    `base`: `default` (the model's AutoML parameters, extended by `user_params`) or `none` (`user_params`
    only). Raises UserError naming every invalid parameter at once.
    """
    if base not in SPACE_BASES:
        raise UserError(f"--space {base!r}: choose default (the model's AutoML parameters, extended by --param) "
                        "or none (only the --param ranges)")
    skill = load_skill(skill) if isinstance(skill, str) else skill
    schema = schema if schema is not None else load_train_schema(skill)
    sections = set(skill.action("train").sections) if "train" in skill.actions else set()
    disabled = set(schema.get("x-tao-automl-disabled-parameters") or [])

    if skill.automl.parameters is not None:
        defaults, source = list(skill.automl.parameters), "skill"
    else:
        defaults, source = list(schema.get("x-tao-automl-default-parameters") or []), "schema"
        defaults = [k for k in defaults if (not sections or k.split(".")[0] in sections)
                    and k.rsplit(".", 1)[-1] not in NON_MODEL_LEAVES]

    if base == "none":
        defaults = []
    space = SearchSpace(model=skill.name, base=base, defaults_from=(
        f"skills/{skill.name}/skill.yaml automl.parameters" if source == "skill"
        else "the train schema's AutoML defaults (x-tao-automl-default-parameters)"))
    problems: list[str] = []
    for key in defaults:
        prop = schema_property(schema, key)
        if prop is None:
            problems.append(f"{key}: skill {skill.name} lists it for AutoML but the train schema has no such key")
            continue
        param = _schema_param(key, prop, source)
        if param is not None:
            space.params[key] = param

    items = user_params.items() if isinstance(user_params, Mapping) else (parse_param(t) for t in user_params)
    for key, rhs in items:
        prop = schema_property(schema, key)
        if prop is None:
            problems.append(f"{key}: not a key of the {skill.name} train spec")
            continue
        if key in disabled:
            problems.append(f"{key}: TAO disables AutoML for this parameter (x-tao-automl-disabled-parameters)")
            continue
        try:
            param = _user_param(key, str(rhs), prop)
        except UserError as exc:
            problems.append(str(exc))
            continue
        (space.replaced if key in space.params else space.added).append(key)
        space.params[key] = param
    if problems:
        raise UserError(f"invalid AutoML search space for {skill.name}", problems)
    if not space.params:
        hint = "--space none searches only --param ranges; " if base == "none" else ""
        raise UserError(f"{skill.name}: the AutoML search space is empty; {hint}add --param KEY=LOW:HIGH")
    return space
