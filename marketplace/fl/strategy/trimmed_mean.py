"""Coordinate-wise trimmed mean (Yin et al., 2018)."""

from __future__ import annotations

from typing import Any

import numpy as np

from marketplace.errors import ConfigError
from marketplace.fl import aggregation_math as am
from marketplace.fl.strategy.base import Strategy


class TrimmedMean(Strategy):
    """Per coordinate, drop the ``floor(beta·n)`` largest and smallest values and average the rest.

    Parameters
    ----------
    beta : float
        Fraction trimmed from each end, in ``[0, 0.5)``; set it above the expected attacker share.
    """

    name = "trimmed_mean"

    def __init__(self, *, beta: float = 0.2, server_lr: float = 1.0) -> None:
        super().__init__(server_lr=server_lr)
        if not 0 <= beta < 0.5:
            raise ConfigError(f"trimmed-mean beta must be in [0, 0.5), got {beta}")
        self.beta = float(beta)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "beta": self.beta}

    def combine(
        self, updates: np.ndarray, num_samples: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        return am.trimmed_mean(updates, self.beta), None
