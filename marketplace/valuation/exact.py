"""Exact Shapley values: every coalition evaluated once, marginals weighted by coalition size.

``phi_i = sum over S not containing i of |S|! (n-|S|-1)! / n! * (v(S u {i}) - v(S))``.

Each of the ``2**n`` coalitions is evaluated exactly once and reused by every player (and so by
every permutation through it). The sum runs on integer utility units: marginal contributions are
grouped by coalition size in int64 (or Python ints when they could overflow), then multiplied by
the integer weights ``|S|! (n-|S|-1)!`` and divided once by ``n!``, so the result is an exact
rational.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from math import factorial

import numpy as np

from marketplace.errors import ValuationError
from marketplace.valuation.base import Seed, ShapleyResult, units_to_fraction
from marketplace.valuation.utility import CoalitionValues, Utility

log = logging.getLogger(__name__)


class ExactShapley:
    """Exact Shapley values over all ``2**n`` coalitions.

    Parameters
    ----------
    max_players : int
        Refuse games larger than this (default 12: 4,096 coalitions). Raise it deliberately for a
        one-time reference (n=16 costs 65,536 evaluations).
    """

    method = "exact"

    def __init__(self, *, max_players: int = 12) -> None:
        self.max_players = max_players

    def params(self) -> dict[str, object]:
        return {}

    def estimate(self, utility: Utility, *, seed: Seed = 0) -> ShapleyResult:
        """Exact values; ``seed`` is ignored (nothing is sampled)."""
        del seed
        n = int(utility.n)
        if n > self.max_players:
            raise ValuationError(
                f"exact Shapley over n={n} players needs {2**n} evaluations, above max_players="
                f"{self.max_players}: use GTGShapley, or raise max_players for a one-time reference"
            )
        cv = CoalitionValues(utility)
        u_list = cv.values(range(1 << n))  # ordered by bitmask: deterministic
        values = _exact_from_table(n, u_list)
        log.debug("exact Shapley: n=%d, %d evaluations", n, cv.evaluations)
        return ShapleyResult(
            values=tuple(units_to_fraction(v) for v in values),
            evaluations=cv.evaluations,
            method=self.method,
            params=self.params(),
        )


def _exact_from_table(n: int, u_list: list[int]) -> list[Fraction]:
    """Exact Shapley values (in utility units) from the table of all coalition utilities."""
    masks = np.arange(1 << n, dtype=np.int64)
    sizes = np.bitwise_count(masks).astype(np.int64)
    bound = max((abs(x) for x in u_list), default=0)
    # Group sums are at most 2 * bound * C(n-1, s) < 2 * bound * 2**n in magnitude.
    fits_int64 = bound < (1 << 61) >> n
    u = np.array(u_list, dtype=np.int64 if fits_int64 else object)
    weights = [factorial(s) * factorial(n - 1 - s) for s in range(n)]
    n_fact = factorial(n)
    out: list[Fraction] = []
    for i in range(n):
        bit = 1 << i
        without = masks[(masks & bit) == 0]  # every S not containing i
        delta = u[without | bit] - u[without]
        group = np.zeros(n, dtype=u.dtype)
        if fits_int64:
            np.add.at(group, sizes[without], delta)
        else:
            for s, d in zip(sizes[without].tolist(), delta.tolist(), strict=True):
                group[s] += d
        numerator = sum(int(g) * w for g, w in zip(group.tolist(), weights, strict=True))
        out.append(Fraction(numerator, n_fact))
    return out
