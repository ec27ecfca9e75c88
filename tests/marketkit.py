"""Test set-up shared by the suites that run a whole task on a devnet: deploy the marketplace,
then fund and register its participants (it was written out in three suites)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount
from web3 import Web3

from marketplace.chain.clients import Marketplace, Role
from marketplace.chain.deploy import deploy_marketplace
from marketplace.chain.devnet import dev_x25519_public
from marketplace.protocol.identity import Identity


@dataclass(frozen=True)
class Member:
    """A participant to fund with ``tokens`` and register as ``role`` with ``stake``."""

    account: LocalAccount
    x25519_public: bytes
    role: Role
    stake: int = 0
    tokens: int = 0

    @classmethod
    def of(cls, who: Identity, role: Role, *, stake: int = 0, tokens: int = 0) -> Member:
        return cls(who.eth, who.x25519_public, role, stake, tokens)

    @classmethod
    def dev(cls, index: int, account: LocalAccount, role: Role, **amounts: int) -> Member:
        """Devnet account ``index`` (its public test keys)."""
        return cls(account, dev_x25519_public(index), role, **amounts)


def market_with(
    w3: Web3, deployer: LocalAccount, members: Sequence[Member], *, unbonding_delay: int = 60
) -> Marketplace:
    """A freshly deployed marketplace with ``members`` funded (minted by the deployer, who owns
    the RewardToken) and registered."""
    market = Marketplace(w3, deploy_marketplace(w3, deployer, unbonding_delay=unbonding_delay))
    for m in members:
        if m.tokens:
            market.mint(deployer, m.account.address, m.tokens)
        market.register(m.account, m.role, m.x25519_public, m.stake)
    return market
