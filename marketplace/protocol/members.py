"""Who takes part in a task: its trainers (from ``TrainerJoined`` events) and oracle committee,
with the X25519 keys they registered — the recipients of every envelope in the task."""

from __future__ import annotations

from dataclasses import dataclass

from marketplace.chain.clients import Marketplace
from marketplace.errors import ChainError
from marketplace.units import checksum_address


@dataclass(frozen=True)
class TaskMembers:
    """A task's participants, addresses checksummed and sorted."""

    requester: str
    trainers: tuple[str, ...]
    oracles: tuple[str, ...]
    keys: dict[str, bytes]  # address -> X25519 public key (32 bytes), as registered

    def recipients(self, *, trainers: bool = True, oracles: bool = True) -> dict[str, bytes]:
        """Envelope recipients: the address → key map of the chosen groups."""
        chosen = (self.trainers if trainers else ()) + (self.oracles if oracles else ())
        return {a: self.keys[a] for a in sorted(set(chosen))}

    def is_trainer(self, address: str) -> bool:
        return checksum_address(address) in self.trainers


def load_members(market: Marketplace, task_id: int) -> TaskMembers:
    """Read the task's members and their keys from the chain (events + registry views); never
    fewer trainers than the task counts (:meth:`Marketplace.joined_trainers`)."""
    info = market.task(task_id)
    trainers = tuple(sorted(market.joined_trainers(task_id)))
    oracles = tuple(sorted(market.oracles(task_id)))
    keys: dict[str, bytes] = {}
    for addr in (*trainers, *oracles):
        key = market.participant(addr).encryption_key
        if key == bytes(32):
            raise ChainError(f"{addr} has no encryption key registered: it cannot receive updates")
        keys[addr] = key
    return TaskMembers(
        requester=checksum_address(info.requester),
        trainers=trainers,
        oracles=oracles,
        keys=keys,
    )
