"""Bulyan (El Mhamdi et al., 2018): Krum selection followed by a coordinate-wise trimmed mean."""

from __future__ import annotations

from typing import Any

import numpy as np

from marketplace.errors import ConfigError
from marketplace.fl import aggregation_math as am
from marketplace.fl.strategy.base import Strategy


class Bulyan(Strategy):
    """Pick ``n - 2f`` updates by repeated Krum, then average per coordinate the values closest
    to their median. Needs ``n >= 4f + 3`` updates.

    Parameters
    ----------
    f : int
        Number of Byzantine trainers tolerated.
    """

    name = "bulyan"

    def __init__(self, *, f: int = 1, server_lr: float = 1.0) -> None:
        super().__init__(server_lr=server_lr)
        if f < 0:
            raise ConfigError(f"Bulyan needs f >= 0, got {f}")
        self.f = int(f)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "f": self.f}

    def combine(
        self, updates: np.ndarray, num_samples: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        return am.bulyan(updates, self.f)
