"""Exact, deterministic conversions between floats, fixed-point utilities and parts per million.

Two fixed-point grids keep every number that decides money an integer:

* **utility units**: each utility evaluation (an accuracy, a negative loss) is converted exactly
  from its IEEE double to a :class:`~fractions.Fraction` and rounded to an integer multiple of
  ``10**-12`` (:data:`UTILITY_SCALE`). All Shapley arithmetic after that is integer or exact
  rational arithmetic, so it does not depend on summation order, SIMD width or the platform.
* **ppm**: a value in utility units is reported as an integer number of parts per million of one
  utility unit (0.0123 accuracy points -> 12300 ppm).

Every rounding is *round half to even* on an exact fraction (Python's ``round`` of a ``Fraction``),
so two oracles given the same utilities produce the same integers, bit for bit.
"""

from __future__ import annotations

import math
from fractions import Fraction

from marketplace.errors import ValuationError

UTILITY_SCALE = 10**12
"""Integer grid of a utility value: 1 unit = 1e-12 of the metric (accuracy, negative loss)."""

PPM = 10**6


def utility_to_units(value: float) -> int:
    """A utility value as an integer number of ``1e-12`` steps (round half to even, exact).

    Raises
    ------
    ValuationError
        The value is NaN or infinite (the model diverged: flag the update instead).
    """
    if not math.isfinite(value):
        raise ValuationError(
            f"utility evaluated to {value!r}: a coalition model produced NaN/Inf; "
            "reject or flag the offending update before valuation"
        )
    return round(Fraction(value) * UTILITY_SCALE)


def units_fraction_to_ppm(units: Fraction | int) -> int:
    """A value in utility units (``1e-12`` steps) as integer ppm, round half to even."""
    return round(Fraction(units) * PPM / UTILITY_SCALE)


def fraction_to_ppm(value: Fraction | int) -> int:
    """An exact value (in utility units of 1, e.g. accuracy) as integer ppm, round half to even."""
    return round(Fraction(value) * PPM)


def share_ppm(part: int, total: int) -> int:
    """``part / total`` in ppm, round half to even; 0 when ``total`` is 0."""
    if total == 0:
        return 0
    return round(Fraction(part * PPM, total))
