"""On the in-process EVM, ``Marketplace`` memoizes views per block: the same view twice in one
block runs one eth_call, and any new block (a transaction) is seen at once."""

from __future__ import annotations

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
