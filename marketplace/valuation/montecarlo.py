"""Permutation Monte Carlo Shapley with truncation (TMC-Shapley, Ghorbani & Zou 2019)."""

from __future__ import annotations

from fractions import Fraction

from marketplace.errors import ValuationError
from marketplace.valuation.base import Seed, ShapleyResult, make_rng, units_to_fraction
from marketplace.valuation.quantize import utility_to_units
from marketplace.valuation.sampling import SamplingConfig, sample_permutations
from marketplace.valuation.utility import CoalitionValues, Utility


class MonteCarloShapley:
    """Average marginal contributions over uniformly random permutations.

    Parameters
    ----------
    permutations : int
        Number of permutations to sample (default 100).
    eps : float
        Truncation: once a prefix's utility is within ``eps`` of the grand coalition's, the rest
        of the permutation contributes 0 (default 0.001, as GTG; 0 disables truncation).
    max_evaluations : int or None
        Stop early once this many distinct coalitions have been evaluated.
    """

    method = "monte_carlo"

    def __init__(
        self, *, permutations: int = 100, eps: float = 0.001, max_evaluations: int | None = None
    ) -> None:
        if permutations < 1:
            raise ValuationError(f"permutations must be at least 1, got {permutations}")
        if eps < 0:
            raise ValuationError(f"truncation eps must be >= 0, got {eps}")
        self.permutations = permutations
        self.eps = float(eps)  # eps=0 and eps=0.0 write the same report bytes
        self.max_evaluations = max_evaluations

    def params(self) -> dict[str, object]:
        return {
            "permutations": self.permutations,
            "eps": self.eps,
            "max_evaluations": self.max_evaluations,
        }

    def estimate(self, utility: Utility, *, seed: Seed = 0) -> ShapleyResult:
        """Sampled values; the same ``seed`` gives the same values, bit for bit."""
        cv = CoalitionValues(utility)
        config = SamplingConfig(
            eps_units=utility_to_units(self.eps),
            guided=False,
            min_permutations=0,
            max_permutations=self.permutations,
            last_k=1,
            criterion=None,
            max_evaluations=self.max_evaluations,
        )
        out = sample_permutations(cv, make_rng(seed), config)
        return ShapleyResult(
            values=tuple(units_to_fraction(Fraction(s, out.permutations)) for s in out.sums),
            evaluations=cv.evaluations,
            method=self.method,
            params=self.params(),
            permutations=out.permutations,
        )
