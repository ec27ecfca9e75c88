"""The utility of a coalition: the small interface every estimator values players against.

A utility is any object with ``n`` (the number of players, indexed ``0..n-1``) and
``__call__(coalition: frozenset[int]) -> float`` (e.g. the validation accuracy of the round's
global model updated with the aggregate of the coalition's updates; the empty coalition is the
global model unchanged). A utility may also offer ``evaluate_many(coalitions) -> list[float]`` to
evaluate many coalitions in one batch (exact Shapley uses it).

Estimators never call the utility directly: they go through :class:`CoalitionValues`, which
converts each value to integer utility units (see :mod:`marketplace.valuation.quantize`), caches it
per coalition bitmask so that each coalition is evaluated at most once, and counts evaluations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from marketplace.errors import ValuationError
from marketplace.valuation.quantize import utility_to_units


@runtime_checkable
class Utility(Protocol):
    """A cooperative game over players ``0..n-1``."""

    @property
    def n(self) -> int:
        """Number of players."""
        ...

    def __call__(self, coalition: frozenset[int]) -> float:
        """The value of ``coalition`` (a set of player indices)."""
        ...


@runtime_checkable
class BatchUtility(Utility, Protocol):
    """A utility that can evaluate several coalitions in one call (faster exact Shapley)."""

    def evaluate_many(self, coalitions: Sequence[frozenset[int]]) -> list[float]:
        """Values of ``coalitions``, in order."""
        ...


def mask_to_coalition(mask: int) -> frozenset[int]:
    """The set of player indices whose bits are set in ``mask``."""
    out = []
    i = 0
    while mask:
        if mask & 1:
            out.append(i)
        mask >>= 1
        i += 1
    return frozenset(out)


def coalition_to_mask(coalition: Iterable[int]) -> int:
    """The bitmask of a set of player indices."""
    mask = 0
    for i in coalition:
        mask |= 1 << i
    return mask


class FunctionUtility:
    """A utility from a plain function of the coalition (toy games, tests, custom metrics).

    Parameters
    ----------
    n : int
        Number of players.
    fn : callable
        ``fn(coalition: frozenset[int]) -> float``.
    """

    def __init__(self, n: int, fn: Callable[[frozenset[int]], float]) -> None:
        if n < 1:
            raise ValuationError(f"a game needs at least one player, got n={n}")
        self._n = n
        self._fn = fn

    @property
    def n(self) -> int:
        return self._n

    def __call__(self, coalition: frozenset[int]) -> float:
        return float(self._fn(coalition))


class TableUtility(FunctionUtility):
    """A utility given as a table ``{frozenset: value}``; missing coalitions are an error."""

    def __init__(self, n: int, table: Mapping[frozenset[int], float]) -> None:
        frozen = {frozenset(k): float(v) for k, v in table.items()}

        def lookup(coalition: frozenset[int]) -> float:
            try:
                return frozen[coalition]
            except KeyError:
                raise ValuationError(
                    f"coalition {sorted(coalition)} is not in the utility table: give every subset"
                ) from None

        super().__init__(n, lookup)


class CoalitionValues:
    """Cached, counted access to a utility by coalition bitmask, in integer utility units.

    ``evaluations`` counts the distinct coalitions actually evaluated (cache misses), including
    the empty and the grand coalition when they were asked for.
    """

    def __init__(self, utility: Utility, *, batch_size: int = 1024) -> None:
        n = int(utility.n)
        if n < 1:
            raise ValuationError(f"a game needs at least one player, got n={n}")
        self.utility = utility
        self.n = n
        self.full_mask = (1 << n) - 1
        self._cache: dict[int, int] = {}
        self._batch_size = batch_size

    @property
    def evaluations(self) -> int:
        """Distinct coalitions evaluated so far."""
        return len(self._cache)

    def value(self, mask: int) -> int:
        """The utility of coalition ``mask`` in integer units (evaluated once, then cached)."""
        cached = self._cache.get(mask)
        if cached is None:
            cached = utility_to_units(self.utility(mask_to_coalition(mask)))
            self._cache[mask] = cached
        return cached

    def values(self, masks: Sequence[int]) -> list[int]:
        """Utilities of many coalitions; uses the utility's ``evaluate_many`` when it has one."""
        missing = [m for m in dict.fromkeys(masks) if m not in self._cache]
        if missing and isinstance(self.utility, BatchUtility):
            for start in range(0, len(missing), self._batch_size):
                chunk = missing[start : start + self._batch_size]
                got = self.utility.evaluate_many([mask_to_coalition(m) for m in chunk])
                if len(got) != len(chunk):
                    raise ValuationError(
                        f"evaluate_many returned {len(got)} values for {len(chunk)} coalitions"
                    )
                for m, v in zip(chunk, got, strict=True):
                    self._cache[m] = utility_to_units(v)
        return [self.value(m) for m in masks]
