"""Leave-one-out: each player's value is ``v(N) - v(N without i)`` (n + 1 evaluations)."""

from __future__ import annotations

from marketplace.valuation.base import Seed, ShapleyResult, units_to_fraction
from marketplace.valuation.utility import CoalitionValues, Utility


class LeaveOneOut:
    """Leave-one-out values: cheap, but blind to redundancy (two identical useful players each
    get about 0)."""

    method = "leave_one_out"

    def params(self) -> dict[str, object]:
        return {}

    def estimate(self, utility: Utility, *, seed: Seed = 0) -> ShapleyResult:
        """Leave-one-out values; ``seed`` is ignored."""
        del seed
        cv = CoalitionValues(utility)
        full = cv.full_mask
        masks = [full] + [full & ~(1 << i) for i in range(cv.n)]
        v_full, *v_without = cv.values(masks)
        return ShapleyResult(
            values=tuple(units_to_fraction(v_full - v) for v in v_without),
            evaluations=cv.evaluations,
            method=self.method,
            params=self.params(),
        )
