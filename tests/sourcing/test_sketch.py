"""Sketches: what they hold, that they round-trip, and that bad ones are refused with a reason."""

from __future__ import annotations

import json

import numpy as np
import pytest

from marketplace.errors import ConfigError, InvalidSketchError
from marketplace.fl.data import DataSplits
from marketplace.sourcing import SketchSpec, build_sketch, discriminant_basis, parse_sketch


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


@pytest.mark.parametrize(
    "blob",
    [b"", b"not json", b"[1,2]", b"\xff\xfe", b"{" * 10, b"[" * 200_000, b'{"a":' * 100_000],
)
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


def _leaky_basis(d: int, delta: float) -> tuple[tuple[int, ...], ...]:
    """A crafted basis: ``w`` and ``w + delta * e_j`` (near-parallel for a small ``delta``)."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal(d)
    w /= np.linalg.norm(w)
    rows = [w] + [w + delta * np.eye(d)[j] for j in range(d - 2)]
    return tuple(tuple(int(v) for v in np.rint(r * 1e6)) for r in rows)


def test_a_crafted_basis_would_leak_rows_and_owners_refuse_it(
    digits: DataSplits, spec: SketchSpec
) -> None:
    from marketplace.sourcing.sketch import check_basis

    x, y = digits.train.x[:300], digits.train.y[:300]
    d, delta = x.shape[1], 0.01
    leaky = SketchSpec(task_seed=0, input_dim=d, num_classes=10, num_directions=d - 1,
                       basis=_leaky_basis(d, delta))  # fmt: skip
    # The threat is real: differences of quantiles at the same level spell out a real row.
    sketch = build_sketch(x, y, leaky)
    norms = np.linalg.norm(np.array(leaky.basis, dtype=np.float64) / 1e6, axis=1)
    recovered = columns = 0
    for c in range(10):
        q = sketch.quantile_values(c)
        if q is None:
            continue
        p = q * norms[:, None]
        features = (p[1:] - p[:1]) / delta  # (d - 2, Q): features 0..d-3 of the row at each level
        err = np.abs(x[y == c][:, : d - 2, None] - features[None]).max(axis=1).min(axis=0)
        recovered += int((err < 0.1).sum())
        columns += q.shape[1]
    assert recovered >= columns // 3
    with pytest.raises(ConfigError, match="near-parallel"):
        check_basis(leaky)
    check_basis(spec)  # the discriminant basis of the validation set passes
    v = digits.validation  # and so does one completed with 54 random directions
    full = discriminant_basis(v.x, v.y, num_classes=10, num_directions=63, seed=5)
    check_basis(
        SketchSpec(task_seed=5, input_dim=64, num_classes=10, num_directions=63, basis=full)
    )


def test_an_owner_does_not_sketch_for_a_crafted_basis(digits: DataSplits, tmp_path) -> None:
    from marketplace.protocol.sourcing import prepare_offer
    from marketplace.storage.embedded import EmbeddedStore

    d = digits.train.x.shape[1]
    leaky = SketchSpec(task_seed=0, input_dim=d, num_classes=10, num_directions=d - 1,
                       basis=_leaky_basis(d, 0.01))  # fmt: skip
    store = EmbeddedStore(tmp_path / "store")
    with pytest.raises(ConfigError, match="do not offer"):
        prepare_offer(store=store, spec=leaky, x=digits.train.x, y=digits.train.y, ask=1,
                      request_id=1, task_id=1, chain_id=1, owner="0x" + "11" * 20,
                      committee_keys={})  # fmt: skip


def test_a_request_document_nested_too_deep_is_malformed_not_a_crash() -> None:
    from marketplace.errors import SourcingError
    from marketplace.protocol.sourcing import RequestDocument

    with pytest.raises(SourcingError, match="malformed"):
        RequestDocument.from_json(b"[" * 200_000)
