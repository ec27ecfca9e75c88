"""The stored rounds of a task, as the unlearning procedures read them.

A task's history is what every peer already keeps (and IPFS stores, digests on-chain): the global
model that started each round and each trainer's update of that round. Unlearning only *reads*
it; the new training work is done by a :class:`LocalTrainer`, the one thing that needs a trainer's
private data (in the network: that trainer's own node; in a simulation: a closure over its rows).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from marketplace.errors import ConfigError
from marketplace.fl.serialization import dump_weights
from marketplace.fl.strategy import Strategy
from marketplace.fl.updates import ClientUpdate
from marketplace.fl.weights import Weights

Withdrawn = str | Collection[str]
"""One trainer (address) or several whose data must be forgotten together."""


def as_set(withdrawn: Withdrawn) -> frozenset[str]:
    """``withdrawn`` as a set of trainers."""
    return frozenset([withdrawn]) if isinstance(withdrawn, str) else frozenset(withdrawn)


class LocalTrainer(Protocol):
    """Train ``trainer`` for ``epochs`` local epochs from ``start`` in ``round``; return its update.

    Must be deterministic in its arguments (seed derived from trainer and round, CPU, float32), so
    that a peer recomputing a trainer's work, or the trainer itself twice, gets the same bits.
    """

    def __call__(self, trainer: str, round: int, start: Weights, epochs: int) -> ClientUpdate: ...


@dataclass(frozen=True)
class StoredHistory:
    """Rounds ``1..R`` of a finished task, possibly loaded lazily.

    Parameters
    ----------
    rounds : int
        Number of rounds ``R``; the final model is the global model of round ``R + 1``.
    participants : mapping round -> mapping trainer -> num_samples
        Who committed an update in each round (the on-chain record), with its sample count.
    global_weights : callable round -> Weights
        The global model that started a round (loaded on demand: unlearning needs few of them).
    updates : callable round -> sequence of ClientUpdate
        A round's stored updates (loaded on demand).
    """

    rounds: int
    participants: Mapping[int, Mapping[str, int]]
    global_weights: Callable[[int], Weights]
    updates: Callable[[int], Sequence[ClientUpdate]]

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise ConfigError("a history needs at least one round")
        missing = [r for r in range(1, self.rounds + 1) if r not in self.participants]
        if missing:
            raise ConfigError(f"the history lacks the participants of rounds {missing[:5]}")

    def first_contribution(self, withdrawn: Withdrawn) -> int | None:
        """The first round any of ``withdrawn`` committed an update in (``None``: none did)."""
        gone = as_set(withdrawn)
        for r in range(1, self.rounds + 1):
            if gone & set(self.participants[r]):
                return r
        return None

    def remaining(self, round_: int, withdrawn: Withdrawn) -> dict[str, int]:
        """The round's participants other than ``withdrawn``, sorted by address."""
        gone = as_set(withdrawn)
        part = self.participants[round_]
        return {t: part[t] for t in sorted(part) if t not in gone}

    @classmethod
    def in_memory(
        cls, global_weights: Sequence[Weights], updates: Sequence[Sequence[ClientUpdate]]
    ) -> StoredHistory:
        """A history held in memory: ``global_weights[r - 1]`` and ``updates[r - 1]`` per round."""
        if len(global_weights) != len(updates):
            raise ConfigError("one global model and one update list per round")
        parts = {r: {u.sender: u.num_samples for u in us} for r, us in enumerate(updates, start=1)}
        return cls(
            rounds=len(updates),
            participants=parts,
            global_weights=lambda r: global_weights[r - 1],
            updates=lambda r: list(updates[r - 1]),
        )


def weights_digest(weights: Mapping[str, object]) -> bytes:
    """sha256 of the weights' canonical safetensors bytes (the on-chain model digest)."""
    return hashlib.sha256(dump_weights(weights)).digest()  # type: ignore[arg-type]


def train_and_record(
    *,
    start: Weights,
    rounds: int,
    samples: Mapping[str, int],
    train: LocalTrainer,
    strategy: Strategy,
    epochs: int,
) -> tuple[StoredHistory, Weights]:
    """Run ``rounds`` rounds with every trainer of ``samples`` and keep what a task stores.

    Returns the history (global models and updates, in memory) and the final model. Used by
    simulations, tests and the benchmark to produce the record unlearning reads.
    """
    globals_: list[Weights] = []
    updates: list[list[ClientUpdate]] = []
    weights = start
    for r in range(1, rounds + 1):
        globals_.append(weights)
        round_updates = [
            ClientUpdate(t, train(t, r, weights, epochs).delta, samples[t]) for t in sorted(samples)
        ]
        updates.append(round_updates)
        weights = strategy.aggregate(weights, round_updates).weights
    return StoredHistory.in_memory(globals_, updates), weights
