"""Sourcing before training: sketches of offered data, OT valuation against the validation set,
and a truthful, budget-feasible selection.

Typical committee flow::

    spec = SketchSpec(task_seed=seed, input_dim=d, num_classes=k, basis=...)
    result = run_sourcing(spec=spec, x_val=xv, y_val=yv, budget=budget, offers=revealed)
    result.winners, result.payments, result.digest()
"""

from marketplace.sourcing.mechanism import Selection, allocate, select, threshold
from marketplace.sourcing.ot_value import (
    OfferValue,
    Predictor,
    ScalingLaw,
    calibrate,
    class_costs,
    coalition_distance,
)
from marketplace.sourcing.procedure import Offer, OfferOutcome, SourcingResult, run_sourcing
from marketplace.sourcing.sketch import (
    Sketch,
    SketchSpec,
    build_sketch,
    discriminant_basis,
    parse_sketch,
)

__all__ = [
    "Offer",
    "OfferOutcome",
    "OfferValue",
    "Predictor",
    "ScalingLaw",
    "Selection",
    "Sketch",
    "SketchSpec",
    "SourcingResult",
    "allocate",
    "build_sketch",
    "calibrate",
    "class_costs",
    "coalition_distance",
    "discriminant_basis",
    "parse_sketch",
    "run_sourcing",
    "select",
    "threshold",
]
