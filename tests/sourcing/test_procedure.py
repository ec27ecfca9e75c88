"""The committee's procedure: bad offers are rejected with their reason and never crash it, the
outcome is deterministic, and payments stay within the budget."""

from __future__ import annotations

import numpy as np

from marketplace.fl.data import DataSplits
from marketplace.fl.partition import add_label_noise
from marketplace.sourcing import Offer, SketchSpec, build_sketch, run_sourcing

E18 = 10**18


def _offers(digits: DataSplits, spec: SketchSpec) -> list[Offer]:
    train = digits.train
    parts = np.array_split(np.random.default_rng(0).permutation(len(train)), 4)
    y = add_label_noise(train.y, parts[3], fraction=0.5, num_classes=10, seed=1)
    offers = [
        Offer(f"0x{i + 1:040x}", ask, len(p), build_sketch(train.x[p], y[p], spec).to_json())
        for i, (p, ask) in enumerate(
            zip(parts, (40 * E18, 50 * E18, 45 * E18, 30 * E18), strict=True)
        )
    ]
    good = offers[0].sketch
    return [
        *offers,
        Offer("0x" + "a" * 40, E18, 5, b"junk"),  # not JSON
        Offer("0x" + "b" * 40, E18, len(parts[0]) + 1, good),  # count disagrees with the sketch
        Offer("0x" + "c" * 40, E18, 10, b"", problem="sketch could not be read: timeout"),
    ]


def test_bad_offers_are_rejected_with_reasons(digits: DataSplits, spec: SketchSpec) -> None:
    result = run_sourcing(
        spec=spec, x_val=digits.validation.x, y_val=digits.validation.y,
        budget=120 * E18, offers=_offers(digits, spec),
    )  # fmt: skip
    by_owner = {o.owner: o for o in result.outcomes}
    assert "not JSON" in by_owner["0x" + "a" * 40].rejected
    assert "offer declares" in by_owner["0x" + "b" * 40].rejected
    assert "timeout" in by_owner["0x" + "c" * 40].rejected
    assert not any(o.won for o in result.outcomes if o.rejected)
    assert sum(result.payments) <= 120 * E18
    noisy = by_owner[f"0x{4:040x}"]
    assert noisy.value.value_ppm < min(by_owner[f"0x{i:040x}"].value.value_ppm for i in (1, 2, 3))
    for o in result.outcomes:
        if o.won:
            assert o.payment >= o.ask  # a truthful winner never loses money


def test_the_outcome_does_not_depend_on_offer_order(digits: DataSplits, spec: SketchSpec) -> None:
    offers = _offers(digits, spec)
    kw = {"spec": spec, "x_val": digits.validation.x, "y_val": digits.validation.y}
    a = run_sourcing(budget=120 * E18, offers=offers, **kw)
    b = run_sourcing(budget=120 * E18, offers=list(reversed(offers)), **kw)
    assert a.digest() == b.digest() and a.outcomes == b.outcomes
