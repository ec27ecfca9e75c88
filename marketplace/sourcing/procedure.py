"""The committee's sourcing procedure, as one pure function every oracle runs alike.

Inputs are the task's sketch spec, the committee's validation rows, the budget and the revealed
offers (ask, declared sample count, sketch bytes already checked against the committed digest).
Bad offers are rejected with their reason and count as non-selected; the others are valued
(:class:`~marketplace.sourcing.ot_value.Predictor`) and the mechanism picks winners and payments.
Every number that decides money is an integer, so honest oracles on the same software stack
agree to the bit (the values are rounded floats: see docs/design.md on other CPUs and BLAS).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from marketplace.errors import InvalidSketchError
from marketplace.sourcing.mechanism import Selection, select
from marketplace.sourcing.ot_value import OfferValue, Predictor, calibrate
from marketplace.sourcing.sketch import SketchSpec, build_sketch, parse_sketch


@dataclass(frozen=True)
class Offer:
    """A revealed offer: who, what it asks (wei), how many rows, and its sketch's bytes.

    ``problem`` says why the sketch could not be obtained (unreachable, not sealed to us, wrong
    digest); such an offer is rejected with that reason.
    """

    owner: str
    ask: int
    samples: int
    sketch: bytes
    problem: str | None = None


@dataclass(frozen=True)
class OfferOutcome:
    """One offer's fate: its valuation (valid offers), or the reason it was rejected."""

    owner: str
    ask: int
    value: OfferValue | None
    rejected: str | None
    won: bool
    payment: int


@dataclass(frozen=True)
class SourcingResult:
    """Every offer's outcome, in the canonical order (owner address, case-insensitive)."""

    outcomes: tuple[OfferOutcome, ...]
    branch: str
    budget: int

    @property
    def winners(self) -> tuple[str, ...]:
        """Winning owners, canonical order."""
        return tuple(o.owner for o in self.outcomes if o.won)

    @property
    def payments(self) -> tuple[int, ...]:
        """Winners' payments (wei), same order as :attr:`winners`."""
        return tuple(o.payment for o in self.outcomes if o.won)

    def digest(self) -> str:
        """Hex sha256 of the canonical JSON of (winners, payments): what oracles commit to."""
        doc = {"winners": [w.lower() for w in self.winners], "payments": list(self.payments)}
        return hashlib.sha256(json.dumps(doc, separators=(",", ":")).encode()).hexdigest()


def run_sourcing(
    *,
    spec: SketchSpec,
    x_val: np.ndarray,
    y_val: np.ndarray,
    budget: int,
    offers: Sequence[Offer],
) -> SourcingResult:
    """Validate, value and select ``offers`` against the validation set (deterministic)."""
    ordered = sorted(offers, key=lambda o: o.owner.lower())
    sketches = []
    reasons: dict[str, str] = {}
    for offer in ordered:
        try:
            if offer.problem is not None:
                raise InvalidSketchError(offer.problem)
            if offer.ask < 0 or offer.samples <= 0:
                raise InvalidSketchError("ask must be >= 0 and samples > 0")
            sketches.append(parse_sketch(offer.sketch, spec, declared_samples=offer.samples))
        except InvalidSketchError as exc:
            reasons[offer.owner] = str(exc)
    valid = [o for o in ordered if o.owner not in reasons]
    values: list[OfferValue] = []
    selection = Selection((), (), "none")
    if valid:
        law = calibrate(x_val, y_val, spec)
        reference = build_sketch(x_val, y_val, spec, min_class_count=1)
        values = Predictor(sketches, reference, law).values(seed=spec.task_seed)
        selection = select([max(0, v.value_ppm) for v in values], [o.ask for o in valid], budget)
    by_owner = {o.owner: (i, values[i]) for i, o in enumerate(valid)}
    outcomes = []
    for offer in ordered:
        if offer.owner in reasons:
            outcomes.append(
                OfferOutcome(offer.owner, offer.ask, None, reasons[offer.owner], False, 0)
            )
            continue
        i, value = by_owner[offer.owner]
        won = i in selection.winners
        outcomes.append(
            OfferOutcome(offer.owner, offer.ask, value, None, won, selection.payment_of(i))
        )
    return SourcingResult(tuple(outcomes), selection.branch, budget)
