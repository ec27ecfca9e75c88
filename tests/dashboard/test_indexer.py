"""The indexer on real Anvil: generic decoding, restart-resume, reorganizations."""

from __future__ import annotations

from pathlib import Path

import pytest
from chainkit import TaskSpec
from eth_abi import encode
from eth_utils.abi import event_abi_to_log_topic
from scenario import World, create_task, finalized_task
from web3 import Web3

from marketplace.crypto.update_leaf import UpdateLeaf, sign_update_leaf
from marketplace.errors import ChainError, ConfigError
from marketplace.indexer import Indexer, IndexerConfig, IndexReader
from marketplace.indexer.abi import EventCatalog
from marketplace.indexer.queries import group_of
from marketplace.protocol.round_batch import build_batch, leaf_set_json
from marketplace.storage.cid import raw_cid
from marketplace.storage.embedded import EmbeddedStore

pytestmark = [pytest.mark.anvil, pytest.mark.kubo]

LISTING_ABI = [{
    "type": "event", "name": "ListingCreated", "anonymous": False,
    "inputs": [
        {"name": "taskId", "type": "uint256", "indexed": True},
        {"name": "seller", "type": "address", "indexed": True},
        {"name": "licenseCid", "type": "string", "indexed": False},
        {"name": "price", "type": "uint256", "indexed": False},
    ],
}]  # fmt: skip


def test_a_new_contracts_events_are_decoded_from_its_abi_alone() -> None:
    address = "0x" + "12" * 20
    seller = Web3.to_checksum_address("0x" + "ab" * 20)
    catalog = EventCatalog({"ModelListing": (address, LISTING_ABI)})
    log = {
        "address": address, "blockNumber": 7, "logIndex": 0,
        "transactionHash": b"\x01" * 32, "blockHash": b"\x02" * 32,
        "topics": [event_abi_to_log_topic(LISTING_ABI[0]), encode(["uint256"], [5]),
                   encode(["address"], [seller])],
        "data": encode(["string", "uint256"], ["<b>cid</b>", 2**200]),
    }  # fmt: skip
    ev = catalog.decode(log)
    assert (ev.contract, ev.name) == ("ModelListing", "ListingCreated")
    assert ev.args == {"taskId": 5, "seller": seller, "licenseCid": "<b>cid</b>", "price": 2**200}
    assert group_of(ev.name) == "Listings and sales"
    # "task" is not an ask: the market's and the version registry's own events are not offers.
    assert group_of("TaskTermsSet") is None and group_of("TaskRegistered") is None
    assert group_of("OfferRevealed") == group_of("WinnerRegistered") == "Offers and selections"
    # A log no ABI describes is kept raw, not dropped.
    other = catalog.decode(log | {"topics": [b"\x09" * 32]})
    assert other.name == "?" and other.args["topics"] == ["0x" + "09" * 32]


def snapshot_of(db: Path, task_ids: list[int]) -> tuple[object, ...]:
    """What the pages would show, for comparing two index files."""
    r = IndexReader(db)
    try:
        events = r.conn.execute(
            "SELECT block, log_index, name, args FROM events ORDER BY block, log_index"
        ).fetchall()
        return (
            [tuple(e) for e in events],
            [r.task(t) for t in task_ids],
            r.tasks(),
        )
    finally:
        r.close()


def test_a_restart_resumes_after_the_last_indexed_block(world: World, tmp_path: Path) -> None:
    db = tmp_path / "index.sqlite"
    first = Indexer(world.w3, world.deployment, db, store=world.store)
    first.sync()
    last = first.last_block
    first.close()

    task = finalized_task(world, trainers=3, rounds=1)
    again = Indexer(world.w3, world.deployment, db, store=world.store)
    stats = again.sync()
    assert stats[0].from_block == last + 1  # nothing indexed twice
    assert again.last_block == world.w3.eth.block_number
    again.close()

    fresh = Indexer(world.w3, world.deployment, tmp_path / "fresh.sqlite", store=world.store)
    fresh.sync()
    fresh.close()
    assert snapshot_of(db, [task.task_id]) == snapshot_of(tmp_path / "fresh.sqlite", [task.task_id])


def test_an_index_of_another_deployment_is_refused(world: World, tmp_path: Path) -> None:
    db = tmp_path / "index.sqlite"
    Indexer(world.w3, world.deployment, db).close()
    other = world.deployment.__class__(
        chain_id=world.deployment.chain_id, block=1, deployer="", contracts={
            "TaskMarket": world.deployment.contracts["RewardToken"]},
    )  # fmt: skip
    with pytest.raises(ConfigError, match="indexes deployment"):
        Indexer(world.w3, other, db)


def test_a_reorganization_rolls_the_index_back_to_the_fork(world: World, tmp_path: Path) -> None:
    mkt, chain = world.mkt, world.mkt.chain
    trainers = mkt.actors.trainers[:2]
    task_id = create_task(world, TaskSpec(rounds=1, min_trainers=2, max_trainers=2))
    mkt.start(task_id, trainers)
    db = tmp_path / "index.sqlite"
    index = Indexer(world.w3, world.deployment, db, config=IndexerConfig(reorg_depth=16))
    index.sync()

    fork = chain.snapshot()
    chain.tx(mkt.fn.commitUpdate(task_id, 1, "bafy-doomed", Web3.keccak(text="a"), 5), trainers[0])
    index.sync()
    reader = IndexReader(db)
    assert reader.task(task_id)["rounds"][0]["committers"] == [trainers[0].address]

    chain.revert_to(fork)  # the doomed block is gone; another takes its height
    chain.tx(mkt.fn.commitUpdate(task_id, 1, "bafy-kept", Web3.keccak(text="b"), 5), trainers[1])
    stats = index.sync()
    assert stats[0].rolled_back_to is not None
    rounds = reader.task(task_id)["rounds"]
    assert rounds[0]["committers"] == [trainers[1].address]
    assert [u["cid"] for u in rounds[0]["updates"]] == ["bafy-kept"]
    reader.close()
    index.close()

    fresh = Indexer(world.w3, world.deployment, tmp_path / "fresh.sqlite")
    fresh.sync()
    fresh.close()
    assert snapshot_of(db, [task_id]) == snapshot_of(tmp_path / "fresh.sqlite", [task_id])


def test_a_reorganization_deeper_than_the_depth_is_an_error(world: World, tmp_path: Path) -> None:
    chain = world.mkt.chain
    index = Indexer(world.w3, world.deployment, tmp_path / "i.sqlite",
                    config=IndexerConfig(reorg_depth=2))  # fmt: skip
    index.sync()
    fork = chain.snapshot()
    for _ in range(6):
        chain.warp(1)
    index.sync()
    chain.revert_to(fork)
    for _ in range(7):
        chain.warp(2)
    with pytest.raises(ChainError, match="reorganized deeper"):
        index.sync()
    index.close()


def test_a_report_unavailable_at_reveal_is_fetched_again(world: World, tmp_path: Path) -> None:
    task = finalized_task(world, trainers=2, rounds=1, claim=False, mismatch=False)
    late = EmbeddedStore(tmp_path / "store")  # the report is not in it yet
    index = Indexer(world.w3, world.deployment, tmp_path / "i.sqlite", store=late,
                    config=IndexerConfig(report_retry_seconds=0))  # fmt: skip
    index.sync()
    reader = IndexReader(tmp_path / "i.sqlite")
    statuses = {o["report_status"] for o in reader.task(task.task_id)["committee"]}
    assert statuses == {"unavailable"}
    late.put(world.store.get(task.report_cid))  # now the store can give it
    # (earlier tests' reports are unavailable from this store too, and stay so)
    assert index.retry_reports(limit=100) == 3
    committee = reader.task(task.task_id)["committee"]
    assert {o["report_status"] for o in committee} == {"public"}
    assert reader.chart(task.task_id)["available"]
    reader.close()
    index.close()


def test_a_file_that_is_not_an_index_is_a_one_line_error(world: World, tmp_path: Path) -> None:
    bad = tmp_path / "index.sqlite"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match=r"index .* delete it"):
        Indexer(world.w3, world.deployment, bad)


def test_batched_rounds_are_indexed_per_trainer_from_their_verified_leaves(
    world: World, tmp_path: Path
) -> None:
    """Round 1: a batch of 3 (leaf set in the store) and the left-out trainer's direct commit;
    round 2: a batch of all 4 whose leaf set no provider has. Both rounds count every commit."""
    mkt, store = world.mkt, world.store
    assert store is not None
    trainers = mkt.actors.trainers[:4]
    task_id = create_task(world, TaskSpec(rounds=2, min_trainers=4, max_trainers=4))
    mkt.start(task_id, trainers)
    order = [t.address for t in trainers]

    def signed(who, round_: int, samples: int) -> UpdateLeaf:
        payload = f"update {task_id} {round_} {who.address}".encode()
        return sign_update_leaf(
            who, chain_id=world.w3.eth.chain_id, task_id=task_id, round=round_,
            cid=raw_cid(payload), digest=bytes(Web3.keccak(payload)), num_samples=samples,
            market_address=mkt.market.address,
        )  # fmt: skip

    first = [signed(t, 1, 100 + i) for i, t in enumerate(trainers[:3])]
    b1 = build_batch(first, join_order=order, market_address=mkt.market.address)
    cid1 = store.put(leaf_set_json(b1.leaves))
    mkt.chain.tx(mkt.fn.commitRound(task_id, 1, b1.root, list(b1.included), b1.samples, cid1,
                                    bytes(32), ""), trainers[0])  # fmt: skip
    mkt.chain.tx(mkt.fn.commitUpdate(task_id, 1, "bafy-direct", bytes(Web3.keccak(b"d")), 7),
                 trainers[3])  # fmt: skip
    mkt.chain.tx(mkt.fn.advance(task_id), trainers[0])  # everyone is in: round 2
    second = [signed(t, 2, 50) for t in trainers]
    b2 = build_batch(second, join_order=order, market_address=mkt.market.address)
    missing = raw_cid(leaf_set_json(b2.leaves))  # never stored
    model = bytes(Web3.keccak(text="model 2"))
    mkt.chain.tx(mkt.fn.commitRound(task_id, 2, b2.root, list(b2.included), b2.samples, missing,
                                    model, "bafy-model-2"), trainers[1])  # fmt: skip

    indexer = Indexer(world.w3, world.deployment, tmp_path / "index.sqlite", store=store)
    indexer.sync()
    reader = IndexReader(tmp_path / "index.sqlite")
    try:
        one, two = reader.task(task_id)["rounds"]
    finally:
        reader.close()
        indexer.close()
    assert (one["commits"], one["samples"]) == (4, 100 + 101 + 102 + 7)
    assert one["batch"]["status"] == "verified" and one["batch"]["direct"] == 1
    by_trainer = {u["trainer"]: u for u in one["updates"]}
    for lf in first:
        assert by_trainer[lf.sender]["cid"] == lf.cid and by_trainer[lf.sender]["via"] == "batch"
        assert by_trainer[lf.sender]["digest"] == "0x" + lf.digest.hex()
    assert (
        by_trainer[trainers[3].address] | {"via": "direct", "cid": "bafy-direct"}
        == (by_trainer[trainers[3].address])
    )
    # The leaf set unreadable: every included trainer still counts, the total comes from chain.
    assert (two["commits"], two["samples"]) == (4, 200)
    assert two["batch"]["status"] == "unavailable" and two["batch"]["closer"] == trainers[1].address
    assert {u["cid"] for u in two["updates"]} == {""}
    # Round 2's batch also posted the model that starts it (round 1's result).
    assert two["model_digest"] == one["result_digest"] == "0x" + model.hex()
    # Once a provider has it, the follow loop's retry fills the rows in.
    assert store.put(leaf_set_json(b2.leaves)) == missing
    again = Indexer(
        world.w3, world.deployment, tmp_path / "index.sqlite", store=store,
        config=IndexerConfig(report_retry_seconds=0.0),
    )  # fmt: skip
    try:
        assert again.retry_batches() == 1
    finally:
        again.close()
    reader = IndexReader(tmp_path / "index.sqlite")
    try:
        two = reader.task(task_id)["rounds"][1]
    finally:
        reader.close()
    assert two["batch"]["status"] == "verified"
    assert {u["trainer"]: u["cid"] for u in two["updates"]} == {lf.sender: lf.cid for lf in second}


def test_an_index_of_a_restarted_and_redeployed_devnet_is_refused(
    tmp_path: Path, chain_kind: str
) -> None:
    """Same chain id, same contract addresses (the deployer's nonces start at 0 again), another
    chain: the index of the first must not be continued on the second."""
    import time

    from marketplace.chain.backend import connect
    from marketplace.chain.deploy import deploy_marketplace
    from marketplace.chain.devnet import start_devnet
    from marketplace.protocol.identity import Identity

    db = tmp_path / "index.sqlite"
    deployments = []
    for _ in range(2):
        node = start_devnet(chain_kind)
        try:
            w3 = connect(node.rpc_url)
            deployment = deploy_marketplace(w3, Identity.dev(0).eth)
            deployments.append(deployment)
            if len(deployments) == 1:
                Indexer(w3, deployment, db).close()
                time.sleep(1.1)  # the next chain's blocks get other timestamps
                continue
            first, second = deployments
            assert (first.chain_id, first.contracts["TaskMarket"].address) == (
                second.chain_id, second.contracts["TaskMarket"].address,
            )  # fmt: skip
            with pytest.raises(ConfigError, match=r"indexes deployment .*another deployment"):
                Indexer(w3, deployment, db)
        finally:
            node.stop()
