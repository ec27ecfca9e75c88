"""Membership inference: chance on random data, high on memorized records."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from marketplace.fl.data import Dataset
from marketplace.fl.models import ModelSpec, build_model
from marketplace.fl.train import TrainConfig, train_local
from marketplace.fl.weights import apply_delta, get_weights
from marketplace.unlearning.mia import audit, loss_threshold_auc

SPEC = ModelSpec(arch="mlp", input_dim=16, hidden=(64,), num_classes=4, seed=0)


def _random(n: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset("random", rng.normal(size=(n, 16)), rng.integers(0, 4, size=n), 4)


def _train(data: Dataset, epochs: int):  # type: ignore[no-untyped-def]
    start = get_weights(build_model(SPEC))
    config = replace(TrainConfig(lr=0.05, batch_size=16, optimizer="adam"), epochs=epochs)
    return apply_delta(start, train_local(SPEC, start, data, config).delta)


def test_auc_is_chance_when_neither_set_was_trained_on() -> None:
    members, nonmembers = _random(400, 1), _random(400, 2)
    shadow_in, shadow_out = _random(200, 3), _random(200, 4)
    report = audit(
        SPEC, get_weights(build_model(SPEC)), members, nonmembers,
        shadow_weights=_train(shadow_in, 30), shadow_in=shadow_in, shadow_out=shadow_out,
    )  # fmt: skip
    assert abs(report.loss_auc - 0.5) < 0.07
    assert abs(report.shadow_auc - 0.5) < 0.07


def test_auc_is_high_on_memorized_records() -> None:
    members, nonmembers = _random(200, 1), _random(200, 2)
    shadow_in, shadow_out = _random(200, 3), _random(200, 4)
    target = _train(members, 60)
    assert loss_threshold_auc(SPEC, target, members, nonmembers) > 0.9
    report = audit(
        SPEC, target, members, nonmembers,
        shadow_weights=_train(shadow_in, 60), shadow_in=shadow_in, shadow_out=shadow_out,
    )  # fmt: skip
    assert report.shadow_auc > 0.9
    assert report.worst > 0.9
