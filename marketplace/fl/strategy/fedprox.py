"""FedProx (Li et al., 2020): FedAvg's aggregation, with a proximal term in local training."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from marketplace.errors import ConfigError
from marketplace.fl.strategy.fedavg import FedAvg
from marketplace.fl.train import TrainConfig


class FedProx(FedAvg):
    """FedAvg whose :meth:`configure_train` asks trainers to add ``(mu/2)·||w - w_global||²``.

    Parameters
    ----------
    mu : float
        Proximal coefficient (0 is FedAvg); 0.01-1 are usual values.
    """

    name = "fedprox"

    def __init__(self, *, mu: float = 0.01, server_lr: float = 1.0) -> None:
        super().__init__(server_lr=server_lr)
        if mu < 0:
            raise ConfigError(f"FedProx mu must be >= 0, got {mu}")
        self.mu = float(mu)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "mu": self.mu}

    def configure_train(self, server_round: int, config: TrainConfig) -> TrainConfig:
        return replace(config, fedprox_mu=self.mu)
