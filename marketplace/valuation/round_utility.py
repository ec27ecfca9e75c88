"""``RoundUtility``: a coalition's value is the validation score of the round's global model
updated with the aggregate of the coalition's updates, by the task's own aggregator.

* The empty coalition is the round's global model unchanged.
* Aggregation replicates :meth:`marketplace.fl.Strategy.aggregate` exactly (rows sorted by sender,
  float64 ``combine``, ``server_lr`` step, cast to float32) on the coalition's rows of an update
  matrix built and validated once, so valuing 65,536 coalitions does not re-validate 65,536 times.
* Robust aggregators have a minimum size (Krum needs ``2f + 3`` updates): a smaller coalition is
  combined with the sample-weighted mean instead (``small_coalition="fedavg"``), or refused.
* Evaluation is on CPU in float64 with a fixed thread count and deterministic algorithms, the
  whole validation set in one batch; the metric is accuracy (default) or negative mean
  cross-entropy. Accuracy is a count over the set, so tiny float differences between machines
  almost never move it; prefer it when money depends on the result.
* Values are cached per coalition bitmask; ``evaluations`` counts real evaluations.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from marketplace.errors import InvalidUpdateError, ValuationError
from marketplace.fl import aggregation_math as am
from marketplace.fl.models import ModelSpec, build_model
from marketplace.fl.strategy import Strategy
from marketplace.fl.train import torch_settings
from marketplace.fl.updates import ClientUpdate, validate_updates
from marketplace.fl.weights import flatten
from marketplace.valuation.config import ValuationMetric
from marketplace.valuation.utility import coalition_to_mask

log = logging.getLogger(__name__)

Metric = ValuationMetric  # one Literal for the concept (marketplace.valuation.config)


class RoundUtility:
    """Utility of one round's coalitions (see the module docstring).

    Parameters
    ----------
    model_spec : ModelSpec
        The task's model.
    global_weights : mapping
        The round's starting global weights.
    updates : sequence of ClientUpdate
        The round's valid updates; player ``i`` is the ``i``-th sender in sorted order
        (:attr:`players`).
    strategy : Strategy
        The task's aggregator.
    x_val, y_val : numpy.ndarray
        The validation set.
    metric : {"accuracy", "neg_loss"}
        What a coalition's model scores.
    num_threads : int
        Torch threads during evaluation (fixed, for reproducibility).
    small_coalition : {"fedavg", "error"}
        What to do when the aggregator refuses a coalition because it is too small.
    """

    def __init__(
        self,
        *,
        model_spec: ModelSpec,
        global_weights: Mapping[str, torch.Tensor],
        updates: Sequence[ClientUpdate],
        strategy: Strategy,
        x_val: np.ndarray,
        y_val: np.ndarray,
        metric: Metric = "accuracy",
        num_threads: int = 1,
        small_coalition: Literal["fedavg", "error"] = "fedavg",
    ) -> None:
        if metric not in ("accuracy", "neg_loss"):
            raise ValuationError(f"unknown metric {metric!r}: use 'accuracy' or 'neg_loss'")
        if len(y_val) == 0:
            raise ValuationError("the validation set is empty: the oracle needs labelled rows")
        ordered = validate_updates(global_weights, updates)
        self.players: tuple[str, ...] = tuple(u.sender for u in ordered)
        self.metric: Metric = metric
        self.strategy = strategy
        self.num_threads = num_threads
        self.small_coalition = small_coalition
        self._names = sorted(global_weights)
        self._shapes = [tuple(global_weights[k].shape) for k in self._names]
        self._global_flat = flatten(global_weights)  # float64, sorted keys
        self._matrix = np.stack([flatten(u.delta) for u in ordered])  # (n, d) float64
        self._samples = np.array([u.num_samples for u in ordered], dtype=np.float64)
        self._model = build_model(model_spec)
        self._x = torch.as_tensor(np.asarray(x_val), dtype=torch.float64)
        self._y = torch.as_tensor(np.asarray(y_val), dtype=torch.int64)
        self._cache: dict[int, float] = {}

    @property
    def n(self) -> int:
        """Number of players (updates)."""
        return len(self.players)

    @property
    def evaluations(self) -> int:
        """Coalitions evaluated so far (cache misses)."""
        return len(self._cache)

    def __call__(self, coalition: frozenset[int]) -> float:
        """The metric of the coalition's aggregated model on the validation set."""
        mask = coalition_to_mask(coalition)
        cached = self._cache.get(mask)
        if cached is None:
            if any(not 0 <= i < self.n for i in coalition):
                raise ValuationError(
                    f"coalition {sorted(coalition)} names players outside 0..{self.n - 1}"
                )
            cached = self._score(self._coalition_weights(sorted(coalition)))
            self._cache[mask] = cached
        return cached

    def coalition_flat_weights(self, coalition: frozenset[int]) -> np.ndarray:
        """The coalition's aggregated model as a flat float64 vector (float32-rounded)."""
        return self._coalition_weights(sorted(coalition))

    # --- internals ---------------------------------------------------------------------
    def _coalition_weights(self, rows: list[int]) -> np.ndarray:
        if not rows:
            return self._global_flat
        sub = self._matrix[rows]
        samples = self._samples[rows]
        try:
            combined, _ = self.strategy.combine(sub, samples)
        except InvalidUpdateError as exc:
            if self.small_coalition == "error":
                raise ValuationError(
                    f"aggregator {self.strategy.name} refuses a coalition of {len(rows)}: {exc}"
                ) from None
            combined = am.weighted_mean(sub, samples)
        new_flat = self._global_flat + self.strategy.server_lr * combined
        # Strategy.aggregate casts the next global model to float32: value that same model.
        return new_flat.astype(np.float32).astype(np.float64)

    def _score(self, flat: np.ndarray) -> float:
        params: dict[str, torch.Tensor] = {}
        offset = 0
        for name, shape in zip(self._names, self._shapes, strict=True):
            size = int(np.prod(shape, dtype=np.int64))
            params[name] = torch.from_numpy(flat[offset : offset + size]).reshape(shape)
            offset += size
        with torch_settings(self.num_threads), torch.no_grad():
            logits = functional_call(self._model, params, (self._x,))  # (m, K) float64
            if self.metric == "accuracy":
                correct = int((logits.argmax(dim=1) == self._y).sum())
                return correct / int(self._y.shape[0])
            loss = float(F.cross_entropy(logits, self._y))
        if not np.isfinite(loss):
            raise ValuationError(
                "a coalition's model has a non-finite validation loss: use metric='accuracy' "
                "or flag the diverging update"
            )
        return -loss
