"""FedEraser-style calibrated retraining (Liu et al., IWQoS 2021).

The original training stored, for every round ``r``, the global model ``M_r`` and each trainer's
update ``U_r^k``. To forget trainer ``w`` whose first update is in round ``f``:

1. start from ``M'_f = M_f`` (nothing before round ``f`` saw ``w``'s data);
2. every ``interval``-th round ``j = f, f + Δt, …`` is a *calibration round*: each remaining
   trainer ``k`` of round ``j`` trains ``calibration_epochs`` (fewer than the original epochs)
   from ``M'_j``, giving a direction ``Û^k``; its stored update gives the step length:
   ``Ũ^k = ‖U^k‖ · Û^k / ‖Û^k‖``;
3. ``M'_{j+Δt}`` is the task's own aggregator applied to the calibrated updates ``Ũ^k`` (with the
   stored sample counts) — the withdrawn trainer's updates are never read.

The stored length ``‖U^k‖`` is, by default, that of ``k``'s stored updates summed over the
window ``j .. j + Δt - 1`` (``magnitude="window"``): one calibrated step stands for the ``Δt``
rounds it replaces. ``magnitude="round"`` uses ``‖U_j^k‖`` alone, as in the paper.

Cost: ``ceil((R - f + 1) / Δt)`` rounds of ``calibration_epochs`` local epochs, against
``R - f + 1`` rounds of the original epochs for retraining. Deterministic: trainers in address
order, norms and scaling in float64, the aggregator's float64 combine, float32 weights.

This module holds the configuration and the scaling; the rounds are steps of an
:class:`~marketplace.unlearning.plan.UnlearningPlan`, run in one process by
:func:`~marketplace.unlearning.retrain.federaser` or over the network by
:mod:`marketplace.protocol.calibration`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from marketplace.errors import ConfigError
from marketplace.fl.updates import ClientUpdate
from marketplace.fl.weights import Weights, apply_delta, l2_norm, scale, zeros_like

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FedEraserConfig:
    """How calibrated retraining runs."""

    interval: int = 2  # Δt: one calibration round per this many stored rounds
    calibration_epochs: int = 1  # local epochs of a calibration round (the original used more)
    magnitude: Literal["window", "round"] = "window"  # stored step length, see the module doc

    def __post_init__(self) -> None:
        if self.interval < 1 or self.calibration_epochs < 1:
            raise ConfigError("interval and calibration_epochs must be at least 1")
        if self.magnitude not in ("window", "round"):
            raise ConfigError(f"magnitude must be 'window' or 'round', got {self.magnitude!r}")

    def calibration_rounds(self, first: int, last: int) -> list[int]:
        """The calibration rounds between ``first`` and ``last`` (inclusive)."""
        return list(range(first, last + 1, self.interval))

    def cost(self, first: int, last: int) -> int:
        """Local epochs per trainer that calibration needs for rounds ``first..last``."""
        return math.ceil((last - first + 1) / self.interval) * self.calibration_epochs


def calibrate(
    stored: Sequence[ClientUpdate], fresh: ClientUpdate, *, reference: Weights
) -> ClientUpdate:
    """``fresh``'s direction with the length of the stored updates' sum (float64 math)."""
    total = zeros_like(reference)
    for u in stored:
        total = apply_delta(total, u.delta)
    target = l2_norm(total)
    norm = l2_norm(fresh.delta)
    factor = target / norm if norm > 0 else 0.0
    return ClientUpdate(fresh.sender, scale(fresh.delta, factor), fresh.num_samples)
