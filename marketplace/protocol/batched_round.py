"""A round's batched updates as a peer or oracle may use them: the chain's ``RoundCommitted``
record, the closer's published leaf set, and every leaf checked before use.

A leaf is used only if its signature recovers to its sender for this chain, market, task and
round, its sender is a trainer of the task and its bit is set in the recorded bitmap; a forged
or foreign leaf is dropped (and logged: it is evidence for ``challengeLeaf``). When the leaf set
does not rebuild the recorded root, or cannot be fetched and the caller stopped waiting for it
(``wait_for_set``), leaves the peer already holds (signed by their trainers, e.g. from gossip)
are used for the trainers whose bits are set: a trainer's own signature is what makes its update
usable; the tree only serves the on-chain proofs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from marketplace.chain.batch_client import RecordedBatch
from marketplace.crypto.update_leaf import UpdateLeaf
from marketplace.errors import (
    ContentNotFoundError,
    ContentUnavailableError,
    FedMarketError,
    StoreUnreachableError,
)
from marketplace.protocol.round_batch import (
    MAX_LEAF_SET_BYTES,
    BatchCheck,
    bitmap_members,
    check_batch,
    check_leaves,
    parse_leaf_set,
)
from marketplace.storage.base import ContentStore

log = logging.getLogger(__name__)


def usable_leaves(
    recorded: RecordedBatch,
    store: ContentStore,
    *,
    join_order: Sequence[str],
    chain_id: int,
    market_address: str,
    known: Mapping[str, UpdateLeaf] | None = None,
    wait_for_set: bool = False,
) -> tuple[UpdateLeaf, ...]:
    """The genuine, included leaves of ``recorded`` (sorted by sender).

    ``known`` maps a sender to a leaf this peer already holds for the round (from gossip). When
    those leaves alone rebuild the recorded root, bitmap and sample total, the batch holds exactly
    them and the leaf set is not fetched (an IPFS round trip on every peer's critical path).

    When they do not and no provider serves the leaf set, ``wait_for_set`` raises
    :class:`ContentUnavailableError` (the caller retries: using the partial set now would give this
    peer a different model from everyone who fetched it); otherwise the held leaves are used.
    :class:`StoreUnreachableError` (this peer's own store is down) always propagates."""
    args = {"chain_id": chain_id, "task_id": recorded.task_id, "round_": recorded.round}

    def against_record(leaves: Sequence[UpdateLeaf]) -> BatchCheck:
        return check_batch(
            leaves,
            root=recorded.root,
            included=recorded.included,
            samples=recorded.samples,
            join_order=join_order,
            market_address=market_address,
            **args,
        )

    included = bitmap_members(recorded.included, join_order)
    held = [leaf for s, leaf in (known or {}).items() if s in included]
    if held and len(held) == len(included):
        own = against_record(held)
        if own.root_matches and own.bits_match and own.samples_match and not own.forged:
            return tuple(sorted(own.usable, key=lambda leaf: leaf.sender.lower()))
    leaves: list[UpdateLeaf] = []
    try:
        leaves = parse_leaf_set(store.get(recorded.leaves_cid, max_size=MAX_LEAF_SET_BYTES))
    except StoreUnreachableError:
        raise
    except ContentNotFoundError as exc:
        if wait_for_set:
            raise ContentUnavailableError(
                f"round {recorded.round}: the leaf set {recorded.leaves_cid} of the batch by "
                f"{recorded.closer} is not available from any IPFS provider yet ({exc}) and gossip "
                f"brought {len(held)} of its {len(included)} leaves; retrying"
            ) from None
        log.warning(
            "round %d leaf set %s unavailable (%s): using the %d of %d leaves held from gossip",
            recorded.round, recorded.leaves_cid, exc, len(held), len(included),
        )  # fmt: skip
    except FedMarketError as exc:  # oversize or malformed: the closer's fault, not transient
        log.warning(
            "round %d leaf set %s unavailable (%s)", recorded.round, recorded.leaves_cid, exc
        )
    if leaves:
        check = against_record(leaves)
        for leaf in check.forged:
            log.error(
                "round %d batch by %s holds a forged or foreign leaf for %s: dropped (evidence "
                "for challengeLeaf)",
                recorded.round, recorded.closer, leaf.sender,
            )  # fmt: skip
        if check.root_matches:
            if not (check.bits_match and check.samples_match):
                log.error(
                    "round %d batch by %s: bitmap or sample total disagrees with its leaves",
                    recorded.round,
                    recorded.closer,
                )
            return tuple(sorted(check.usable, key=lambda leaf: leaf.sender.lower()))
        log.error("round %d leaf set does not rebuild the recorded root", recorded.round)
    mine = check_leaves(
        (leaf for s, leaf in (known or {}).items() if s in included),
        members=join_order,
        market_address=market_address,
        **args,
    )
    return tuple(sorted(mine.valid, key=lambda leaf: leaf.sender.lower()))
