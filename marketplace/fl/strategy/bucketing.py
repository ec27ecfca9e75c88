"""Bucketing (Karimireddy, He & Jaggi, 2022): average random buckets, then aggregate robustly."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from marketplace.errors import ConfigError
from marketplace.fl import aggregation_math as am
from marketplace.fl.strategy.base import Strategy

INNER = ("centered_clipping", "median", "trimmed_mean", "multikrum")


class Bucketing(Strategy):
    """Shuffle the updates into buckets of ``s``, average each bucket, and combine the bucket
    means with ``inner``. The shuffle is seeded by ``seed`` and the sha256 of the update matrix,
    so it changes every round yet every peer draws the same one.

    Parameters
    ----------
    s : int
        Bucket size (2 in the paper's experiments).
    inner : str
        Robust aggregator of the bucket means: one of ``INNER``.
    seed : int
        Mixed into the shuffle.
    """

    name = "bucketing"

    def __init__(
        self, *, s: int = 2, inner: str = "centered_clipping", seed: int = 0, server_lr: float = 1.0
    ) -> None:
        super().__init__(server_lr=server_lr)
        if s < 1 or inner not in INNER:
            raise ConfigError(f"bucketing needs s >= 1 and inner in {INNER}, got {s}, {inner!r}")
        self.s, self.inner, self.seed = int(s), inner, int(seed)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "s": self.s, "inner": self.inner, "seed": self.seed}

    def combine(
        self, updates: np.ndarray, num_samples: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        digest = hashlib.sha256(np.ascontiguousarray(updates, dtype="<f8").tobytes())
        shuffle_seed = int.from_bytes(digest.digest()[:8], "big") ^ self.seed
        means = am.bucket_means(updates, self.s, shuffle_seed)
        k = means.shape[0]
        if self.inner == "median":
            return am.coordinate_median(means), None
        if self.inner == "trimmed_mean":
            return am.trimmed_mean(means, 0.2 if k >= 5 else 0.0), None
        if self.inner == "multikrum":
            f = max(0, (k - 3) // 2)
            return am.multikrum(means, f, k - f)[0], None
        return am.centered_clipping(means), None
