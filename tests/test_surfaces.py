"""Response surfaces: reproducible, TAO's metric names, tuning pays, learning curves saturate."""

from __future__ import annotations

import importlib
import itertools
import math

import pytest

from taoflow.emulator.surfaces import tao as surfaces

METRICS = {
    "rtdetr": {"val_mAP", "val_mAP50", "train_loss"},
    "centerpose": {"val_3DIoU", "train_loss"},
    "action_recognition": {"val_acc", "val_loss", "train_loss"},
    "sparse4d": {"val_mAP", "train_loss"},
    "nvpanoptix3d": {"train_loss", "PRQ", "RSQ", "RRQ"},
}
MAIN = {"rtdetr": "val_mAP", "centerpose": "val_3DIoU", "action_recognition": "val_acc", "sparse4d": "val_mAP",
        "nvpanoptix3d": "PRQ"}


@pytest.mark.parametrize("model", sorted(METRICS))
def test_metric_names_are_taos(model: str) -> None:
    values = surfaces.kpis(model, {}, 3, 10, 1234)
    assert set(values) == METRICS[model] == set(surfaces.metric_names(model))
    assert all(isinstance(v, float) for v in values.values())


@pytest.mark.parametrize("model", sorted(METRICS))
def test_same_inputs_same_values_and_seed_changes_noise(model: str) -> None:
    params = {"train.optim.lr": 3e-4, "train.optim.weight_decay": 1e-4}
    assert surfaces.kpis(model, params, 5, 10, 7) == surfaces.kpis(model, dict(params), 5, 10, 7)
    assert surfaces.kpis(model, params, 5, 10, 7) != surfaces.kpis(model, params, 5, 10, 8)
    # The planned length does not change what an epoch reports (rungs == longer runs at that epoch).
    assert surfaces.kpis(model, params, 2, 3, 7) == surfaces.kpis(model, params, 2, 50, 7)


@pytest.mark.parametrize("model", sorted(METRICS))
def test_learning_curve_rises_and_saturates_losses_fall(model: str) -> None:
    curve = [surfaces.kpis(model, {}, e, 40, 1) for e in range(40)]
    main = [c[MAIN[model]] for c in curve]
    loss = [c["train_loss"] for c in curve]
    assert main[5] > main[0] and main[39] > main[5]
    assert loss[39] < loss[5] < loss[0]
    # Saturation: the last ten epochs gain less than a tenth of what the first ten gained.
    assert abs(main[39] - main[29]) < 0.1 * (main[9] - main[0])


@pytest.mark.parametrize("model", sorted(METRICS))
def test_tuning_beats_defaults_and_rates_are_log_sensitive(model: str) -> None:
    terms = surfaces._SURFACES[model].terms
    best = {t.key: t.optimum for t in terms}
    if model == "rtdetr":  # the interaction: best lr follows the batch size, lr_backbone follows lr
        best["train.optim.lr"] = 2.5e-4
        best["train.optim.lr_backbone"] = 2.5e-5
    tuned = surfaces.kpis(model, best, 29, 30, 1)[MAIN[model]]
    default = surfaces.kpis(model, {}, 29, 30, 1)[MAIN[model]]
    assert tuned > default * 1.05
    lr = best["train.optim.lr"]
    ten_x = surfaces.kpis(model, {**best, "train.optim.lr": lr * 10}, 29, 30, 1)[MAIN[model]]
    tenth = surfaces.kpis(model, {**best, "train.optim.lr": lr / 10}, 29, 30, 1)[MAIN[model]]
    assert ten_x < tuned * 0.9 and tenth < tuned * 0.9
    diverged = surfaces.kpis(model, {**best, "train.optim.lr": lr * 1000}, 29, 30, 1)
    assert diverged[MAIN[model]] < 0.3 * tuned


def test_high_lr_learns_faster_early_but_ends_lower() -> None:
    """Early epochs rank trials imperfectly, as in real multi-fidelity tuning."""
    fast = {"train.optim.lr": 4.5e-4 * 1.4}
    right = {"train.optim.lr": 4.5e-4}
    early = [surfaces.kpis("nvpanoptix3d", p, 8, 27, 1)["train_loss"] for p in (fast, right)]
    late = [surfaces.kpis("nvpanoptix3d", p, 26, 27, 1)["train_loss"] for p in (fast, right)]
    assert early[0] < early[1] and late[0] > late[1]


def test_strings_and_unknown_keys_are_tolerated() -> None:
    values = surfaces.kpis("rtdetr", {"train.optim.lr": "2e-4", "model.backbone": "resnet_50"}, 1, 5, 1)
    assert values["val_mAP"] > 0
    with pytest.raises(ValueError, match="no response surface"):
        surfaces.kpis("yolo", {}, 0, 1, 1)


@pytest.mark.parametrize("model", sorted(METRICS))
def test_defaults_are_tao_core_defaults(model: str) -> None:
    """Absent parameters take TAO Core 7.3.0's dataclass defaults (the surface must not drift from them)."""
    config = importlib.import_module(f"nvidia_tao_core.config.{model}.default_config").ExperimentConfig()
    for key, default in surfaces.defaults(model).items():
        node = config
        for part in key.split("."):
            node = getattr(node, part)
        assert float(node) == pytest.approx(default), key


# ------------------------------------------------------------------------------------------------ the family

def _family(name: str):
    from taoflow.emulator.surfaces.curves import FAMILY

    return FAMILY[name][3]


def _rtdetr(**values: float) -> dict:
    from taoflow.dotted import flatten
    from taoflow.skill import load_skill
    from taoflow.spec import load_template

    return {**flatten(load_template(load_skill("rtdetr"), "train")), **values}


@pytest.mark.parametrize("name", ["slow_starter", "plateau", "edge_optimum", "ridge", "two_optima", "noisy",
                                  "minimise"])
def test_family_is_reproducible_and_seeds_vary_it(name: str) -> None:
    fn = _family(name)
    params = _rtdetr()
    assert fn(params, 9, 3) == fn(dict(params), 9, 3)
    assert fn(params, 9, 3) != fn(params, 9, 4)
    assert all(math.isfinite(fn(params, e, 0)) for e in range(1, 40))


def test_slow_starters_trail_early_and_finish_best() -> None:
    fn = _family("slow_starter")

    def at(lr: float, epochs: int, seed: int) -> float:
        return fn(_rtdetr(**{"train.optim.lr": lr, "train.optim.lr_backbone": lr / 10}), epochs, seed)

    for seed in range(3):
        best = max((10 ** (-5 + i / 20) for i in range(61)), key=lambda lr: at(lr, 27, seed))
        fast = best * 10
        assert at(best, 6, seed) < at(fast, 6, seed) and at(best, 9, seed) < at(fast, 9, seed)
        assert at(best, 27, seed) > 1.2 * at(fast, 27, seed)


def test_plateaus_break_at_the_learning_rate_step_and_a_later_step_ends_higher() -> None:
    fn = _family("plateau")
    early, late = _rtdetr(**{"train.optim.lr_step_size": 600}), _rtdetr(**{"train.optim.lr_step_size": 2400})
    assert fn(early, 12, 0) > 1.05 * fn(late, 12, 0)  # `late` is still on its plateau (step at epoch 16)
    assert fn(late, 27, 0) > 1.05 * fn(early, 27, 0)
    assert fn(late, 15, 0) < 1.03 * fn(late, 10, 0) < fn(late, 20, 0)  # flat, then the jump


def test_the_edge_optimum_sits_at_the_low_end_of_the_searched_range() -> None:
    from taoflow.automl.space import build_space

    low, high = (build_space("centerpose").params["train.optim.lr"].distribution.__getattribute__(k)
                 for k in ("low", "high"))
    fn = _family("edge_optimum")
    for seed in range(5):
        grid = [low * (high / low) ** (i / 40) for i in range(41)]
        best = max(grid, key=lambda lr: fn({"train.optim.lr": lr, "train.optim.lr_decay": 0.3}, 27, seed))
        assert math.log10(best / low) < 0.5, (seed, best)


def test_the_ridge_is_narrow_across_and_wide_along() -> None:
    fn = _family("ridge")
    grid = [(10 ** (-6 + i / 10), 10 ** (-6 + j / 10)) for i in range(41) for j in range(41)]
    lr, wd = max(grid, key=lambda p: fn(_rtdetr(**{"train.optim.lr": p[0], "train.optim.weight_decay": p[1]}), 27, 0))

    def at(d_lr: float, d_wd: float) -> float:
        return fn(_rtdetr(**{"train.optim.lr": lr * 10**d_lr, "train.optim.weight_decay": wd * 10**d_wd}), 27, 0)

    top = at(0, 0)
    assert at(0.3, 0.3) < 0.75 * top  # 0.3 decades across the band
    assert at(0.3, -0.3) > 0.9 * top  # 0.3 decades along it (within the 1–2 % noise of the family)


def test_two_optima_are_two_separate_peaks() -> None:
    fn = _family("two_optima")
    grid = {(i, j): fn({"train.optim.lr": 10 ** (-5 + i / 10), "model.dropout_ratio": j / 20}, 27, 0)
            for i in range(41) for j in range(21)}
    peaks = [p for p, v in grid.items()
             if all(v >= grid.get((p[0] + a, p[1] + b), -1.0) for a in (-2, 0, 2) for b in (-2, 0, 2))
             and v > 0.7]
    lrs = sorted({round(-5 + i / 10, 1) for i, _ in peaks})
    assert lrs[-1] - lrs[0] > 1.0, peaks  # two peaks more than a decade apart


def test_the_noisy_surface_moves_about_two_percent_per_epoch() -> None:
    fn = _family("noisy")
    values = [fn({"train.optim.lr": 1.2e-4}, e, 0) for e in range(40, 140)]
    steps = [abs(b / a - 1) for a, b in itertools.pairwise(values)]
    assert 0.01 < sum(steps) / len(steps) < 0.04


def test_the_minimised_loss_falls_faster_at_higher_rates_and_ends_higher() -> None:
    from taoflow.emulator.surfaces.curves import FAMILY

    assert FAMILY["minimise"][2] == "minimize"
    fn = _family("minimise")
    right, fast = {"train.optim.lr": 1.5e-4}, {"train.optim.lr": 6e-4}
    assert fn(fast, 3, 0) < fn(right, 3, 0)
    assert fn(fast, 27, 0) > fn(right, 27, 0)
