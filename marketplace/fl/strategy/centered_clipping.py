"""Centered clipping (Karimireddy, He & Jaggi, 2021): a clipped mean around a robust centre."""

from __future__ import annotations

from typing import Any

import numpy as np

from marketplace.errors import ConfigError
from marketplace.fl import aggregation_math as am
from marketplace.fl.strategy.base import Strategy


class CenteredClipping(Strategy):
    """Start from the coordinate-wise median and move ``iters`` times by the mean of the updates'
    offsets, each clipped to ``tau``: an attacker moves the result by at most ``tau / n``.

    Parameters
    ----------
    tau : float or None
        Clipping radius; ``None`` uses the median distance of the updates to the median.
    iters : int
        Clipping iterations (the paper uses 1-3).
    """

    name = "centered_clipping"

    def __init__(self, *, tau: float | None = None, iters: int = 3, server_lr: float = 1.0) -> None:
        super().__init__(server_lr=server_lr)
        if (tau is not None and not tau > 0) or iters < 1:
            raise ConfigError(f"centered clipping needs tau > 0 and iters >= 1, got {tau}, {iters}")
        self.tau = None if tau is None else float(tau)
        self.iters = int(iters)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "tau": self.tau, "iters": self.iters}

    def combine(
        self, updates: np.ndarray, num_samples: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        return am.centered_clipping(updates, self.tau, iters=self.iters), None
