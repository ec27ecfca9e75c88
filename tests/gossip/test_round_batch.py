"""Batched round commitments off-chain: signed leaves, their checks, the batch's tree and bitmap,
the closer election, the published leaf set and which leaves a peer may use (no services: the
embedded store; the on-chain half is tests/contracts/test_round_batches.py)."""

from __future__ import annotations

import dataclasses

import pytest
from eth_account import Account

from marketplace.chain.batch_client import RecordedBatch
from marketplace.crypto.update_leaf import UpdateLeaf, sign_update_leaf, verify_update_leaf
from marketplace.errors import (
    BatchError,
    ContentUnavailableError,
    SignatureError,
    StoreUnreachableError,
)
from marketplace.protocol.batched_round import usable_leaves
from marketplace.protocol.round_batch import (
    bitmap,
    bitmap_members,
    build_batch,
    check_batch,
    check_leaves,
    closer_for,
    leaf_set_json,
    parse_leaf_set,
)
from marketplace.storage.cid import raw_cid
from marketplace.storage.embedded import EmbeddedStore
from marketplace.valuation.merkle import process_proof

MARKET = "0x" + "ab" * 20
CHAIN = 31337
TRAINERS = [Account.from_key(bytes([i + 1]) * 32) for i in range(5)]
ORDER = [t.address for t in TRAINERS]


def leaf(i: int, round_: int = 1, task: int = 7, samples: int = 10) -> UpdateLeaf:
    payload = f"u{task}-{round_}-{i}".encode()
    return sign_update_leaf(
        TRAINERS[i], chain_id=CHAIN, task_id=task, round=round_, cid=raw_cid(payload),
        digest=bytes(32 - len(payload)) + payload[:32], num_samples=samples, market_address=MARKET,
    )  # fmt: skip


def args(round_: int = 1) -> dict[str, object]:
    return {"chain_id": CHAIN, "task_id": 7, "round_": round_, "market_address": MARKET}


def test_leaf_signature_binds_chain_task_round_and_fields():
    good = leaf(0)
    assert (
        verify_update_leaf(
            good,
            expected_chain_id=CHAIN,
            expected_task_id=7,
            expected_round=1,
            market_address=MARKET,
        )
        == TRAINERS[0].address
    )
    with pytest.raises(SignatureError, match="replay refused"):
        verify_update_leaf(
            good,
            expected_chain_id=CHAIN,
            expected_task_id=7,
            expected_round=2,
            market_address=MARKET,
        )
    altered = dataclasses.replace(good, num_samples=11)
    with pytest.raises(SignatureError, match="forged or altered"):
        verify_update_leaf(
            altered, expected_chain_id=CHAIN, expected_task_id=7, expected_round=1,
            market_address=MARKET,
        )  # fmt: skip
    assert UpdateLeaf.from_json(good.to_json()) == good


def test_check_leaves_drops_forged_foreign_and_second_leaves():
    outsider = Account.from_key(b"\x99" * 32)
    foreign = sign_update_leaf(
        outsider, chain_id=CHAIN, task_id=7, round=1, cid=raw_cid(b"x"), digest=b"\x01" * 32,
        num_samples=5, market_address=MARKET,
    )  # fmt: skip
    forged = dataclasses.replace(leaf(0), sender=TRAINERS[1].address)
    second = leaf(2, samples=99)
    checked = check_leaves([leaf(0), leaf(2), second, forged, foreign], members=ORDER, **args())
    assert checked.valid == (leaf(0), leaf(2))
    reasons = dict((lf.sender, why) for lf, why in checked.rejected)
    assert "not a trainer" in reasons[outsider.address]
    assert "forged or altered" in reasons[TRAINERS[1].address]
    assert "second leaf" in reasons[TRAINERS[2].address]


def test_batch_tree_bitmap_and_proofs():
    leaves = [leaf(4), leaf(1), leaf(3)]
    batch = build_batch(leaves, join_order=ORDER, market_address=MARKET)
    assert batch.included == (0b11010,) and batch.samples == 30
    assert bitmap_members(batch.included, ORDER) == {ORDER[1], ORDER[3], ORDER[4]}
    for position, lf in enumerate(batch.leaves):
        node = bytes.fromhex(batch.tree.tree[batch.tree.tree_index[position]].hex())
        assert process_proof(node, batch.proof(lf.sender)) == batch.root
    assert bitmap([0, 300], 301) == (1, 1 << 44)
    with pytest.raises(BatchError, match="not joined"):
        build_batch([leaf(0)], join_order=ORDER[1:], market_address=MARKET)
    with pytest.raises(BatchError, match="one task and round"):
        build_batch([leaf(0), leaf(1, round_=2)], join_order=ORDER, market_address=MARKET)


def test_closer_rotates_by_round_and_passes_on_after_a_timeout():
    order = sorted(ORDER, key=str.lower)
    assert closer_for(1, ORDER, elapsed=0, turn_seconds=10) == order[0]
    assert closer_for(2, ORDER, elapsed=0, turn_seconds=10) == order[1]
    assert closer_for(2, ORDER, elapsed=10.5, turn_seconds=10) == order[2]
    assert closer_for(5, ORDER, elapsed=25, turn_seconds=10) == order[(4 + 2) % 5]


def test_a_peer_uses_only_genuine_included_leaves(tmp_path):
    store = EmbeddedStore(tmp_path)
    forged = dataclasses.replace(leaf(0), sender=TRAINERS[1].address)
    leaves = [forged, leaf(2), leaf(3)]
    batch = build_batch(leaves, join_order=ORDER, market_address=MARKET)
    cid = store.put(leaf_set_json(batch.leaves))
    recorded = RecordedBatch(7, 1, ORDER[0], batch.root, batch.included, 3, 30, cid, 1)
    usable = usable_leaves(recorded, store, join_order=ORDER, chain_id=CHAIN, market_address=MARKET)
    assert usable == tuple(sorted([leaf(2), leaf(3)], key=lambda lf: lf.sender.lower()))
    check = check_batch(
        parse_leaf_set(store.get(cid)), root=batch.root, included=batch.included, samples=30,
        join_order=ORDER, **args(),
    )  # fmt: skip
    assert check.forged == (forged,) and check.root_matches and check.bits_match
    # The leaf set unavailable: only leaves the peer holds, signed by their senders, bits set
    gone = dataclasses.replace(recorded, leaves_cid=raw_cid(b"never stored"))
    known = {ORDER[2]: leaf(2), ORDER[4]: leaf(4), ORDER[1]: forged}
    assert usable_leaves(
        gone, store, join_order=ORDER, chain_id=CHAIN, market_address=MARKET, known=known
    ) == (leaf(2),)
    with pytest.raises(BatchError, match="malformed leaf set"):
        parse_leaf_set(b'{"not": "a list"}')


def test_a_peer_holding_every_included_leaf_needs_no_leaf_set_unless_they_disagree(tmp_path):
    store = EmbeddedStore(tmp_path)
    honest = build_batch([leaf(1), leaf(2)], join_order=ORDER, market_address=MARKET)
    gone = raw_cid(b"never stored")
    recorded = RecordedBatch(7, 1, ORDER[0], honest.root, honest.included, 2, 20, gone, 1)
    known = {ORDER[1]: leaf(1), ORDER[2]: leaf(2)}

    class NoFetch:
        def get(self, cid, max_size=None):
            raise AssertionError(f"fetched {cid}")

    # The held leaves rebuild the root: used without asking the store
    assert usable_leaves(
        recorded, NoFetch(), join_order=ORDER, chain_id=CHAIN, market_address=MARKET, known=known
    ) == tuple(sorted([leaf(1), leaf(2)], key=lambda lf: lf.sender.lower()))
    # A batch holding a forged leaf for trainer 1: the held genuine leaf does not rebuild its
    # root, so the published set is fetched and the forgery found
    forged = dataclasses.replace(leaf(0), sender=TRAINERS[1].address)
    bad = build_batch([forged, leaf(2)], join_order=ORDER, market_address=MARKET)
    cid = store.put(leaf_set_json(bad.leaves))
    recorded = RecordedBatch(7, 1, ORDER[0], bad.root, bad.included, 2, 20, cid, 1)
    assert usable_leaves(
        recorded, store, join_order=ORDER, chain_id=CHAIN, market_address=MARKET, known=known
    ) == (leaf(2),)


def test_a_peer_missing_leaves_waits_for_the_leaf_set_instead_of_using_part_of_the_batch(tmp_path):
    # Gossip brought 2 of the batch's 3 leaves and no provider serves the leaf set yet: aggregating
    # the two would give this peer a model different from everyone else's, so it is retried.
    store = EmbeddedStore(tmp_path)
    batch = build_batch([leaf(1), leaf(2), leaf(3)], join_order=ORDER, market_address=MARKET)
    late_cid = raw_cid(leaf_set_json(batch.leaves))  # published, not yet reachable from here
    recorded = RecordedBatch(7, 1, ORDER[0], batch.root, batch.included, 3, 30, late_cid, 1)
    known = {ORDER[1]: leaf(1), ORDER[2]: leaf(2)}
    kwargs = {"join_order": ORDER, "chain_id": CHAIN, "market_address": MARKET, "known": known}
    with pytest.raises(ContentUnavailableError, match="gossip brought 2 of its 3 leaves"):
        usable_leaves(recorded, store, wait_for_set=True, **kwargs)
    # Once it arrives, the whole batch is used.
    assert store.put(leaf_set_json(batch.leaves)) == late_cid
    assert usable_leaves(recorded, store, wait_for_set=True, **kwargs) == tuple(
        sorted([leaf(1), leaf(2), leaf(3)], key=lambda lf: lf.sender.lower())
    )
    # Past the caller's patience (never published): the leaves held, as before.
    never = dataclasses.replace(recorded, leaves_cid=raw_cid(b"never stored"))
    assert usable_leaves(never, store, wait_for_set=False, **kwargs) == tuple(
        sorted([leaf(1), leaf(2)], key=lambda lf: lf.sender.lower())
    )

    class Down:
        def get(self, cid, max_size=None):
            raise StoreUnreachableError("IPFS daemon at /ip4/127.0.0.1/tcp/5001 did not answer")

    # Our own daemon down is never the batch's fault: it propagates whether or not we wait.
    for wait in (True, False):
        with pytest.raises(StoreUnreachableError):
            usable_leaves(recorded, Down(), wait_for_set=wait, **kwargs)
