"""Reusing the chain id, nonce and fees across a peer's sends (``TxContext``), on real Anvil:
three requests a send instead of six, safe against another sender of the same account, against
concurrent sends and against a chain that goes backwards (``evm_revert``)."""

from __future__ import annotations

import collections
import threading
from typing import Any

import pytest
from eth_account import Account
from web3 import HTTPProvider, Web3
from web3.contract import Contract
from web3.types import RPCEndpoint, RPCResponse

from marketplace.chain.compiler import compile_contracts
from marketplace.chain.devnet import dev_private_keys
from marketplace.chain.tx import TxContext, send

pytestmark = pytest.mark.anvil

OWNER = Account.from_key(dev_private_keys(12)[11])


@pytest.fixture
def token(w3: Web3, chain_snapshot: None) -> Contract:
    art = compile_contracts()["RewardToken"]
    factory = w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
    receipt = send(w3, factory.constructor("T", "T", OWNER.address), OWNER)
    return w3.eth.contract(address=receipt["contractAddress"], abi=art.abi)


class CountingProvider(HTTPProvider):
    """``connect``'s provider (eth_chainId cached) counting the other methods it is asked for."""

    def __init__(self, url: str) -> None:
        super().__init__(
            url, cache_allowed_requests=True, cacheable_requests={RPCEndpoint("eth_chainId")}
        )
        self.counter: collections.Counter[str] = collections.Counter()

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        if method != "eth_chainId":
            self.counter[str(method)] += 1
        return super().make_request(method, params)


@pytest.fixture
def counted(w3: Web3) -> tuple[Web3, collections.Counter[str]]:
    """A second client of the same node whose requests are counted."""
    provider = CountingProvider(str(w3.provider.endpoint_uri))  # type: ignore[attr-defined]
    return Web3(provider), provider.counter


def mint(token: Contract, amount: int = 1) -> Any:
    return token.functions.mint(OWNER.address, amount)


def test_sends_in_a_context_cost_three_requests_each(token, counted):
    w3, requests_sent = counted
    token = w3.eth.contract(address=token.address, abi=token.abi)
    # Fees are read again after fee_ttl (2 s by default): a loaded machine may take that long.
    context = TxContext(chain_id=w3.eth.chain_id, fee_ttl=3600.0)
    send(w3, mint(token), OWNER, context=context)  # reads the nonce and the fees once
    requests_sent.clear()
    for _ in range(3):
        assert send(w3, mint(token), OWNER, context=context)["status"] == 1
    # The receipt may be polled more than once on a loaded machine; nothing else is asked.
    assert set(requests_sent) == {
        "eth_estimateGas", "eth_sendRawTransaction", "eth_getTransactionReceipt"
    }  # fmt: skip
    assert requests_sent["eth_estimateGas"] == requests_sent["eth_sendRawTransaction"] == 3
    # Without a context every send reads the nonce and both fee fields again.
    requests_sent.clear()
    send(w3, mint(token), OWNER)
    assert requests_sent["eth_getTransactionCount"] == 1
    assert requests_sent["eth_maxPriorityFeePerGas"] == requests_sent["eth_getBlockByNumber"] == 1


def test_a_nonce_another_sender_took_is_read_again_and_the_send_goes_through(w3, token):
    context = TxContext(chain_id=w3.eth.chain_id)
    send(w3, mint(token), OWNER, context=context)
    send(w3, mint(token), OWNER)  # e.g. `cast send` from the same account: the cache is stale
    before = token.functions.totalSupply().call()
    receipt = send(w3, mint(token, 5), OWNER, context=context)
    assert receipt["status"] == 1 and token.functions.totalSupply().call() == before + 5
    assert w3.eth.get_transaction(receipt["transactionHash"])["nonce"] == (
        w3.eth.get_transaction_count(OWNER.address) - 1
    )


def test_concurrent_sends_in_one_context_get_distinct_nonces(w3, token):
    context = TxContext(chain_id=w3.eth.chain_id)
    receipts: list[Any] = []

    def worker() -> None:
        for _ in range(4):
            receipts.append(send(w3, mint(token), OWNER, context=context))

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    nonces = [w3.eth.get_transaction(r["transactionHash"])["nonce"] for r in receipts]
    assert len(set(nonces)) == 12 and all(r["status"] == 1 for r in receipts)


def test_a_chain_gone_backwards_makes_the_context_read_its_nonce_again(w3, token):
    context = TxContext(chain_id=w3.eth.chain_id)
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    send(w3, mint(token), OWNER, context=context)
    send(w3, mint(token), OWNER, context=context)
    w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
    # Without this check the cached nonce is 2 past the account's: the node queues the
    # transaction and it is never mined (the receipt wait times out).
    context.at_head(w3.eth.block_number)
    assert send(w3, mint(token), OWNER, context=context, timeout=10)["status"] == 1
