"""GTG-Shapley (Liu et al. 2022, "GTG-Shapley: Efficient and Accurate Participant Contribution
Evaluation in Federated Learning", ACM TIST 13(4)).

Per round, from the round's global model (``v(empty)``) and its updates:

1. **Between-round truncation**: if ``|v(N) - v(empty)| <= round_threshold`` the round taught the
   model almost nothing, so every participant gets 0 for it (2 evaluations).
2. **Guided sampling**: permutations come in cycles in which every participant leads once, the
   rest in random order, so each player is seen first (its marginal against the global model)
   equally often.
3. **Within-round truncation**: a permutation stops once the prefix's utility is within ``eps``
   of ``v(N)``; the remaining marginals are 0.
4. **Convergence**: after ``min_permutations``, stop at the end of a cycle when the running
   averages moved by at most ``criterion`` (mean relative change) over the last ``last_k``
   permutations.

Defaults are FedML's (``fedml/core/contribution/gtg_shapley_value.py``): ``eps=0.001``,
``round_threshold=0.01``, ``min_permutations=30``, ``last_k=10``, ``criterion=0.05``. The paper
and FedML have no hard cap; ``max_permutations`` and ``max_evaluations`` are ours, so the cost
stays bounded.
"""

from __future__ import annotations

from fractions import Fraction

from marketplace.errors import ValuationError
from marketplace.valuation.base import Seed, ShapleyResult, make_rng, units_to_fraction
from marketplace.valuation.quantize import utility_to_units
from marketplace.valuation.sampling import SamplingConfig, sample_permutations
from marketplace.valuation.utility import CoalitionValues, Utility


class GTGShapley:
    """GTG-Shapley estimator (see the module docstring).

    Parameters
    ----------
    eps : float
        Within-round truncation threshold, in utility units (default 0.001).
    round_threshold : float
        Between-round truncation: rounds whose total gain ``|v(N) - v(empty)|`` is at most this
        give everyone 0 (default 0.01; 0 truncates only rounds with exactly no change, a negative
        value never truncates).
    min_permutations : int
        Permutations before the convergence test may stop (default 30).
    last_k : int
        Window of running averages the test looks at (default 10).
    criterion : float
        Maximum mean relative change in that window (default 0.05).
    max_permutations : int
        Hard cap on permutations (default 1000).
    max_evaluations : int or None
        Hard cap on distinct coalition evaluations (default none).
    """

    method = "gtg"

    def __init__(
        self,
        *,
        eps: float = 0.001,
        round_threshold: float = 0.01,
        min_permutations: int = 30,
        last_k: int = 10,
        criterion: float = 0.05,
        max_permutations: int = 1000,
        max_evaluations: int | None = None,
    ) -> None:
        if eps < 0:
            raise ValuationError(f"GTG eps must be >= 0, got {eps}")
        if last_k < 1 or max_permutations < 1 or min_permutations < 0:
            raise ValuationError(
                "GTG needs last_k >= 1, max_permutations >= 1 and min_permutations >= 0"
            )
        # float() so that eps=0 and eps=0.0 write the same report bytes
        self.eps = float(eps)
        self.round_threshold = float(round_threshold)
        self.min_permutations = min_permutations
        self.last_k = last_k
        self.criterion = float(criterion)
        self.max_permutations = max_permutations
        self.max_evaluations = max_evaluations

    def params(self) -> dict[str, object]:
        return {
            "eps": self.eps,
            "round_threshold": self.round_threshold,
            "min_permutations": self.min_permutations,
            "last_k": self.last_k,
            "criterion": self.criterion,
            "max_permutations": self.max_permutations,
            "max_evaluations": self.max_evaluations,
        }

    def estimate(self, utility: Utility, *, seed: Seed = 0) -> ShapleyResult:
        """GTG values for one round; the same ``seed`` gives the same values, bit for bit."""
        cv = CoalitionValues(utility)
        gain = cv.value(cv.full_mask) - cv.value(0)
        if self.round_threshold >= 0 and abs(gain) <= utility_to_units(self.round_threshold):
            return ShapleyResult(
                values=tuple(Fraction(0) for _ in range(cv.n)),
                evaluations=cv.evaluations,
                method=self.method,
                params=self.params(),
                round_truncated=True,
            )
        config = SamplingConfig(
            eps_units=utility_to_units(self.eps),
            guided=True,
            min_permutations=self.min_permutations,
            max_permutations=self.max_permutations,
            last_k=self.last_k,
            criterion=Fraction(self.criterion),
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
