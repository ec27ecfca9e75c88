"""What every Shapley-style estimator returns, and the interface they share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Protocol

import numpy as np

from marketplace.valuation.quantize import UTILITY_SCALE, fraction_to_ppm
from marketplace.valuation.utility import Utility

Seed = int | Sequence[int]
"""An estimator seed: an int, or a sequence of ints (e.g. ``(task_seed, round_index)``)."""


@dataclass(frozen=True)
class ShapleyResult:
    """Per-player values of one game.

    Attributes
    ----------
    values : tuple of Fraction
        Exact value of each player ``0..n-1`` in utility units (accuracy 0.01 = one point);
        exact rationals, so quantization never depends on float rounding.
    evaluations : int
        Distinct coalitions the utility evaluated (the cost).
    method : str
        ``"exact"``, ``"monte_carlo"``, ``"gtg"`` or ``"leave_one_out"``.
    params : mapping
        The estimator's parameters (JSON-able), recorded in the report.
    permutations : int
        Permutations sampled (0 for exact and leave-one-out).
    round_truncated : bool
        GTG only: the round's total gain was below the threshold, so everyone got 0.
    """

    values: tuple[Fraction, ...]
    evaluations: int
    method: str
    params: Mapping[str, object] = field(default_factory=dict, hash=False)
    permutations: int = 0
    round_truncated: bool = False

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def values_ppm(self) -> tuple[int, ...]:
        """Values as integer parts per million of one utility unit (round half to even)."""
        return tuple(fraction_to_ppm(v) for v in self.values)

    def as_floats(self) -> tuple[float, ...]:
        """Values as floats, for display and statistics only (never for money)."""
        return tuple(float(v) for v in self.values)


class Estimator(Protocol):
    """A Shapley-style estimator: ``estimate(utility, seed=...) -> ShapleyResult``."""

    method: str

    def estimate(self, utility: Utility, *, seed: Seed = 0) -> ShapleyResult:
        """Value every player of ``utility``; deterministic for a given ``seed``."""
        ...

    def params(self) -> dict[str, object]:
        """The parameters, JSON-able, for the report."""
        ...


def make_rng(seed: Seed) -> np.random.Generator:
    """The only source of randomness: a PCG64 generator seeded through ``SeedSequence``."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed)))


def units_to_fraction(units: int | Fraction) -> Fraction:
    """Integer utility units (``1e-12`` steps), or an exact fraction of them, as utility value."""
    return Fraction(units) / UTILITY_SCALE
