"""Differential privacy for updates: L2 clipping, Gaussian noise, and per-trainer accounting.

Each trainer clips its delta to norm ``C`` and adds ``N(0, (sigma·C)²)`` noise to every coordinate
before the update leaves the node (no trusted aggregator exists here: every peer sees every
update). One round is then a Gaussian mechanism on the trainer's whole dataset (user-level DP);
rounds compose, and Opacus' RDP accountant turns the sequence into ``(ε, δ)``.

Example
-------
>>> sigma = noise_multiplier_for_epsilon(8.0, delta=1e-5, rounds=20)
>>> noisy = privatize(delta, PrivacyConfig(clip_norm=1.0, noise_multiplier=sigma), seed=7)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast, get_args

import torch
from opacus.accountants import RDPAccountant
from opacus.accountants.utils import get_noise_multiplier

from marketplace.errors import ConfigError
from marketplace.fl.weights import Weights, l2_norm

log = logging.getLogger(__name__)


DPMode = Literal["dpsgd", "update"]
DPAccountant = Literal["rdp", "prv"]
DP_MODES: tuple[DPMode, ...] = get_args(DPMode)
DP_ACCOUNTANTS: tuple[DPAccountant, ...] = get_args(DPAccountant)


@dataclass(frozen=True)
class DPTerms:
    """A task's differential-privacy terms (part of the task document).

    Attributes
    ----------
    mode : str
        ``"dpsgd"``: record-level DP-SGD on each trainer's data (per-sample clip ``clip_norm``,
        Poisson sampling, see :mod:`marketplace.fl.dpsgd`); ``"update"``: trainer-level DP, the
        whole update clipped to ``clip_norm`` and noised once per round (:func:`privatize`;
        protects a trainer's whole dataset but costs far more accuracy, see docs/benchmarks.md).
    epsilon, delta : float
        The budget over the whole task, per trainer.
    clip_norm : float
        Per-sample gradient clip (``dpsgd``) or per-update clip (``update``).
    accountant : str
        Opacus accountant: ``"rdp"`` or ``"prv"``.
    """

    mode: DPMode = "dpsgd"
    epsilon: float = 8.0
    delta: float = 1e-5
    clip_norm: float = 1.0
    accountant: DPAccountant = "rdp"

    def __post_init__(self) -> None:
        if self.mode not in DP_MODES:
            raise ConfigError(f"unknown DP mode {self.mode!r}: use one of {DP_MODES}")
        if self.accountant not in DP_ACCOUNTANTS:
            raise ConfigError(
                f"unknown DP accountant {self.accountant!r}: use one of {DP_ACCOUNTANTS}"
            )
        if not self.epsilon > 0 or not 0 < self.delta < 1 or not self.clip_norm > 0:
            raise ConfigError(
                f"DP terms need epsilon > 0, delta in (0, 1) and clip_norm > 0, got "
                f"epsilon={self.epsilon}, delta={self.delta}, clip_norm={self.clip_norm}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> DPTerms:
        """Parse ``to_dict`` output; :class:`ConfigError` on unknown or missing fields."""
        if not isinstance(data, dict):
            raise ConfigError(f"DP terms must be a JSON object, got {type(data).__name__}")
        try:
            return cls(
                mode=cast(DPMode, str(data["mode"])),  # checked in __post_init__
                epsilon=float(data["epsilon"]),
                delta=float(data["delta"]),
                clip_norm=float(data["clip_norm"]),
                accountant=cast(DPAccountant, str(data.get("accountant", "rdp"))),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed DP terms: {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class PrivacyConfig:
    """Clip norm ``C``, noise multiplier ``sigma`` (noise std ``sigma·C``) and the target ``δ``."""

    clip_norm: float
    noise_multiplier: float
    delta: float = 1e-5

    def __post_init__(self) -> None:
        if self.clip_norm <= 0:
            raise ConfigError(f"DP clip_norm must be positive, got {self.clip_norm}")
        if self.noise_multiplier < 0:
            raise ConfigError(f"DP noise_multiplier must be >= 0, got {self.noise_multiplier}")
        if not 0 < self.delta < 1:
            raise ConfigError(f"DP delta must be in (0, 1), got {self.delta}")


def clip_update(delta: Mapping[str, torch.Tensor], clip_norm: float) -> tuple[Weights, float]:
    """Scale ``delta`` so that its global L2 norm is at most ``clip_norm``.

    Returns the clipped delta and the norm before clipping.
    """
    if clip_norm <= 0:
        raise ConfigError(f"clip_norm must be positive, got {clip_norm}")
    norm = l2_norm(delta)
    factor = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    return {k: (delta[k].double() * factor).float() for k in sorted(delta)}, norm


def add_gaussian_noise(delta: Mapping[str, torch.Tensor], std: float, *, seed: int) -> Weights:
    """``delta + N(0, std²)`` per coordinate, drawn from a ``torch.Generator`` seeded by ``seed``
    (tensors in sorted-key order, so the draw is reproducible)."""
    generator = torch.Generator().manual_seed(seed)
    out: Weights = {}
    for k in sorted(delta):
        noise = torch.randn(delta[k].shape, generator=generator, dtype=torch.float64)
        out[k] = (delta[k].double() + std * noise).float()
    return out


def privatize(delta: Mapping[str, torch.Tensor], config: PrivacyConfig, *, seed: int) -> Weights:
    """Clip to ``config.clip_norm`` then add noise of std ``noise_multiplier · clip_norm``."""
    clipped, _ = clip_update(delta, config.clip_norm)
    if config.noise_multiplier == 0:
        return clipped
    return add_gaussian_noise(clipped, config.noise_multiplier * config.clip_norm, seed=seed)


class PrivacyAccountant:
    """``(ε, δ)`` spent by each trainer over the rounds it took part in (Opacus RDP accountant).

    Parameters
    ----------
    delta : float
        The ``δ`` at which ``ε`` is reported.
    """

    def __init__(self, *, delta: float = 1e-5) -> None:
        if not 0 < delta < 1:
            raise ConfigError(f"DP delta must be in (0, 1), got {delta}")
        self.delta = delta
        self._accountants: dict[str, RDPAccountant] = {}

    def step(self, trainer: str, *, noise_multiplier: float, sample_rate: float = 1.0) -> None:
        """Record one round of ``trainer`` releasing a clipped update with noise ``sigma``.

        ``sample_rate`` is the chance the trainer is picked in a round (1.0: every round).
        """
        if noise_multiplier <= 0:
            raise ConfigError("accounting needs noise_multiplier > 0 (sigma = 0 gives ε = ∞)")
        acc = self._accountants.setdefault(trainer, RDPAccountant())
        acc.step(noise_multiplier=noise_multiplier, sample_rate=sample_rate)

    def epsilon(self, trainer: str) -> float:
        """ε spent so far by ``trainer`` (0.0 if it released nothing)."""
        acc = self._accountants.get(trainer)
        return 0.0 if acc is None else float(acc.get_epsilon(delta=self.delta))

    def epsilons(self) -> dict[str, float]:
        """ε per trainer, sorted by trainer."""
        return {t: self.epsilon(t) for t in sorted(self._accountants)}


def noise_multiplier_for_epsilon(
    target_epsilon: float, *, delta: float = 1e-5, rounds: int, sample_rate: float = 1.0
) -> float:
    """Smallest ``sigma`` (to Opacus' tolerance) whose ``rounds`` releases stay within
    ``target_epsilon``."""
    if target_epsilon <= 0 or rounds < 1:
        raise ConfigError("target_epsilon must be positive and rounds at least 1")
    return float(
        get_noise_multiplier(
            target_epsilon=target_epsilon,
            target_delta=delta,
            sample_rate=sample_rate,
            steps=rounds,
            accountant="rdp",
        )
    )
