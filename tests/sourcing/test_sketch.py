"""Sketches: what they hold, that they round-trip, and that bad ones are refused with a reason."""

from __future__ import annotations

import json

import numpy as np
import pytest

from marketplace.errors import ConfigError, InvalidSketchError
from marketplace.fl.data import DataSplits
from marketplace.sourcing import SketchSpec, build_sketch, parse_sketch


def _doc(digits: DataSplits, spec: SketchSpec) -> dict:
    return build_sketch(digits.train.x, digits.train.y, spec).to_dict()


def test_sketch_round_trips_canonically(digits: DataSplits, spec: SketchSpec) -> None:
    sketch = build_sketch(digits.train.x, digits.train.y, spec)
    again = parse_sketch(sketch.to_json(), spec, declared_samples=len(digits.train))
    assert again.to_json() == sketch.to_json()
    assert again.counts == tuple(np.bincount(digits.train.y, minlength=10))
    assert sketch.digest() == build_sketch(digits.train.x, digits.train.y, spec).digest()


def test_sketch_holds_no_row(digits: DataSplits, spec: SketchSpec) -> None:
    x, y = digits.train.x[:200], digits.train.y[:200]
    sketch = build_sketch(x, y, spec)
    proj = x.astype(np.float64) @ spec.directions.T
    for c in range(10):
        q = sketch.quantile_values(c)
        if q is None:
            continue
        assert q.shape == (spec.num_directions, spec.num_quantiles)
        # every published number is one row's projection on one direction (an order statistic)
        rows = proj[y == c]
        for j in range(spec.num_directions):
            assert np.isin(np.rint(q[j] * 1e6), np.rint(rows[:, j] * 1e6)).all()
    # fewer directions than features: the projection of a row cannot be inverted
    assert spec.num_directions < spec.input_dim


def test_small_class_publishes_count_only(digits: DataSplits, spec: SketchSpec) -> None:
    x, y = digits.train.x, digits.train.y
    keep = (y != 3) | (np.cumsum(y == 3) <= 2)  # two rows of class 3
    sketch = build_sketch(x[keep], y[keep], spec)
    assert sketch.counts[3] == 2 and sketch.quantiles[3] is None


def test_spec_refuses_invertible_projection() -> None:
    with pytest.raises(ConfigError, match="cannot be inverted"):
        SketchSpec(task_seed=0, input_dim=8, num_classes=2, num_directions=8)


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.update(counts=d["counts"][:-1]), "10 classes"),
        (lambda d: d.update(spec="00" * 32), "another task spec"),
        (lambda d: d.update(num_samples=d["num_samples"] + 1), "num_samples"),
        (lambda d: d["counts"].__setitem__(0, -1), "non-negative"),
        (lambda d: d["quantiles"][0][0].reverse(), "non-decreasing"),
        (lambda d: d["quantiles"][0].pop(), "array"),
        (lambda d: d["quantiles"][0][0].__setitem__(0, 1.5), "integers"),
        (lambda d: d.update(version=2), "version"),
        (lambda d: d.update(extra=1), "keys"),
    ],
)
def test_malformed_sketch_is_rejected_with_reason(
    digits: DataSplits, spec: SketchSpec, mutate, reason: str
) -> None:
    doc = _doc(digits, spec)
    mutate(doc)
    declared = sum(c for c in doc["counts"] if isinstance(c, int))
    if reason == "num_samples":
        declared = doc["num_samples"] - 1
    with pytest.raises(InvalidSketchError, match=reason):
        parse_sketch(json.dumps(doc), spec, declared_samples=declared)


def test_sample_count_must_match_offer(digits: DataSplits, spec: SketchSpec) -> None:
    blob = build_sketch(digits.train.x, digits.train.y, spec).to_json()
    with pytest.raises(InvalidSketchError, match="offer declares"):
        parse_sketch(blob, spec, declared_samples=len(digits.train) + 10)


@pytest.mark.parametrize("blob", [b"", b"not json", b"[1,2]", b"\xff\xfe", b"{" * 10])
def test_garbage_is_rejected_not_crashing(spec: SketchSpec, blob: bytes) -> None:
    with pytest.raises(InvalidSketchError):
        parse_sketch(blob, spec, declared_samples=1)


def test_quantiles_published_for_a_tiny_class_are_refused(
    digits: DataSplits, spec: SketchSpec
) -> None:
    doc = _doc(digits, spec)
    doc["counts"][0] = 1
    doc["num_samples"] = sum(doc["counts"])
    with pytest.raises(InvalidSketchError, match="must be null"):
        parse_sketch(json.dumps(doc), spec, declared_samples=doc["num_samples"])
