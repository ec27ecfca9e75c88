"""Which deployment a piece of local state belongs to.

A node keeps local state per task (its journal: salts, committed CIDs, chosen payout roots). A
task id alone does not name a task: a devnet that is stopped, restarted and redeployed has the same
chain id, the same contract addresses (the deployer's nonces start again at 0) and counts tasks from
1 again. State written for the old task 1 must never be read back for the new one — an oracle that
did so committed the previous chain's payout root without scoring.

A :class:`TaskScope` names a task by ``(chain id, market address, task id, hash of the block that
created it)``. The block hash differs between two runs of the same devnet (different timestamps),
so the same task id on a redeployed market gets a different scope.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from marketplace.errors import ConfigError


@dataclass(frozen=True)
class TaskScope:
    """The deployment and creation block a task's local state is keyed by."""

    chain_id: int
    market: str
    task_id: int
    created_block_hash: str

    @property
    def key(self) -> str:
        """One string that differs for any two tasks on any two deployments."""
        block = self.created_block_hash.lower()
        return f"{self.chain_id}:{self.market.lower()}:{self.task_id}:{block}"

    def describe(self) -> str:
        return (
            f"task {self.task_id} of market {self.market} on chain {self.chain_id} "
            f"(created in block {self.created_block_hash[:12]}…)"
        )


def task_scope(chain_id: int, market: str, task_id: int, created_event: Any) -> TaskScope:
    """The scope of ``task_id`` from its ``TaskCreated`` log (a web3 event dict)."""
    try:
        raw = created_event["blockHash"]
    except (KeyError, TypeError):
        raise ConfigError(f"task {task_id}: its creation event has no block hash") from None
    block_hash = raw.hex() if isinstance(raw, bytes | bytearray) else str(raw)
    if not block_hash.startswith("0x"):
        block_hash = "0x" + block_hash
    return TaskScope(int(chain_id), str(market), int(task_id), block_hash)
