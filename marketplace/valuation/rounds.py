"""Multi-round valuation: one game per round, per-round values summed per trainer.

Each round's players are trainer ids (addresses) in canonical order (ascending, case-insensitive),
index ``i`` of the round's utility being ``players[i]``. Round ``r`` is estimated with the seed
``(seed, r)``, so rounds are independent of each other's sampling and of evaluation order.

A trainer's total is the **sum of its per-round ppm integers** (not the ppm of the exact sum), so
anyone can re-add the report's per-round figures and get its totals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from marketplace.errors import ValuationError
from marketplace.valuation.base import Estimator, ShapleyResult
from marketplace.valuation.utility import Utility


@dataclass(frozen=True)
class RoundGame:
    """One round to value: its number, its players (canonical order) and its utility."""

    round: int
    players: tuple[str, ...]
    utility: Utility

    def __post_init__(self) -> None:
        keys = [p.lower() for p in self.players]
        if len(set(keys)) != len(keys):
            raise ValuationError(f"round {self.round} lists a player twice: {sorted(self.players)}")
        if keys != sorted(keys):
            raise ValuationError(
                f"round {self.round} players must be sorted by address (case-insensitive) so that "
                "every oracle indexes them alike: sort them before valuation"
            )
        if int(self.utility.n) != len(self.players):
            raise ValuationError(
                f"round {self.round} has {len(self.players)} players but its utility has "
                f"n={self.utility.n}"
            )


@dataclass(frozen=True)
class RoundValuation:
    """The estimator's result for one round, with the players it refers to."""

    round: int
    players: tuple[str, ...]
    result: ShapleyResult

    def values_ppm(self) -> dict[str, int]:
        """Each player's value this round in ppm of one utility unit."""
        return dict(zip(self.players, self.result.values_ppm, strict=True))


@dataclass(frozen=True)
class Valuation:
    """Per-round values and their per-trainer totals."""

    method: str
    params: Mapping[str, object] = field(hash=False)
    seed: int
    rounds: tuple[RoundValuation, ...]

    def totals_ppm(self) -> dict[str, int]:
        """Each trainer's sum of per-round ppm values, keys sorted."""
        totals: dict[str, int] = {}
        for rv in self.rounds:
            for player, v in rv.values_ppm().items():
                totals[player] = totals.get(player, 0) + v
        return {p: totals[p] for p in sorted(totals, key=str.lower)}

    @property
    def evaluations(self) -> int:
        """Coalition evaluations over all rounds."""
        return sum(rv.result.evaluations for rv in self.rounds)


def value_rounds(games: Sequence[RoundGame], estimator: Estimator, *, seed: int) -> Valuation:
    """Value every round with ``estimator`` (seeded ``(seed, round)``) and collect the results."""
    numbers = [g.round for g in games]
    if len(set(numbers)) != len(numbers):
        raise ValuationError(f"round numbers repeat: {numbers}; give each round once")
    rounds = tuple(
        RoundValuation(g.round, g.players, estimator.estimate(g.utility, seed=(seed, g.round)))
        for g in games
    )
    return Valuation(method=estimator.method, params=estimator.params(), seed=seed, rounds=rounds)
