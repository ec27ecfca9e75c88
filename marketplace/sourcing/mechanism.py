"""A budget-feasible, truthful procurement mechanism over additive values (integers only).

Each valid offer ``i`` has a value ``v_i >= 0`` (its predicted Shapley value in ppm, from
:mod:`marketplace.sourcing.ot_value`) and an ask ``c_i`` (wei). The buyer has budget ``B`` (wei).

**Allocation.** Offers with ``v_i = 0`` or ``c_i > B`` never win. Let ``i*`` be the offer of
largest value and ``F`` the fractional-knapsack optimum of the *other* offers under ``B`` (which
does not depend on ``i*``'s ask). If ``k * v_{i*} >= F``, ``i*`` alone wins (the large-item
test of Chen, Gravin and Lu, who use ``k = 1 + sqrt 2``; the default here is ``k = 3/2``, see
:data:`LARGE_ITEM_FACTOR`). Otherwise Singer's *proportional-share* rule runs: sort
offers by ``c_i / v_i`` ascending (ties: lower index first) and take the longest prefix
``1..k`` in which every ``c_j <= B * v_j / V(1..j)``. Because ``c_j / v_j`` rises along the order
and ``B / V(1..j)`` falls, the condition holds exactly on a prefix.

**Approximation.** For ``k > 1`` the chosen value is at least ``OPT / max(1 + k, 2k / (k - 1))``
(``OPT``: the best set whose asks fit ``B``; ``OPT*`` its fractional relaxation). Large-item
branch: ``OPT <= v_{i*} + F <= (1 + k) v_{i*}``. Otherwise, if the prefix ``S`` stops before offer
``j`` (if it takes every eligible offer, ``V(S) = OPT``), offers from ``j`` on buy value at a rate
``v/c <= v_j/c_j < V(S + j) / B``, so ``OPT* < V(S) + V(S + j) <= 2 V(S) + v_{i*}``; with
``k v_{i*} < F <= OPT*`` this gives ``OPT <= OPT* < 2k/(k-1) V(S)``. ``k = 1 + sqrt 2`` gives
``2 + sqrt 2`` (Chen-Gravin-Lu's bound), ``k = 3/2`` gives 6, and ``k = 1`` no bound at all (a
cheap, nearly worthless offer first in the order can stop the prefix before an offer worth almost
all of ``OPT``: ``tests/sourcing/test_mechanism.py``).

**Payments.** Each winner is paid its *threshold*: the largest integer ask at which it would still
win, others' asks fixed (found by binary search; the allocation is monotone in the own ask, so the
winning asks are exactly ``0..threshold``). Monotone allocation with threshold payments is
truthful (Myerson): the payment never depends on the winner's own ask, so asking anything but the
true cost can only lose a profitable win or gain a loss-making one.

**Budget.** In the proportional-share branch every winner's threshold is at most
``B * v_i / V(S)`` (asking more puts every other winner ahead of it, so its prefix holds all of
``S``), so payments sum to at most ``B``; in the large-item branch the single winner is paid at
most ``B``. Ties are broken by offer index (canonical order), so every honest oracle computes the
same integers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

from marketplace.errors import SourcingError

SQRT2_PLUS_1 = Fraction(2_414_213_562_373_095, 10**15)
"""``1 + sqrt 2`` as an exact rational just below it (15 digits): Chen-Gravin-Lu's factor."""
LARGE_ITEM_FACTOR = Fraction(3, 2)
"""The default factor of the large-item test: approximation ratio 6 (see the module docstring).
Any positive constant keeps the mechanism truthful and budget-feasible; ``1 + sqrt 2``
(:data:`SQRT2_PLUS_1`) has the best ratio, ``2 + sqrt 2``, but with any ``k >= 2`` three offers or
fewer always yield a single winner (the others' fractional optimum is at most twice the largest
value); ``3/2`` still lets two of three offers win. ``k = 1`` has no bounded ratio."""


@dataclass(frozen=True)
class Selection:
    """The mechanism's outcome: winners (ascending indices), their payments, the branch used."""

    winners: tuple[int, ...]
    payments: tuple[int, ...]  # wei, one per winner, same order
    branch: str  # "proportional_share", "large_item" or "none"

    @property
    def total_paid(self) -> int:
        """Sum of payments (never above the budget)."""
        return sum(self.payments)

    def payment_of(self, index: int) -> int:
        """Offer ``index``'s payment (0 when it did not win)."""
        for w, p in zip(self.winners, self.payments, strict=True):
            if w == index:
                return p
        return 0


def _check(values: Sequence[int], asks: Sequence[int], budget: int) -> None:
    if len(values) != len(asks):
        raise SourcingError(
            f"{len(values)} values but {len(asks)} asks: give one of each per offer"
        )
    if budget < 0 or any(v < 0 for v in values) or any(c < 0 for c in asks):
        raise SourcingError("budget, values and asks must be non-negative integers")


def _by_ask_per_value(
    indices: Sequence[int], values: Sequence[int], asks: Sequence[int]
) -> list[int]:
    """``indices`` (each with ``values[i] > 0``) sorted by ``asks[i] / values[i]`` ascending, ties
    by lower index: exactly the order of the key ``(Fraction(asks[i], values[i]), i)``, but on
    integers ``asks[i] * (L // values[i])`` with ``L`` the values' least common multiple, which
    scale every ratio by the same ``L`` (Fraction comparisons made 200 offers' payments ~15 s)."""
    common = math.lcm(*(values[i] for i in indices)) if indices else 1
    return sorted(indices, key=lambda i: (asks[i] * (common // values[i]), i))


def fractional_optimum(values: Sequence[int], asks: Sequence[int], budget: int) -> Fraction:
    """The fractional-knapsack optimum: most value with offers taken in fractions, cost <= B."""
    order = _by_ask_per_value([i for i in range(len(values)) if values[i] > 0], values, asks)
    left = Fraction(budget)
    total = Fraction(0)
    for i in order:
        if asks[i] <= left:
            total += values[i]
            left -= asks[i]
        else:
            total += Fraction(values[i]) * left / asks[i]
            break
    return total


def allocate(
    values: Sequence[int],
    asks: Sequence[int],
    budget: int,
    *,
    large_item_factor: Fraction = LARGE_ITEM_FACTOR,
) -> tuple[set[int], str]:
    """The winners (and the branch) for these values, asks and budget."""
    _check(values, asks, budget)
    eligible = [i for i in range(len(values)) if values[i] > 0 and asks[i] <= budget]
    if not eligible:
        return set(), "none"
    top = min(eligible, key=lambda i: (-values[i], i))
    allowed = set(eligible)
    others_v = [values[i] if i != top and i in allowed else 0 for i in range(len(values))]
    if large_item_factor * values[top] >= fractional_optimum(others_v, asks, budget):
        return {top}, "large_item"
    order = _by_ask_per_value(eligible, values, asks)
    winners: set[int] = set()
    prefix_value = 0
    for i in order:
        prefix_value += values[i]
        if asks[i] * prefix_value > budget * values[i]:  # c_i > B * v_i / V(prefix)
            break
        winners.add(i)
    return winners, "proportional_share"


def threshold(
    values: Sequence[int],
    asks: Sequence[int],
    budget: int,
    index: int,
    *,
    large_item_factor: Fraction = LARGE_ITEM_FACTOR,
) -> int:
    """The largest integer ask (``<= budget``) at which offer ``index`` still wins; -1 if none."""
    trial = list(asks)

    def wins(ask: int) -> bool:
        trial[index] = ask
        return index in allocate(values, trial, budget, large_item_factor=large_item_factor)[0]

    if not wins(0):
        return -1
    lo, hi = 0, budget  # wins(lo) holds; find the largest winning ask in [lo, hi]
    if wins(hi):
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if wins(mid):
            lo = mid
        else:
            hi = mid
    return lo


def select(
    values: Sequence[int],
    asks: Sequence[int],
    budget: int,
    *,
    large_item_factor: Fraction = LARGE_ITEM_FACTOR,
) -> Selection:
    """Run the mechanism: winners and their threshold payments (wei); total <= ``budget``.

    Parameters
    ----------
    values : sequence of int
        Each offer's value (ppm, non-negative; clamp negative predicted values to 0 first).
    asks : sequence of int
        Each offer's revealed ask (wei).
    budget : int
        The procurement budget (wei).
    large_item_factor : Fraction
        ``k`` of the large-item test ``k * v_top >= F`` (see :data:`LARGE_ITEM_FACTOR`).
    """
    k = large_item_factor
    winners, branch = allocate(values, asks, budget, large_item_factor=k)
    ordered = tuple(sorted(winners))
    payments = tuple(threshold(values, asks, budget, i, large_item_factor=k) for i in ordered)
    total = sum(payments)
    if total > budget:  # the proof says this cannot happen; refuse rather than overspend
        raise SourcingError(f"mechanism would pay {total} above the budget {budget}")
    return Selection(ordered, payments, branch)
