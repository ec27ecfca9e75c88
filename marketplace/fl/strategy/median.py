"""Coordinate-wise median (Yin et al., 2018): robust to a minority of arbitrary updates."""

from __future__ import annotations

import numpy as np

from marketplace.fl import aggregation_math as am
from marketplace.fl.strategy.base import Strategy


class Median(Strategy):
    """Each coordinate of the aggregate is the median of that coordinate over the updates."""

    name = "median"

    def combine(
        self, updates: np.ndarray, num_samples: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        return am.coordinate_median(updates), None
