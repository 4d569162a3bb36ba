"""Response surfaces: reproducible, TAO's metric names, tuning pays, learning curves saturate."""

from __future__ import annotations

import importlib

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
