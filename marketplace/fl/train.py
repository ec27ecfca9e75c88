"""Local training and evaluation on CPU, deterministic under a seed.

``train_local`` starts from the round's global weights, runs a few epochs of minibatch SGD/Adam
(optionally with FedProx's proximal term) and returns the weight delta (update - global).

Example
-------
>>> result = train_local(spec, global_weights, splits.train.subset(part), TrainConfig(epochs=2))
>>> evaluate(spec, apply_delta(global_weights, result.delta), splits.test.x, splits.test.y).accuracy
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

from marketplace.errors import ConfigError
from marketplace.fl.data import Dataset
from marketplace.fl.models import ModelSpec, build_model
from marketplace.fl.weights import (
    Weights,
    apply_delta,
    check_finite,
    check_same_layout,
    get_weights,
    weight_delta,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Local training hyper-parameters (one trainer, one round)."""

    epochs: int = 1  # passes over the local data per round
    batch_size: int = 32
    lr: float = 0.05
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = 0.0  # SGD only; the optimizer state is fresh every round
    weight_decay: float = 0.0
    fedprox_mu: float = 0.0  # > 0 adds (mu/2)·||w - w_global||² (FedProx)
    seed: int = 0  # shuffling; the simulator derives one per trainer and round
    num_threads: int = 1  # torch intra-op threads while training

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch_size must be at least 1")
        if self.lr <= 0:
            raise ConfigError(f"learning rate must be positive, got {self.lr}")
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.fedprox_mu < 0 or self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ConfigError("fedprox_mu and weight_decay must be >= 0 and momentum in [0, 1)")
        if self.num_threads < 1:
            raise ConfigError("num_threads must be at least 1")

    def with_seed(self, seed: int) -> TrainConfig:
        """A copy with another shuffling seed."""
        return replace(self, seed=seed)


@dataclass(frozen=True)
class LocalResult:
    """One trainer's round: the delta (update - global), its sample count and mean train loss."""

    delta: Weights
    num_samples: int
    loss: float


@dataclass(frozen=True)
class EvalResult:
    """Accuracy and mean cross-entropy on a labelled set, and per-class accuracy (NaN if absent)."""

    accuracy: float
    loss: float
    per_class_accuracy: tuple[float, ...]
    num_samples: int


# torch's thread count and deterministic flag are process-wide: two blocks overlapping on threads
# would restore each other's values (and could leave determinism on for the whole process), so
# blocks run one at a time. Re-entrant: a block may call code that opens another.
_SETTINGS_LOCK = threading.RLock()


@contextlib.contextmanager
def torch_settings(num_threads: int) -> Iterator[None]:
    """Set torch's thread count and deterministic mode for the block, then restore both.

    Thread-safe: blocks in different threads are serialized (one peer per process, the deployed
    case, never waits).
    """
    with _SETTINGS_LOCK:
        old_threads = torch.get_num_threads()
        old_det = torch.are_deterministic_algorithms_enabled()
        torch.set_num_threads(num_threads)
        torch.use_deterministic_algorithms(True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(old_det)
            torch.set_num_threads(old_threads)


def train_local(
    model_spec: ModelSpec,
    global_weights: Mapping[str, torch.Tensor],
    dataset: Dataset,
    config: TrainConfig,
) -> LocalResult:
    """Train from ``global_weights`` on ``dataset`` and return the delta.

    Deterministic on CPU: shuffling uses a ``torch.Generator`` seeded by ``config.seed``, the
    global RNG is not consumed, and deterministic algorithms are on during the call.
    """
    if len(dataset) == 0:
        raise ConfigError("cannot train on an empty dataset: this trainer got no rows")
    model = build_model(model_spec)
    reference = get_weights(model)
    check_same_layout(reference, global_weights, what="global weights")
    check_finite(global_weights, what="global weights")
    start = {k: global_weights[k].detach().float().clone() for k in sorted(global_weights)}
    model.load_state_dict(start, strict=False)

    x = torch.from_numpy(dataset.x)
    y = torch.from_numpy(dataset.y)
    n = x.shape[0]
    generator = torch.Generator().manual_seed(config.seed)
    optimizer = _make_optimizer(model, config)
    anchor = (
        [start[name].clone() for name, _ in model.named_parameters()] if config.fedprox_mu else []
    )

    losses: list[float] = []
    with torch_settings(config.num_threads):
        model.train()
        for _ in range(config.epochs):
            order = torch.randperm(n, generator=generator)
            for begin in range(0, n, config.batch_size):
                batch = order[begin : begin + config.batch_size]
                logits = model(x[batch])
                loss = F.cross_entropy(logits, y[batch])
                if config.fedprox_mu:
                    prox = sum(
                        (p - a).pow(2).sum()
                        for p, a in zip(model.parameters(), anchor, strict=True)
                    )
                    loss = loss + 0.5 * config.fedprox_mu * prox
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                optimizer.step()
                losses.append(float(loss.detach()))
        model.eval()
    delta = weight_delta(get_weights(model), start)
    return LocalResult(delta=delta, num_samples=n, loss=float(np.mean(losses)))


def _make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


@functools.lru_cache(maxsize=16)
def _skeleton(spec_json: str) -> nn.Module:
    """A module of the spec's architecture, used only through ``functional_call`` (never mutated),
    so valuation can evaluate thousands of coalitions without rebuilding it."""
    return build_model(ModelSpec.from_json(spec_json))


def predict_logits(
    model_spec: ModelSpec, weights: Mapping[str, torch.Tensor], x: np.ndarray | torch.Tensor
) -> torch.Tensor:
    """Logits ``(n, K)`` of the model with ``weights`` on inputs ``x``."""
    model = _skeleton(model_spec.to_json())
    check_same_layout(get_weights(model), weights, what="weights")
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32)) if not isinstance(x, torch.Tensor) else x
    with torch.no_grad():
        out: torch.Tensor = functional_call(model, dict(weights), (xt.float(),))
    return out


def evaluate(
    model_spec: ModelSpec,
    weights: Mapping[str, torch.Tensor],
    x: np.ndarray,
    y: np.ndarray,
) -> EvalResult:
    """Accuracy, mean cross-entropy and per-class accuracy of ``weights`` on ``(x, y)``."""
    yt = torch.as_tensor(np.asarray(y, dtype=np.int64))
    if yt.shape[0] == 0:
        raise ConfigError("cannot evaluate on an empty set")
    logits = predict_logits(model_spec, weights, x)
    pred = logits.argmax(dim=1)
    correct = pred == yt
    per_class = []
    for c in range(model_spec.num_classes):
        mask = yt == c
        per_class.append(float(correct[mask].float().mean()) if bool(mask.any()) else float("nan"))
    loss = float(F.cross_entropy(logits, yt))
    return EvalResult(
        accuracy=float(correct.float().mean()),
        loss=loss if np.isfinite(loss) else float("inf"),
        per_class_accuracy=tuple(per_class),
        num_samples=int(yt.shape[0]),
    )


def train_centralized(
    model_spec: ModelSpec, dataset: Dataset, config: TrainConfig
) -> tuple[Weights, float]:
    """Train from the spec's initial weights on all of ``dataset`` (the centralized baseline).

    Returns the final weights and the mean training loss.
    """
    start = get_weights(build_model(model_spec))
    result = train_local(model_spec, start, dataset, config)
    return apply_delta(start, result.delta), result.loss
