"""On the in-process EVM, ``Marketplace`` memoizes views per block: the same view twice in one
block runs one eth_call, and any new block (a transaction) is seen at once."""

from __future__ import annotations

import threading
from typing import Any

from marketplace.chain import clients
from marketplace.chain.backend import IN_PROCESS, connect, fund_accounts
from marketplace.chain.clients import Marketplace, Role
from marketplace.chain.deploy import deploy_marketplace
from marketplace.protocol.identity import Identity


def test_views_are_memoized_per_block_in_process_and_fresh_after_a_transaction(
    monkeypatch: Any,
) -> None:
    # Prepare
    w3 = connect(IN_PROCESS)
    deployer, trainer = Identity.dev(0), Identity.dev(1)
    fund_accounts(w3, (deployer.address, trainer.address), amount_wei=10**19)
    market = Marketplace(w3, deploy_marketplace(w3, deployer.eth))
    market.mint(deployer.eth, trainer.address, 100 * 10**18)
    calls: list[str] = []
    inner = clients.call

    def counting(fn: Any, **kwargs: Any) -> Any:
        calls.append("eth_call")
        return inner(fn, **kwargs)

    monkeypatch.setattr(clients, "call", counting)
    # Execute: the same view twice in one block
    first = market.participant(trainer.address)
    second = market.participant(trainer.address)
    # Assert: one eth_call, the same answer
    assert calls.count("eth_call") == 1
    assert first == second and first.stake == 0
    # Execute: a transaction mines a new block
    market.register(trainer.eth, Role.TRAINER, trainer.x25519_public, 30 * 10**18)
    # Assert: the view is read again and shows the new stake
    before = calls.count("eth_call")
    assert market.participant(trainer.address).stake == 30 * 10**18
    assert calls.count("eth_call") == before + 1


def test_a_step_reads_one_block_on_anvil_until_its_own_transaction_moves_it_on(
    anvil: Any, chain_snapshot: None, monkeypatch: Any
) -> None:
    """``Marketplace.at_head`` (a peer's step): one eth_blockNumber, each view read once at that
    block even when another peer's transaction mines meanwhile; this thread's own transaction
    moves the reads on to its receipt's block; other threads and later steps read the head."""
    # Prepare: two peers with connections of their own, on a real Anvil
    deployer, trainer, other = Identity.dev(0), Identity.dev(1), Identity.dev(2)
    w3 = connect(anvil.rpc_url)
    deployment = deploy_marketplace(w3, deployer.eth)
    market = Marketplace(w3, deployment)
    theirs = Marketplace(connect(anvil.rpc_url), deployment)
    for who in (trainer, other):
        market.mint(deployer.eth, who.address, 100 * 10**18)
    sent: list[str] = []
    inner = w3.provider._make_request  # type: ignore[attr-defined]

    def counting(method: Any, request_data: bytes) -> Any:
        sent.append(str(method))
        return inner(method, request_data)

    monkeypatch.setattr(w3.provider, "_make_request", counting)  # this peer's requests only
    with market.at_head() as block:
        # Execute: the same views twice, with another peer's transaction mined in between
        first = market.participant(other.address)
        clock = market.now()
        theirs.register(other.eth, Role.TRAINER, other.x25519_public, 30 * 10**18)
        again = market.participant(other.address)
        # Assert: read once, at the pinned block (the other peer's stake not seen yet)
        assert first == again and again.stake == 0
        assert market.now() == clock == w3.eth.get_block(block)["timestamp"]
        assert sent.count("eth_blockNumber") == 1 and sent.count("eth_call") == 1
        # Execute: this thread's own transaction
        receipt = market.register(trainer.eth, Role.TRAINER, trainer.x25519_public, 30 * 10**18)
        # Assert: reads move on to its block (and so see the other peer's stake too)
        assert market.participant(trainer.address).stake == 30 * 10**18
        assert market.participant(other.address).stake == 30 * 10**18
        assert market.now() == w3.eth.get_block(receipt["blockNumber"])["timestamp"]
        # Another thread is not pinned: it reads the latest block
        seen: list[int] = []
        worker = threading.Thread(
            target=lambda: seen.append(market.participant(other.address).stake)
        )
        worker.start()
        worker.join()
        assert seen == [30 * 10**18]
    # Execute / Assert: the next step reads the head again, and the events up to it
    theirs.stake(other.eth, 5 * 10**18)
    with market.at_head() as later:
        assert later == w3.eth.block_number and later > block
        assert market.participant(other.address).stake == 35 * 10**18
        joined = market.events(market.registry, "Registered")
        assert {e["args"]["account"] for e in joined} >= {trainer.address, other.address}
