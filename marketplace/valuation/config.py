"""How a task's contributions are valued: one validated config, written once by the requester
(in the task document) and read by every oracle.

Every field is checked in ``__post_init__``, so a config that the oracles would refuse can never
be published: the requester gets the error before any transaction, not the committee after the
last round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from marketplace.errors import ConfigError, ValuationError
from marketplace.valuation.payouts import FlaggedPolicy, PayoutConfig

ValuationMethod = Literal["auto", "exact", "gtg", "monte_carlo", "leave_one_out"]
ValuationMetric = Literal["accuracy", "neg_loss"]

METHODS: tuple[ValuationMethod, ...] = get_args(ValuationMethod)
METRICS: tuple[ValuationMetric, ...] = get_args(ValuationMetric)
FLAGGED_POLICIES: tuple[FlaggedPolicy, ...] = get_args(FlaggedPolicy)


@dataclass(frozen=True)
class ValuationConfig:
    """How oracles score a task.

    Attributes
    ----------
    method : str
        ``"auto"`` (exact Shapley up to 12 players per round, budgeted GTG above), ``"exact"``,
        ``"gtg"``, ``"monte_carlo"`` or ``"leave_one_out"`` (:data:`METHODS`).
    seed : int
        Seed of the sampled estimators (round ``r`` uses ``(seed, r)``).
    metric : str
        ``"accuracy"`` or ``"neg_loss"`` of a coalition's model on the validation set.
    gtg_budget_fraction : float
        GTG and Monte Carlo evaluate at most ``max(n + 1, floor(fraction * 2**n))`` coalitions in
        a round of ``n`` players.
    floor_ppm : int
        Participation floor of each eligible trainer, ppm of the budget.
    flagged : str
        ``"redistribute"`` flagged trainers' shares, or ``"refund"`` them to the requester.
    """

    method: ValuationMethod = "auto"
    seed: int = 0
    metric: ValuationMetric = "accuracy"
    gtg_budget_fraction: float = 0.25
    floor_ppm: int = 0
    flagged: FlaggedPolicy = "redistribute"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(
                f"unknown valuation method {self.method!r}: use one of {', '.join(METHODS)}"
            )
        if self.metric not in METRICS:
            raise ConfigError(
                f"unknown valuation metric {self.metric!r}: use one of {', '.join(METRICS)}"
            )
        if (
            isinstance(self.gtg_budget_fraction, bool)
            or not isinstance(self.gtg_budget_fraction, (int, float))
            or not 0 < self.gtg_budget_fraction <= 1
        ):
            raise ConfigError(
                f"gtg_budget_fraction must be in (0, 1], got {self.gtg_budget_fraction!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"valuation seed must be a non-negative int, got {self.seed!r}")
        if isinstance(self.floor_ppm, bool) or not isinstance(self.floor_ppm, int):
            raise ConfigError(f"floor_ppm must be an int, got {self.floor_ppm!r}")
        try:
            self.payout_config()
        except ValuationError as exc:
            raise ConfigError(str(exc)) from None

    def payout_config(self) -> PayoutConfig:
        """The payout policy part."""
        return PayoutConfig(floor_ppm=self.floor_ppm, flagged=self.flagged)
