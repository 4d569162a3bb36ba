"""Search space and study settings: schema bounds, log scale for rates, user ranges first, clear UserErrors,
same seed → same suggestions on a real SQLite study."""

from __future__ import annotations

import logging

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from taoflow.automl.space import build_space, schema_property
from taoflow.automl.study import (
    SweepSettings,
    default_storage,
    make_sampler,
    open_study,
    rung_epochs,
    settings_for,
    study_name,
    trial_overrides,
)
from taoflow.emulator.surfaces import tao as surfaces
from taoflow.errors import UserError
from taoflow.skill import load_skill

optuna.logging.set_verbosity(logging.WARNING)
MODELS = ["rtdetr", "centerpose", "action_recognition", "sparse4d", "nvpanoptix3d"]

MINI_SCHEMA = {
    "type": "object",
    "x-tao-automl-default-parameters": ["train.optim.lr", "train.optim.kind", "train.ema", "model.queries",
                                        "model.select", "dataset.workers", "train.momentum"],
    "x-tao-automl-disabled-parameters": ["train.seed"],
    "properties": {
        "model": {"type": "object", "properties": {
            "queries": {"type": "integer", "minimum": 1, "x-tao-valid-max": "inf", "default": 300},
            "width": {"type": "integer", "minimum": 1, "maximum": 100, "default": 32, "x-tao-math-cond": "/ 8"},
            "heads": {"type": "integer", "minimum": 1, "maximum": 40, "default": 8, "x-tao-math-cond": "^ 2"},
            "select": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 300,
                       "x-tao-depends-on": "model.queries"},
        }},
        "dataset": {"type": "object", "properties": {"workers": {"type": "integer", "minimum": 1, "default": 8}}},
        "train": {"type": "object", "properties": {
            "seed": {"type": "integer", "default": 1234},
            "ema": {"type": "boolean", "default": False},
            "momentum": {"type": "number", "exclusiveMinimum": 0.0, "maximum": 1.0, "default": 0.9},
            "optim": {"type": "object", "properties": {
                "lr": {"type": "number", "exclusiveMinimum": 0.0, "maximum": 1.0, "default": 1e-4,
                       "x-tao-math-cond": "> 0.0"},
                "kind": {"type": "string", "enum": ["AdamW", "SGD"], "default": "AdamW",
                         "x-tao-option-weights": [0.7, 0.3]},
            }},
        }},
    },
}


def test_mini_schema_space_bounds_log_scale_and_dependencies() -> None:
    space = build_space("rtdetr", schema=MINI_SCHEMA)
    d = space.params
    assert "dataset.workers" not in d  # cannot change the model
    lr = d["train.optim.lr"].distribution
    assert isinstance(lr, FloatDistribution) and lr.log
    assert (lr.low, lr.high) == (pytest.approx(1e-6), pytest.approx(1e-2))
    assert d["train.optim.kind"].distribution == CategoricalDistribution(["AdamW", "SGD"])
    assert d["train.ema"].distribution == CategoricalDistribution([False, True])
    q = d["model.queries"].distribution
    assert isinstance(q, IntDistribution) and (q.low, q.high) == (1, 1200) and q.log  # open bound: from default
    m = d["train.momentum"].distribution
    assert not m.log and 0.0 < m.low < 0.01 and m.high == 1.0  # exclusive minimum respected
    assert space.overrides({"model.queries": 50, "model.select": 400})["model.select"] == 50


def test_math_conditions_multiples_and_powers() -> None:
    space = build_space("rtdetr", ["model.width=10:70", "model.heads=2:20"], schema=MINI_SCHEMA)
    assert space.params["model.width"].distribution == IntDistribution(16, 64, step=8)
    assert space.params["model.heads"].distribution == CategoricalDistribution([2, 4, 8, 16])


@pytest.mark.parametrize("model", MODELS)
def test_real_schemas_give_finite_spaces_within_schema_bounds(model: str) -> None:
    skill = load_skill(model)
    space = build_space(skill)
    assert "train.optim.lr" in space.params and space.params["train.optim.lr"].log
    for key, param in space.params.items():
        assert key.split(".")[0] in skill.action("train").sections, key
        d = param.distribution
        if isinstance(d, (FloatDistribution, IntDistribution)):
            assert d.low < d.high and d.high < 1e9
            prop = schema_property(__import__("taoflow.automl.space", fromlist=["x"]).load_train_schema(skill), key)
            if isinstance(prop.get("maximum"), (int, float)):
                assert d.high <= prop["maximum"]
            if isinstance(prop.get("minimum"), (int, float)):
                assert d.low >= prop["minimum"]
        if key.endswith("weight_decay"):
            assert param.log


def test_rtdetr_default_list_leaves_out_distill_and_workers() -> None:
    keys = set(build_space("rtdetr").params)
    assert not any(k.startswith("distill.") for k in keys)
    assert "dataset.workers" not in keys
    assert {"train.optim.lr", "train.optim.lr_backbone", "train.optim.weight_decay", "dataset.batch_size"} <= keys


def test_user_ranges_and_lists_take_precedence() -> None:
    space = build_space("rtdetr", ["train.optim.lr=1e-5:1e-3:log", "train.optim.optimizer=AdamW,SGD",
                                   "dataset.batch_size=2,4,8", "model.dec_layers=3:9"])
    lr = space.params["train.optim.lr"]
    assert lr.source == "user" and lr.distribution == FloatDistribution(1e-5, 1e-3, log=True)
    assert space.params["train.optim.optimizer"].distribution == CategoricalDistribution(["AdamW", "SGD"])
    assert space.params["dataset.batch_size"].distribution == CategoricalDistribution([2, 4, 8])
    assert space.params["model.dec_layers"].distribution == IntDistribution(3, 9)
    assert space.params["train.optim.momentum"].source == "schema"


def test_skill_parameters_replace_the_schema_list() -> None:
    skill = load_skill("rtdetr")
    custom = skill.model_copy(update={"automl": skill.automl.model_copy(update={"parameters": ["train.optim.lr"]})})
    assert list(build_space(custom).params) == ["train.optim.lr"]
    broken = skill.model_copy(update={"automl": skill.automl.model_copy(update={"parameters": ["train.nope"]})})
    with pytest.raises(UserError, match=r"train\.nope"):
        build_space(broken)


@pytest.mark.parametrize(("param", "message"), [
    ("train.optim.lr=1e-3:1e-5", "LOW must be below HIGH"),
    ("train.optim.lr=1e-3:1e-3", "LOW must be below HIGH"),
    ("train.optim.lr=0:1e-3:log", "log range needs LOW > 0"),
    ("train.optim.lr=-1:1e-3", "outside the schema's allowed range"),
    ("train.optim.lr=1e-5:2", "outside the schema's allowed range (0, 1]"),
    ("train.optim.lr=1e-5:1e-3:ln", "can only be 'log'"),
    ("train.optim.lr=a:b", "is not a number"),
    ("train.optim.lr=1:2:3:4", "LOW:HIGH or LOW:HIGH:log"),
    ("train.optim.not_a_key=1:2", "not a key of the rtdetr train spec"),
    ("train.optim.optimizer=1:2", "categorical parameter"),
    ("train.optim.optimizer=Adam,SGD", "'Adam' is not one of"),
    ("dataset.batch_size=1.5:4", "is an integer"),
    ("dataset.batch_size=2,x", "'x' is not a number"),
    ("train.optim.lr", "use KEY=LOW:HIGH[:log] or KEY=a,b,c"),
])
def test_invalid_params_are_user_errors_naming_the_key(param: str, message: str) -> None:
    with pytest.raises(UserError) as err:
        build_space("rtdetr", [param])
    assert message in str(err.value)
    assert param.split("=")[0] in str(err.value)


def test_disabled_parameters_are_refused_and_all_problems_reported_at_once() -> None:
    with pytest.raises(UserError) as err:
        build_space("rtdetr", schema=MINI_SCHEMA, user_params=["train.seed=1:5", "train.optim.lr=1:0"])
    assert "TAO disables AutoML" in str(err.value) and "LOW must be below HIGH" in str(err.value)
    assert len(err.value.problems) == 2


def test_grid_is_finite_and_covers_the_ends() -> None:
    space = build_space("rtdetr", ["train.optim.lr=1e-5:1e-3:log"], schema=None)
    grid = space.grid(3)
    assert grid["train.optim.lr"] == [1e-5, 1e-4, 1e-3]
    assert grid["dataset.batch_size"][0] == 1 and grid["dataset.batch_size"][-1] == 16


def test_settings_rungs_and_trial_overrides() -> None:
    skill = load_skill("nvpanoptix3d")
    settings = settings_for(skill, max_epochs=27)
    assert (settings.metric, settings.direction) == ("train_loss", "minimize")
    assert settings.pruner == "asha" and settings.rung_check  # the rung check guards a misleading loss
    assert settings_for(skill, pruner="hyperband").pruner == "hyperband"
    assert settings_for(load_skill("rtdetr")).pruner == "asha"
    assert rung_epochs(settings) == [3, 6, 12, 24, 27]  # a grace period of max_epochs // 9, halving
    assert rung_epochs(settings_for(skill, max_epochs=9)) == [1, 2, 4, 8, 9]
    assert rung_epochs(settings_for(skill, max_epochs=27, min_resource=1, reduction_factor=3)) == [1, 3, 9, 27]
    assert rung_epochs(SweepSettings("m", "x", "maximize", max_epochs=20, min_resource=2)) == [2, 4, 8, 16, 20]
    space = build_space(skill)
    over = trial_overrides(skill, space, {"train.optim.lr": 3e-4}, settings)
    assert over == {"train.optim.monitor_name": "train_loss", "train.optim.lr": 3e-4, "train.num_epochs": 27,
                    "train.checkpoint_interval": 3, "train.validation_interval": 3}
    over = trial_overrides(skill, space, {}, settings_for(skill, max_epochs=18, min_resource=2, reduction_factor=3))
    assert over["train.checkpoint_interval"] == 2
    with pytest.raises(UserError) as err:
        settings_for(skill, sampler="cmaes", pruner="median", max_concurrent=0)
    assert len(err.value.problems) == 3


def test_study_name_ignores_the_budget_and_storage_sits_beside_the_store(tmp_path) -> None:
    skill = load_skill("sparse4d")
    space = build_space(skill)
    a = study_name(settings_for(skill, max_trials=8, max_concurrent=2), space, {"data": {"train": "/d"}})
    b = study_name(settings_for(skill, max_trials=30, max_concurrent=4), space, {"data": {"train": "/d"}})
    c = study_name(settings_for(skill, seed=5), space, {"data": {"train": "/d"}})
    assert a == b != c and a.startswith("sparse4d-")
    url = default_storage(tmp_path / "store", "sparse4d", a)
    assert url == f"sqlite:///{tmp_path / 'store' / 'automl' / 'sparse4d' / (a + '.db')}"
    with pytest.raises(UserError, match="--storage"):
        default_storage("s3://bucket/root", "sparse4d", a)


def _suggestions(settings: SweepSettings, url: str, name: str, n: int) -> list[dict]:
    space = build_space(settings.model)
    study = open_study(settings, space, storage=url, name=name)
    out = []
    for _ in range(n):
        trial = study.ask(dict(sorted(space.distributions().items())))
        value = surfaces.kpis(settings.model, space.overrides(trial.params), 8, 9, 0)[settings.metric]
        study.tell(trial, value)
        out.append(trial.params)
    return out


@pytest.mark.parametrize("sampler", ["tpe", "gp", "random"])
def test_same_seed_same_suggestions_on_sqlite(tmp_path, sampler: str) -> None:
    settings = settings_for(load_skill("centerpose"), sampler=sampler, seed=7, max_trials=16)
    first = _suggestions(settings, f"sqlite:///{tmp_path / 'a.db'}", "s", 8)
    again = _suggestions(settings, f"sqlite:///{tmp_path / 'b.db'}", "s", 8)
    other = _suggestions(settings_for(load_skill("centerpose"), sampler=sampler, seed=8, max_trials=16),
                         f"sqlite:///{tmp_path / 'c.db'}", "s", 8)
    assert first == again
    assert first != other


def test_reattached_study_does_not_replay_its_first_suggestions(tmp_path) -> None:
    settings = settings_for(load_skill("centerpose"), seed=3, max_trials=16)
    url = f"sqlite:///{tmp_path / 'a.db'}"
    first = _suggestions(settings, url, "s", 3)
    later = _suggestions(settings, url, "s", 3)
    assert not any(p in first for p in later)
    assert len(optuna.load_study(study_name="s", storage=url).trials) == 6


def test_gp_sampler_improves_on_its_startup(tmp_path) -> None:
    settings = settings_for(load_skill("nvpanoptix3d"), sampler="gp", seed=1, max_trials=8)  # 4 startup
    sampler = make_sampler(settings, build_space("nvpanoptix3d"))
    study = optuna.create_study(sampler=sampler, direction="minimize")
    space = build_space("nvpanoptix3d")
    for _ in range(16):
        trial = study.ask(space.distributions())
        study.tell(trial, surfaces.kpis("nvpanoptix3d", trial.params, 8, 9, 0)["train_loss"])
    startup = min(t.value for t in study.trials[:4])
    assert study.best_value < startup
