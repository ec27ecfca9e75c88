"""Reading a round's batch without any key: which of its published leaves are genuine.

A ``RoundCommitted`` event says which trainers a closer included (a bitmap over the join order)
and where the leaf set is; each leaf carries its trainer's update CID, digest and sample count
and that trainer's EIP-712 signature. The indexer keeps the leaves that rebuild the recorded root
and whose signatures recover to included trainers of the task
(:func:`~marketplace.protocol.round_batch.check_batch`); nothing here trusts the content.
"""

from __future__ import annotations

from dataclasses import dataclass

from marketplace.chain.batch_client import RecordedBatch
from marketplace.crypto.update_leaf import UpdateLeaf
from marketplace.errors import FedMarketError
from marketplace.indexer.reports import UNAVAILABLE
from marketplace.protocol.round_batch import MAX_LEAF_SET_BYTES, check_batch, parse_leaf_set
from marketplace.storage.base import ContentStore

VERIFIED = "verified"  # the leaf set rebuilds the recorded root; leaves hold the genuine ones
MISMATCH = "mismatch"  # a leaf set under that CID, but not the one the root commits to


@dataclass(frozen=True)
class BatchRead:
    """What the indexer learned from one batch's leaf set."""

    status: str
    leaves: tuple[UpdateLeaf, ...]
    detail: str


def read_batch(
    store: ContentStore | None,
    recorded: RecordedBatch,
    *,
    join_order: list[str],
    chain_id: int,
    market_address: str,
) -> BatchRead:
    """Fetch ``recorded``'s leaf set and keep its genuine, included leaves (sorted by sender)."""
    if store is None:
        return BatchRead(UNAVAILABLE, (), "no content store configured")
    try:
        leaves = parse_leaf_set(store.get(recorded.leaves_cid, max_size=MAX_LEAF_SET_BYTES))
    except (FedMarketError, ValueError, OSError) as exc:
        return BatchRead(UNAVAILABLE, (), f"{type(exc).__name__}: {exc}"[:300])
    check = check_batch(
        leaves, root=recorded.root, included=recorded.included, samples=recorded.samples,
        join_order=join_order, market_address=market_address, chain_id=chain_id,
        task_id=recorded.task_id, round_=recorded.round,
    )  # fmt: skip
    if not check.root_matches:
        return BatchRead(MISMATCH, (), "the leaf set does not rebuild the recorded root")
    usable = tuple(sorted(check.usable, key=lambda leaf: leaf.sender.lower()))
    notes = [f"{len(usable)} of {recorded.count} leaves genuine"]
    if check.forged:
        notes.append(f"{len(check.forged)} forged or foreign (challengeable)")
    if not (check.bits_match and check.samples_match):
        notes.append("bitmap or sample total disagrees with the leaves")
    return BatchRead(VERIFIED, usable, "; ".join(notes))
