"""FedAvg (McMahan et al., 2017): the sample-weighted mean of the deltas."""

from __future__ import annotations

import numpy as np

from marketplace.fl import aggregation_math as am
from marketplace.fl.strategy.base import Strategy


class FedAvg(Strategy):
    """Sample-weighted mean: trainers with more data weigh more (and so can lie about it; use a
    robust strategy when sample counts are not trusted)."""

    name = "fedavg"

    def combine(
        self, updates: np.ndarray, num_samples: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        return am.weighted_mean(updates, num_samples), None
