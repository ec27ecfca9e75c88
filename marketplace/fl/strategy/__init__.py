"""Aggregation strategies, one per file, all subclasses of :class:`Strategy`.

>>> strategy = get_strategy("trimmed_mean", beta=0.3)
>>> result = strategy.aggregate(global_weights, updates)
"""

from __future__ import annotations

from typing import Any

from marketplace.errors import ConfigError
from marketplace.fl.strategy.base import Strategy
from marketplace.fl.strategy.bucketing import Bucketing
from marketplace.fl.strategy.bulyan import Bulyan
from marketplace.fl.strategy.centered_clipping import CenteredClipping
from marketplace.fl.strategy.fedavg import FedAvg
from marketplace.fl.strategy.fedprox import FedProx
from marketplace.fl.strategy.krum import Krum, MultiKrum
from marketplace.fl.strategy.median import Median
from marketplace.fl.strategy.trimmed_mean import TrimmedMean

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (
        FedAvg,
        FedProx,
        Median,
        TrimmedMean,
        Krum,
        MultiKrum,
        Bulyan,
        CenteredClipping,
        Bucketing,
    )
}


def get_strategy(name: str, **params: Any) -> Strategy:
    """Build a strategy by name (``fedavg``, ``fedprox``, ``median``, ``trimmed_mean``, ``krum``,
    ``multikrum``, ``bulyan``, ``centered_clipping``, ``bucketing``) with keyword parameters."""
    cls = STRATEGIES.get(name)
    if cls is None:
        raise ConfigError(f"unknown aggregation strategy {name!r}: use one of {sorted(STRATEGIES)}")
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for strategy {name!r}: {exc}") from None


__all__ = [
    "STRATEGIES",
    "Bucketing",
    "Bulyan",
    "CenteredClipping",
    "FedAvg",
    "FedProx",
    "Krum",
    "Median",
    "MultiKrum",
    "Strategy",
    "TrimmedMean",
    "get_strategy",
]
