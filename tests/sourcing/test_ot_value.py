"""OT valuation: noisy, shifted and skewed data sit farther from the validation set and are
valued lower; predictions are deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from marketplace.fl.data import DataSplits
from marketplace.fl.partition import add_label_noise
from marketplace.sourcing import (
    Predictor,
    SketchSpec,
    build_sketch,
    calibrate,
    coalition_distance,
)
from marketplace.sourcing.ot_value import OfferProfile


def _distance(x, y, spec: SketchSpec, reference) -> float:
    profile = OfferProfile.of(build_sketch(x, y, spec), reference)
    return coalition_distance([profile], reference)


@pytest.fixture(scope="module")
def reference(digits: DataSplits, spec: SketchSpec):
    return build_sketch(digits.validation.x, digits.validation.y, spec, min_class_count=1)


def test_distance_grows_with_label_noise(digits: DataSplits, spec: SketchSpec, reference) -> None:
    x, y = digits.train.x[:400], digits.train.y[:400]
    rows = np.arange(400)
    dists = [
        _distance(x, add_label_noise(y, rows, fraction=f, num_classes=10, seed=1), spec, reference)
        for f in (0.0, 0.3, 0.6)
    ]
    assert dists[0] < dists[1] < dists[2]


def test_distance_grows_with_feature_shift(digits: DataSplits, spec: SketchSpec, reference) -> None:
    x, y = digits.train.x[:400], digits.train.y[:400]
    direction = np.random.default_rng(0).standard_normal(64)
    direction /= np.linalg.norm(direction)
    dists = [_distance(x + s * direction, y, spec, reference) for s in (0.0, 2.0, 4.0)]
    assert dists[0] < dists[1] < dists[2]


def test_distance_grows_with_label_skew(digits: DataSplits, spec: SketchSpec, reference) -> None:
    x, y = digits.train.x[:600], digits.train.y[:600]
    balanced = _distance(x[:300], y[:300], spec, reference)
    keep = y < 4
    skewed = _distance(x[keep][:300], y[keep][:300], spec, reference)
    assert balanced < skewed


def test_noisy_offer_is_valued_below_its_clean_twin(
    digits: DataSplits, spec: SketchSpec, reference
) -> None:
    train = digits.train
    halves = np.array_split(np.arange(len(train)), 4)
    y = add_label_noise(train.y, halves[3], fraction=0.4, num_classes=10, seed=2)
    sketches = [build_sketch(train.x[h], y[h], spec) for h in halves]
    law = calibrate(digits.validation.x, digits.validation.y, spec)
    values = Predictor(sketches, reference, law).values()
    assert values[3].value_ppm < min(v.value_ppm for v in values[:3])
    assert values[3].distance_ppm > max(v.distance_ppm for v in values[:3])
    # deterministic: a fresh predictor gives the same integers
    again = Predictor(
        sketches, reference, calibrate(digits.validation.x, digits.validation.y, spec)
    )
    assert again.values() == values


def test_scaling_law_rewards_more_data(digits: DataSplits, spec: SketchSpec) -> None:
    law = calibrate(digits.validation.x, digits.validation.y, spec)
    assert law.predict(1000, 0.5) >= law.predict(100, 0.5)
    assert law.predict(100, 0.5) >= law.predict(100, 1.5)
