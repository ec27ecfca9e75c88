"""The round's closer: check the gathered leaves, publish the leaf set, send one ``commitRound``;
and a trainer's proofs of its own batched leaves (its fallback pay on a failed task).

The closer is one of the task's trainers (:func:`~marketplace.protocol.round_batch.closer_for`);
its stake stands behind every leaf it includes, so :func:`close_round` keeps only leaves that
:func:`~marketplace.protocol.round_batch.check_leaves` accepts (signed by a trainer of the task
for this chain, market, task and round). The leaf set is published before the transaction, so
every peer can rebuild the root the chain records. Used by the trainer node (``node run``) and,
with stand-in CIDs, by the gas benchmark (``scripts/round_gas.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from marketplace.chain.batch_client import BatchCommits, RecordedBatch
from marketplace.crypto.update_leaf import UpdateLeaf
from marketplace.errors import BatchError, FedMarketError, TransactionRevertedError
from marketplace.protocol.round_batch import (
    MAX_LEAF_SET_BYTES,
    Batch,
    bitmap_members,
    build_batch,
    check_leaves,
    leaf_set_json,
    parse_leaf_set,
)
from marketplace.storage.base import ContentStore

log = logging.getLogger(__name__)

NO_MODEL = b"\x00" * 32


@dataclass(frozen=True)
class ClosedRound:
    """What :func:`close_round` committed, and the leaves it refused (with why)."""

    batch: Batch
    leaves_cid: str
    rejected: tuple[tuple[UpdateLeaf, str], ...]


def close_round(
    batches: BatchCommits,
    closer: LocalAccount,
    leaves: Iterable[UpdateLeaf],
    *,
    join_order: Sequence[str],
    task_id: int,
    round_: int,
    publish: Callable[[bytes], str],
    model_digest: bytes = NO_MODEL,
    model_cid: str = "",
) -> ClosedRound:
    """Commit round ``round_``'s batch over the valid ones of ``leaves``.

    ``publish`` stores the leaf set's JSON and returns its CID (the content store's ``put``).
    ``model_digest``/``model_cid`` post the model that starts the round (round > 1). Raises
    :class:`BatchError` when no leaf is valid, and the contract's revert otherwise (a batch
    already sent, a direct commit already made, the deadline passed).
    """
    market = batches.market
    checked = check_leaves(
        leaves,
        members=join_order,
        chain_id=market.deployment.chain_id,
        task_id=task_id,
        round_=round_,
        market_address=market.market.address,
    )
    for leaf, why in checked.rejected:
        log.warning("round %d: leaf of %s left out of the batch: %s", round_, leaf.sender, why)
    batch = build_batch(checked.valid, join_order=join_order, market_address=market.market.address)
    leaves_cid = publish(leaf_set_json(batch.leaves))
    batches.commit_round(
        closer, batch, leaves_cid=leaves_cid, model_digest=model_digest, model_cid=model_cid
    )
    return ClosedRound(batch, leaves_cid, checked.rejected)


def own_leaf_proof(
    recorded: RecordedBatch,
    store: ContentStore,
    leaf: UpdateLeaf,
    *,
    join_order: Sequence[str],
    market_address: str,
) -> list[bytes]:
    """The Merkle proof of this trainer's own ``leaf`` in ``recorded`` (rebuilt from the
    closer's published leaf set); :class:`BatchError` when the set is unavailable, does not
    rebuild the recorded root, or does not hold ``leaf``."""
    if leaf.sender not in bitmap_members(recorded.included, join_order):
        raise BatchError(f"{leaf.sender} is not in round {recorded.round}'s batch")
    raw = store.get(recorded.leaves_cid, max_size=MAX_LEAF_SET_BYTES)
    published = parse_leaf_set(raw)
    if leaf not in published:
        raise BatchError(f"round {recorded.round}'s leaf set does not hold {leaf.sender}'s leaf")
    rebuilt = build_batch(published, join_order=join_order, market_address=market_address)
    if rebuilt.root != recorded.root:
        raise BatchError(f"round {recorded.round}'s leaf set does not rebuild the recorded root")
    return rebuilt.proof(leaf.sender)


def prove_own_leaves(
    batches: BatchCommits,
    store: ContentStore,
    trainer: LocalAccount,
    task_id: int,
    own: Mapping[int, UpdateLeaf],
    *,
    done: Callable[[int], bool],
    record: Callable[[int], None],
) -> list[int]:
    """Credit each of ``trainer``'s batched leaves (``own``: round -> its signed leaf) to its
    samples on record with ``proveSamples`` — the weight of its fallback pay on a failed task.

    ``done(round)`` says a round was already proven (the journal), ``record(round)`` notes one
    just proven. A round whose leaf cannot be proven (leaf set unavailable, leaf not in it) is
    logged and skipped: the trainer still claims with the samples it has. Returns the rounds
    proven now."""
    market = batches.market
    recorded = batches.batches(task_id)
    order = batches.join_order(task_id)
    proven: list[int] = []
    for round_, leaf in sorted(own.items()):
        batch = recorded.get(round_)
        if (
            batch is None
            or done(round_)
            or leaf.sender not in bitmap_members(batch.included, order)
        ):
            continue
        try:
            proof = own_leaf_proof(
                batch, store, leaf, join_order=order, market_address=market.market.address
            )
            batches.prove_samples(trainer, batch, leaf, proof)
        except TransactionRevertedError as exc:
            if exc.error_name != "TaskMarketLeafSettled":
                raise
        except FedMarketError as exc:
            log.warning("round %d: own batched leaf not proven: %s", round_, exc)
            continue
        record(round_)
        proven.append(round_)
    return proven
