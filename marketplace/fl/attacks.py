"""Trainer behaviours, honest or not, for evaluating strategies and contribution scores.

A :class:`Behaviour` has two hooks: :meth:`Behaviour.poison_data` (data side, before training) and
:meth:`Behaviour.craft_update` (model side, after training, with the round's honest deltas in view).
The simulator and the demo assign one per trainer, by name through :func:`get_behaviour`.

Example
-------
>>> behaviours = {"t03": get_behaviour("sign_flip"), "t07": get_behaviour("free_rider")}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from marketplace.errors import ConfigError
from marketplace.fl.weights import Weights, scale, zeros_like


@dataclass(frozen=True)
class RoundContext:
    """What a behaviour may look at when crafting its update."""

    server_round: int
    sender: str
    global_weights: Mapping[str, torch.Tensor]
    honest_deltas: Mapping[str, Weights]  # this round's honestly trained deltas, by sender
    seed: int


@dataclass(frozen=True)
class Behaviour:
    """Honest behaviour; subclasses override a hook to misbehave."""

    name: ClassVar[str] = "honest"
    honest: ClassVar[bool] = True
    trains: ClassVar[bool] = True  # False: the trainer never trains (its delta is not computed)

    def poison_data(
        self, x: np.ndarray, y: np.ndarray, *, num_classes: int, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The data this trainer actually trains on (default: unchanged)."""
        return x, y

    def craft_update(self, trained_delta: Weights | None, ctx: RoundContext) -> Weights:
        """The delta this trainer publishes (default: the one it trained)."""
        if trained_delta is None:
            raise ConfigError(f"{self.name} behaviour needs a trained delta")
        return trained_delta

    def describe(self) -> dict[str, Any]:
        """Name and parameters, for reports."""
        return {"name": self.name, **{k: getattr(self, k) for k in self.__dataclass_fields__}}


Honest = Behaviour


@dataclass(frozen=True)
class SignFlip(Behaviour):
    """Publishes ``-factor x`` its honest delta (pushes the model backwards)."""

    name: ClassVar[str] = "sign_flip"
    honest: ClassVar[bool] = False
    factor: float = 1.0

    def craft_update(self, trained_delta: Weights | None, ctx: RoundContext) -> Weights:
        return scale(super().craft_update(trained_delta, ctx), -self.factor)


@dataclass(frozen=True)
class Scaled(Behaviour):
    """Boosts its honest delta by ``factor`` to dominate a mean (model replacement style)."""

    name: ClassVar[str] = "scaled"
    honest: ClassVar[bool] = False
    factor: float = 10.0

    def craft_update(self, trained_delta: Weights | None, ctx: RoundContext) -> Weights:
        return scale(super().craft_update(trained_delta, ctx), self.factor)


@dataclass(frozen=True)
class GaussianNoise(Behaviour):
    """Publishes pure noise ``N(0, std²)`` per coordinate instead of training."""

    name: ClassVar[str] = "gaussian_noise"
    honest: ClassVar[bool] = False
    trains: ClassVar[bool] = False
    std: float = 0.1

    def craft_update(self, trained_delta: Weights | None, ctx: RoundContext) -> Weights:
        g = torch.Generator().manual_seed(ctx.seed)
        return {
            k: (self.std * torch.randn(v.shape, generator=g, dtype=torch.float64)).float()
            for k, v in sorted(ctx.global_weights.items())
        }


@dataclass(frozen=True)
class LabelFlip(Behaviour):
    """Trains honestly on flipped labels ``y -> K - 1 - y`` (data poisoning)."""

    name: ClassVar[str] = "label_flip"
    honest: ClassVar[bool] = False

    def poison_data(
        self, x: np.ndarray, y: np.ndarray, *, num_classes: int, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        return x, (num_classes - 1 - np.asarray(y)).astype(np.int64)


@dataclass(frozen=True)
class FreeRider(Behaviour):
    """Does not train: resubmits the global model (a zero delta) or a tiny-noise delta that looks
    like work (``noise_std > 0``)."""

    name: ClassVar[str] = "free_rider"
    honest: ClassVar[bool] = False
    trains: ClassVar[bool] = False
    noise_std: float = 0.0

    def craft_update(self, trained_delta: Weights | None, ctx: RoundContext) -> Weights:
        if self.noise_std == 0:
            return zeros_like(ctx.global_weights)
        return GaussianNoise(std=self.noise_std).craft_update(None, ctx)


@dataclass(frozen=True)
class Copier(Behaviour):
    """Does not train: resubmits another trainer's update of this round (``target``, or the first
    honest sender in order), optionally with tiny noise to hide the copy."""

    name: ClassVar[str] = "copier"
    honest: ClassVar[bool] = False
    trains: ClassVar[bool] = False
    target: str | None = None
    noise_std: float = 0.0

    def craft_update(self, trained_delta: Weights | None, ctx: RoundContext) -> Weights:
        candidates = sorted(s for s in ctx.honest_deltas if s != ctx.sender)
        if not candidates:
            raise ConfigError(
                "copier has nobody to copy from: it needs at least one honest trainer"
            )
        source = self.target if self.target and self.target in ctx.honest_deltas else candidates[0]
        copied = {k: v.clone() for k, v in sorted(ctx.honest_deltas[source].items())}
        if self.noise_std == 0:
            return copied
        noise = GaussianNoise(std=self.noise_std).craft_update(None, ctx)
        return {k: (copied[k].double() + noise[k].double()).float() for k in copied}


BEHAVIOURS: dict[str, type[Behaviour]] = {
    cls.name: cls
    for cls in (Behaviour, SignFlip, Scaled, GaussianNoise, LabelFlip, FreeRider, Copier)
}


def get_behaviour(name: str, **params: Any) -> Behaviour:
    """A behaviour by name: ``honest``, ``sign_flip``, ``scaled``, ``gaussian_noise``,
    ``label_flip``, ``free_rider``, ``copier``; ``params`` are its fields (e.g. ``factor``)."""
    cls = BEHAVIOURS.get(name)
    if cls is None:
        raise ConfigError(f"unknown behaviour {name!r}: use one of {sorted(BEHAVIOURS)}")
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for behaviour {name!r}: {exc}") from None


__all__ = [
    "BEHAVIOURS",
    "Behaviour",
    "Copier",
    "FreeRider",
    "GaussianNoise",
    "Honest",
    "LabelFlip",
    "RoundContext",
    "Scaled",
    "SignFlip",
    "get_behaviour",
]
