"""Permutation sampling of marginal contributions, shared by Monte Carlo and GTG-Shapley.

A permutation ``pi`` adds players one by one; player ``pi[j]``'s sample is
``v(pi[:j+1]) - v(pi[:j])``. The average over sampled permutations estimates the Shapley value.

* **Within-permutation truncation** (Ghorbani & Zou's TMC, GTG-Shapley's within-round
  truncation): once the prefix's utility is within ``eps`` of the grand coalition's, the remaining
  players' marginals are taken as 0 and not evaluated.
* **Guided sampling** (GTG-Shapley): permutations come in cycles of ``n``; in a cycle each player
  leads one permutation in turn (index order), the others follow in random order.
* **Budget**: a permutation starts only if it cannot push the distinct evaluations above
  ``max_evaluations``.
* **Convergence** (FedML's GTG criterion): after more than ``min_permutations`` permutations, stop
  at the end of a cycle when, over the last ``last_k`` permutations, the mean relative change of
  the running averages against the latest one stays at or below ``criterion`` for every one of
  them.

All bookkeeping is integer (utility units) and the criterion is evaluated on exact fractions, so
the stopping point is the same on every machine for a given seed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from marketplace.errors import ValuationError
from marketplace.valuation.utility import CoalitionValues


@dataclass(frozen=True)
class SamplingConfig:
    """How to sample permutations (see the module docstring)."""

    eps_units: int
    guided: bool
    min_permutations: int
    max_permutations: int
    last_k: int
    criterion: Fraction | None  # None: no convergence test, run max_permutations
    max_evaluations: int | None


@dataclass(frozen=True)
class SamplingOutcome:
    sums: tuple[int, ...]  # per player, sum of sampled marginals in utility units
    permutations: int
    converged: bool


def sample_permutations(
    cv: CoalitionValues, rng: np.random.Generator, config: SamplingConfig
) -> SamplingOutcome:
    """Sample permutations until convergence or a cap; return the marginal sums per player."""
    n = cv.n
    if config.max_evaluations is not None and config.max_evaluations < n + 1:
        raise ValuationError(
            f"max_evaluations={config.max_evaluations} cannot fit one permutation of {n} players "
            f"(needs {n + 1}): raise it"
        )
    v_empty = cv.value(0)
    v_full = cv.value(cv.full_mask)
    sums = [0] * n
    history: deque[tuple[int, tuple[int, ...]]] = deque(maxlen=max(config.last_k, 1))
    k = 0
    while True:
        for lead in range(n):
            if _over_budget(cv, config):
                return SamplingOutcome(tuple(sums), k, converged=False)
            perm = _next_permutation(rng, n, lead if config.guided else None)
            _walk(cv, perm, v_empty, v_full, config.eps_units, sums)
            k += 1
            history.append((k, tuple(sums)))
            if k >= config.max_permutations:
                return SamplingOutcome(tuple(sums), k, converged=False)
        checkable = config.criterion is not None and k > config.min_permutations
        if checkable and _converged(history, config.criterion):  # type: ignore[arg-type]
            return SamplingOutcome(tuple(sums), k, converged=True)


def _next_permutation(rng: np.random.Generator, n: int, lead: int | None) -> list[int]:
    if lead is None:
        return [int(x) for x in rng.permutation(n)]
    rest = [p for p in range(n) if p != lead]
    return [lead, *(int(x) for x in rng.permutation(rest))]


def _walk(
    cv: CoalitionValues,
    perm: Sequence[int],
    v_empty: int,
    v_full: int,
    eps_units: int,
    sums: list[int],
) -> None:
    """Add one permutation's marginals to ``sums``, truncating once the prefix is close to v(N)."""
    prev = v_empty
    mask = 0
    for p in perm:
        if abs(v_full - prev) < eps_units:
            return  # the remaining players' marginals are taken as 0
        mask |= 1 << p
        cur = cv.value(mask)
        sums[p] += cur - prev
        prev = cur


def _over_budget(cv: CoalitionValues, config: SamplingConfig) -> bool:
    """True when one more permutation could exceed ``max_evaluations``: a permutation evaluates
    at most ``n - 1`` new coalitions (the empty and grand ones are cached), so the budget is never
    exceeded and no permutation is cut short (which would bias it)."""
    if config.max_evaluations is None:
        return False
    return cv.evaluations + cv.n - 1 > config.max_evaluations


def _converged(history: deque[tuple[int, tuple[int, ...]]], criterion: Fraction) -> bool:
    """FedML's test: max over the last k running averages of the mean relative error <= criterion.

    The relative error of player i is ``|avg_j,i - avg_K,i| / (|avg_K,i| + 1 unit)`` (FedML adds
    1e-12 to the denominator; one utility unit is exactly 1e-12).
    """
    k_last, s_last = history[-1]
    n = len(s_last)
    latest = [Fraction(s, k_last) for s in s_last]
    denominators = [abs(a) + 1 for a in latest]
    for k_j, s_j in history:
        terms = zip(s_j, latest, denominators, strict=True)
        err = sum((abs(Fraction(s, k_j) - a) / d for s, a, d in terms), Fraction(0))
        if err / n > criterion:
            return False
    return True
