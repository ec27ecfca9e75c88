"""Messages of a round: a trainer's ``ClientUpdate`` and a strategy's ``AggregateResult``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from marketplace.errors import InvalidUpdateError
from marketplace.fl.weights import Weights, check_finite, check_same_layout


@dataclass(frozen=True)
class ClientUpdate:
    """One trainer's contribution to a round: its weight delta (update - global, float32, sorted
    keys) and the number of samples it trained on."""

    sender: str
    delta: Weights
    num_samples: int


@dataclass(frozen=True)
class AggregateResult:
    """A strategy's output for a round.

    ``weights`` is the next global model, ``delta`` the applied aggregate delta, ``accepted`` the
    senders whose updates entered the aggregate (all of them for FedAvg; Krum's choice for Krum),
    ``rejected`` the others. Senders are sorted.
    """

    weights: Weights
    delta: Weights
    accepted: tuple[str, ...]
    rejected: tuple[str, ...] = ()


def validate_updates(
    global_weights: Mapping[str, torch.Tensor], updates: Sequence[ClientUpdate]
) -> list[ClientUpdate]:
    """Check a round's updates and return them sorted by sender.

    Raises ``InvalidUpdateError`` on: no updates, a duplicate sender, a non-positive sample count,
    tensor names or shapes that differ from the global model, or NaN/Inf anywhere.
    """
    if not updates:
        raise InvalidUpdateError("no updates to aggregate: a round needs at least one update")
    check_finite(global_weights, what="global weights")
    seen: set[str] = set()
    for u in updates:
        if not isinstance(u, ClientUpdate):
            raise InvalidUpdateError(f"expected ClientUpdate, got {type(u).__name__}")
        if u.sender in seen:
            raise InvalidUpdateError(f"two updates from sender {u.sender!r}: one per round")
        seen.add(u.sender)
        if (
            isinstance(u.num_samples, bool)
            or not isinstance(u.num_samples, int)
            or u.num_samples < 1
        ):
            raise InvalidUpdateError(
                f"update from {u.sender!r} claims {u.num_samples!r} samples: must be a positive int"
            )
        check_same_layout(global_weights, u.delta, what=f"update from {u.sender!r}")
        check_finite(u.delta, what=f"update from {u.sender!r}")
    return sorted(updates, key=lambda u: u.sender)
