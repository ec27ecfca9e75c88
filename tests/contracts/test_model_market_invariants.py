"""ModelMarket's royalty conservation as an invariant: the Foundry-style handler
(`contracts/test/foundry/ModelMarketRoyaltyHandler.sol`) driven with random actions on the devnet
(time moves with ``evm_increaseTime`` instead of the hevm cheat code), its invariants checked
after every action."""

from __future__ import annotations

import random

import pytest
from web3.exceptions import ContractLogicError

ACTIONS = ("buy", "deliver", "refund", "claimRoyalty", "claimShare", "sweep", "warp")


def _deploy_handler(chain, who):
    art = chain.artifacts["ModelMarketRoyaltyHandler"]
    factory = chain.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
    tx = factory.constructor().build_transaction(
        {**chain._params(who, 0), "gas": 29_000_000}  # ModelMarket + token + setup in one go
    )
    receipt = chain._send(tx, who, "ModelMarketRoyaltyHandler", None)
    return chain.at("ModelMarketRoyaltyHandler", receipt["contractAddress"])


def _check(handler, step: str) -> None:
    for name in ("checkRoyaltyConservation", "checkSolvency"):
        try:
            getattr(handler.functions, name)().call()
        except ContractLogicError as exc:
            pytest.fail(f"invariant {name} broken after {step}: {exc}")


@pytest.mark.parametrize("seed", [1, 2])
def test_royalty_conservation_holds_under_random_sales_claims_and_time(chain, mkt, seed):
    # Prepare
    who = mkt.actors.deployer
    handler = _deploy_handler(chain, who)
    rng = random.Random(seed)
    _check(handler, "setup")
    # Execute: random actions, biased to sales early and claims late
    for step in range(90):
        action = rng.choice(ACTIONS)
        if action == "warp":
            chain.warp(1 + rng.randrange(3000))
        elif action in ("deliver", "refund", "claimRoyalty"):
            chain.tx(getattr(handler.functions, action)(rng.randrange(2**32)), who)
        else:
            chain.tx(getattr(handler.functions, action)(), who)
        _check(handler, f"step {step}: {action}")
    # finish: run past every deadline, claim everything, sweep
    chain.warp(25_000)
    for i in range(4):
        chain.tx(handler.functions.claimRoyalty(i), who)
    chain.warp(10_000)
    chain.tx(handler.functions.sweep(), who)
    chain.tx(handler.functions.claimShare(), who)
    _check(handler, "the end")
    # Assert: the whole trainer share went out (claims + swept dust), to the wei
    market = chain.at("ModelMarket", handler.functions.market().call())
    listing = market.functions.listing(handler.functions.listingId().call()).call()
    names = [c["name"] for c in market.functions.listing(1).abi["outputs"][0]["components"]]
    info = dict(zip(names, listing, strict=True))
    assert info["swept"] is True
    assert info["trainerClaimed"] == market.functions.trainerGross(1).call()
    assert handler.functions.saleCount().call() > 0
