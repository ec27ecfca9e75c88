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
from marketplace.fl.weights import Weights, flatten, scale, unflatten, zeros_like


@dataclass(frozen=True)
class RoundContext:
    """What a behaviour may look at when crafting its update."""

    server_round: int
    sender: str
    global_weights: Mapping[str, torch.Tensor]
    honest_deltas: Mapping[str, Weights]  # this round's honestly trained deltas, by sender
    seed: int
    num_trainers: int = 0  # senders this round (0: unknown), for attacks that size themselves
    num_attackers: int = 0  # colluding attackers among them (0: unknown)


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


# --- adaptive model poisoning (colluding, omniscient: they see the round's honest deltas) -----
def _honest_matrix(ctx: RoundContext) -> np.ndarray:
    """``(h, d)`` float64 matrix of this round's honest deltas, rows sorted by sender."""
    if not ctx.honest_deltas:
        raise ConfigError("adaptive attacks need at least one honest delta to imitate")
    return np.stack([flatten(ctx.honest_deltas[s]) for s in sorted(ctx.honest_deltas)])


def alie_z(n: int, f: int) -> float:
    """ALIE's ``z_max`` (Baruch et al., 2019): the largest shift, in honest standard deviations,
    that still leaves the attackers inside the majority: ``Phi^-1((n - s) / n)`` with
    ``s = floor(n/2 + 1) - f`` honest supporters needed."""
    from statistics import NormalDist

    s = int(np.floor(n / 2 + 1)) - f
    p = (n - s) / n
    return float(NormalDist().inv_cdf(min(max(p, 1e-6), 1 - 1e-6)))


def min_max_gamma(honest: np.ndarray, mean: np.ndarray, direction: np.ndarray) -> float:
    """Min-max (Shejwalkar & Houmansadr, 2021): the largest ``gamma`` with
    ``max_i ||mean + gamma·p - x_i|| <= max_{i,j} ||x_i - x_j||`` (binary search)."""
    d = np.sqrt(((honest[:, None, :] - honest[None, :, :]) ** 2).sum(-1))
    bound = float(d.max())
    return _search_gamma(
        lambda m: float(np.sqrt(((honest - m) ** 2).sum(1)).max()) <= bound, mean, direction
    )


def min_sum_gamma(honest: np.ndarray, mean: np.ndarray, direction: np.ndarray) -> float:
    """Min-sum (Shejwalkar & Houmansadr, 2021): the largest ``gamma`` with
    ``sum_i ||m - x_i||² <= max_i sum_j ||x_i - x_j||²`` for ``m = mean + gamma·p``."""
    d2 = ((honest[:, None, :] - honest[None, :, :]) ** 2).sum(-1)
    bound = float(d2.sum(1).max())
    return _search_gamma(lambda m: float(((honest - m) ** 2).sum()) <= bound, mean, direction)


def _search_gamma(ok: Any, mean: np.ndarray, direction: np.ndarray, start: float = 10.0) -> float:
    """The largest ``gamma`` with ``ok(mean + gamma·p)``, by the paper's 30-halving search."""
    gamma, step, best = start, start / 2, 0.0
    for _ in range(30):
        if ok(mean + gamma * direction):
            best = max(best, gamma)
            gamma += step
        else:
            gamma -= step
        step /= 2
    return best


@dataclass(frozen=True)
class _Adaptive(Behaviour):
    """Base of the colluding model-poisoning attacks: every attacker publishes the same crafted
    vector plus a small seeded jitter (``jitter`` times the honest per-coordinate std), so that the
    copies do not look identical to a copy detector."""

    honest: ClassVar[bool] = False
    trains: ClassVar[bool] = False  # crafts from the honest deltas alone
    jitter: float = 0.05

    def craft_update(self, trained_delta: Weights | None, ctx: RoundContext) -> Weights:
        honest = _honest_matrix(ctx)
        crafted = self.craft(honest, ctx)
        if self.jitter:
            rng = np.random.default_rng(ctx.seed)
            crafted = crafted + self.jitter * honest.std(axis=0) * rng.standard_normal(
                crafted.shape
            )
        return unflatten(crafted, ctx.global_weights)

    def craft(self, honest: np.ndarray, ctx: RoundContext) -> np.ndarray:
        raise NotImplementedError


@dataclass(frozen=True)
class ALIE(_Adaptive):
    """A little is enough (Baruch et al., 2019): ``mean - z·std`` per coordinate, with ``z``
    from the number of trainers and attackers (``z=None``) or given."""

    name: ClassVar[str] = "alie"
    z: float | None = None

    def craft(self, honest: np.ndarray, ctx: RoundContext) -> np.ndarray:
        n = ctx.num_trainers or honest.shape[0]
        z = self.z if self.z is not None else alie_z(n, ctx.num_attackers)
        out: np.ndarray = honest.mean(axis=0) - z * honest.std(axis=0)
        return out


@dataclass(frozen=True)
class IPM(_Adaptive):
    """Inner-product manipulation (Xie et al., 2020): ``-epsilon·mean`` of the honest deltas, so
    that the aggregate's inner product with the true descent direction turns negative."""

    name: ClassVar[str] = "ipm"
    epsilon: float = 0.5

    def craft(self, honest: np.ndarray, ctx: RoundContext) -> np.ndarray:
        out: np.ndarray = -self.epsilon * honest.mean(axis=0)
        return out


def _direction(honest: np.ndarray, kind: str) -> np.ndarray:
    mean: np.ndarray = honest.mean(axis=0)
    if kind == "std":
        spread: np.ndarray = honest.std(axis=0)
        return -spread
    if kind == "sign":
        signs: np.ndarray = np.sign(mean)
        return -signs
    if kind == "unit":
        norm = float(np.linalg.norm(mean))
        return -mean / norm if norm > 0 else mean
    raise ConfigError(f"unknown perturbation {kind!r}: use 'std', 'sign' or 'unit'")


@dataclass(frozen=True)
class MinMax(_Adaptive):
    """Min-max (Shejwalkar & Houmansadr, 2021): ``mean + gamma·p`` as far as possible while its
    largest distance to an honest delta stays within the honest deltas' own largest distance."""

    name: ClassVar[str] = "min_max"
    perturbation: str = "std"

    def craft(self, honest: np.ndarray, ctx: RoundContext) -> np.ndarray:
        mean, p = honest.mean(axis=0), _direction(honest, self.perturbation)
        out: np.ndarray = mean + min_max_gamma(honest, mean, p) * p
        return out


@dataclass(frozen=True)
class MinSum(_Adaptive):
    """Min-sum (Shejwalkar & Houmansadr, 2021): as min-max, bounding the sum of squared distances
    to the honest deltas by the largest such sum of an honest delta."""

    name: ClassVar[str] = "min_sum"
    perturbation: str = "std"

    def craft(self, honest: np.ndarray, ctx: RoundContext) -> np.ndarray:
        mean, p = honest.mean(axis=0), _direction(honest, self.perturbation)
        out: np.ndarray = mean + min_sum_gamma(honest, mean, p) * p
        return out


# --- backdoor ---------------------------------------------------------------------------------
TRIGGER_PIXELS = (54, 55, 62, 63)  # bottom-right 2x2 of an 8x8 digit (row-major)


def apply_trigger(
    x: np.ndarray, *, value: float = 3.0, pixels: tuple[int, ...] = TRIGGER_PIXELS
) -> np.ndarray:
    """A copy of the ``(n, 64)`` inputs with the trigger pixels set to ``value`` (in standardised
    units: 3 is far brighter than those corner pixels ever are)."""
    out = np.array(x, dtype=np.float32, copy=True)
    out[:, list(pixels)] = value
    return out


@dataclass(frozen=True)
class PixelBackdoor(Behaviour):
    """Pixel-pattern backdoor (Gu et al., 2017; Bagdasaryan et al., 2020): trains on its data plus
    a ``fraction`` of triggered copies labelled ``target``, then boosts its delta by ``boost``
    (1 = plain data poisoning). Clean accuracy barely moves; triggered inputs go to ``target``."""

    name: ClassVar[str] = "backdoor"
    honest: ClassVar[bool] = False
    target: int = 0
    fraction: float = 0.5
    value: float = 3.0
    boost: float = 1.0

    def poison_data(
        self, x: np.ndarray, y: np.ndarray, *, num_classes: int, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(seed)
        k = round(self.fraction * len(y))
        chosen = rng.choice(len(y), size=k, replace=False)
        poisoned = apply_trigger(np.asarray(x)[chosen], value=self.value)
        return (
            np.concatenate([np.asarray(x, dtype=np.float32), poisoned]),
            np.concatenate([np.asarray(y, dtype=np.int64), np.full(k, self.target, np.int64)]),
        )

    def craft_update(self, trained_delta: Weights | None, ctx: RoundContext) -> Weights:
        delta = super().craft_update(trained_delta, ctx)
        return delta if self.boost == 1.0 else scale(delta, self.boost)


def backdoor_success_rate(
    predict: Any, x: np.ndarray, y: np.ndarray, *, target: int = 0, value: float = 3.0
) -> float:
    """Share of inputs not of class ``target`` that ``predict`` (inputs -> labels) sends to
    ``target`` once triggered."""
    keep = np.asarray(y) != target
    if not keep.any():
        raise ConfigError("backdoor success needs inputs outside the target class")
    labels = np.asarray(predict(apply_trigger(np.asarray(x)[keep], value=value)))
    return float((labels == target).mean())


BEHAVIOURS: dict[str, type[Behaviour]] = {
    cls.name: cls
    for cls in (
        Behaviour,
        SignFlip,
        Scaled,
        GaussianNoise,
        LabelFlip,
        FreeRider,
        Copier,
        ALIE,
        IPM,
        MinMax,
        MinSum,
        PixelBackdoor,
    )
}


def get_behaviour(name: str, **params: Any) -> Behaviour:
    """A behaviour by name: ``honest``, ``sign_flip``, ``scaled``, ``gaussian_noise``,
    ``label_flip``, ``free_rider``, ``copier``, ``alie``, ``ipm``, ``min_max``, ``min_sum``,
    ``backdoor``; ``params`` are its fields (e.g. ``factor``)."""
    cls = BEHAVIOURS.get(name)
    if cls is None:
        raise ConfigError(f"unknown behaviour {name!r}: use one of {sorted(BEHAVIOURS)}")
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for behaviour {name!r}: {exc}") from None


__all__ = [
    "ALIE",
    "BEHAVIOURS",
    "IPM",
    "TRIGGER_PIXELS",
    "Behaviour",
    "Copier",
    "FreeRider",
    "GaussianNoise",
    "Honest",
    "LabelFlip",
    "MinMax",
    "MinSum",
    "PixelBackdoor",
    "RoundContext",
    "Scaled",
    "SignFlip",
    "alie_z",
    "apply_trigger",
    "backdoor_success_rate",
    "get_behaviour",
    "min_max_gamma",
    "min_sum_gamma",
]
