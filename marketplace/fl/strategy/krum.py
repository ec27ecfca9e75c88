"""Krum and Multi-Krum (Blanchard et al., 2017): keep the updates closest to their neighbours."""

from __future__ import annotations

from typing import Any

import numpy as np

from marketplace.errors import ConfigError
from marketplace.fl import aggregation_math as am
from marketplace.fl.strategy.base import Strategy


class MultiKrum(Strategy):
    """Average (unweighted: sample counts are self-reported) the ``m`` updates with the lowest
    Krum scores.

    Parameters
    ----------
    f : int
        Number of Byzantine trainers tolerated; needs ``n >= 2f + 3`` updates.
    m : int or None
        Updates kept; ``None`` keeps ``n - f``.
    """

    name = "multikrum"

    def __init__(self, *, f: int = 1, m: int | None = None, server_lr: float = 1.0) -> None:
        super().__init__(server_lr=server_lr)
        if f < 0 or (m is not None and m < 1):
            raise ConfigError(f"Krum needs f >= 0 and m >= 1, got f={f}, m={m}")
        self.f = int(f)
        self.m = None if m is None else int(m)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "f": self.f, "m": self.m}

    def combine(
        self, updates: np.ndarray, num_samples: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        m = self.m if self.m is not None else updates.shape[0] - self.f
        aggregate, chosen = am.multikrum(updates, self.f, min(m, updates.shape[0]))
        return aggregate, chosen


class Krum(MultiKrum):
    """Plain Krum: the single update with the lowest Krum score becomes the aggregate."""

    name = "krum"

    def __init__(self, *, f: int = 1, server_lr: float = 1.0) -> None:
        super().__init__(f=f, m=1, server_lr=server_lr)

    def params(self) -> dict[str, Any]:
        return {"server_lr": self.server_lr, "f": self.f}
