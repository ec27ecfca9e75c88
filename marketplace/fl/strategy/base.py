"""The ``Strategy`` base class: how a round's updates become the next global model.

Shaped like Flower's strategies, with named steps: :meth:`Strategy.configure_train` (what each
trainer is asked to do this round) and :meth:`Strategy.aggregate` (validate → order by sender →
flatten to float64 → :meth:`Strategy.combine` → cast to float32). Subclasses implement only
``combine``, a pure function of the ``(n, d)`` update matrix, so every honest peer derives the same
bits whatever order the updates arrived in.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from marketplace.errors import ConfigError
from marketplace.fl.train import TrainConfig
from marketplace.fl.updates import AggregateResult, ClientUpdate, validate_updates
from marketplace.fl.weights import flatten, unflatten


class Strategy(ABC):
    """Base class of aggregation strategies.

    Parameters
    ----------
    server_lr : float
        Step size applied to the combined delta (1.0 = plain averaging of models).
    """

    name: ClassVar[str]

    def __init__(self, *, server_lr: float = 1.0) -> None:
        if server_lr <= 0:
            raise ConfigError(f"server_lr must be positive, got {server_lr}")
        self.server_lr = float(server_lr)

    def params(self) -> dict[str, Any]:
        """The constructor arguments, so that ``get_strategy(s.name, **s.params())`` rebuilds it."""
        return {"server_lr": self.server_lr}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({args})"

    # --- step 1: what trainers do this round ---------------------------------------------
    def configure_train(self, server_round: int, config: TrainConfig) -> TrainConfig:
        """The training config sent to trainers for ``server_round`` (default: unchanged)."""
        return config

    # --- step 2: combine the updates -----------------------------------------------------
    def aggregate(
        self, global_weights: Mapping[str, torch.Tensor], updates: Sequence[ClientUpdate]
    ) -> AggregateResult:
        """Validate ``updates``, combine them in float64 and return the next global weights.

        Raises ``InvalidUpdateError`` for an empty set, mismatched names/shapes or NaN/Inf.
        """
        ordered = validate_updates(global_weights, updates)
        matrix = np.stack([flatten(u.delta) for u in ordered])  # (n, d) float64
        samples = np.array([u.num_samples for u in ordered], dtype=np.float64)
        combined, chosen = self.combine(matrix, samples)
        step = self.server_lr * combined
        new_flat = flatten(global_weights) + step
        chosen_set = set(range(len(ordered))) if chosen is None else {int(i) for i in chosen}
        return AggregateResult(
            weights=unflatten(new_flat, global_weights),
            delta=unflatten(step, global_weights),
            accepted=tuple(u.sender for i, u in enumerate(ordered) if i in chosen_set),
            rejected=tuple(u.sender for i, u in enumerate(ordered) if i not in chosen_set),
        )

    @abstractmethod
    def combine(
        self, updates: np.ndarray, num_samples: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Combine the ``(n, d)`` float64 update matrix (rows sorted by sender) into one delta.

        Returns the ``(d,)`` combined delta and the indices of the rows that entered it
        (``None`` = all rows).
        """
