"""Connecting to a chain: any JSON-RPC endpoint (Anvil, Hardhat node, a real network) or the
in-process EVM (web3's ``EthereumTesterProvider``), behind the same ``Web3`` object."""

from __future__ import annotations

import logging

from web3 import EthereumTesterProvider, Web3
from web3.providers.rpc import HTTPProvider
from web3.types import RPCEndpoint, Wei

from marketplace.chain.transport import use_keep_alive
from marketplace.errors import RpcUnreachableError

log = logging.getLogger(__name__)

IN_PROCESS = "inprocess"


def connect(rpc_url: str, *, timeout: float = 30.0) -> Web3:
    """A ``Web3`` for ``rpc_url`` (``http(s)://…``) or ``"inprocess"``; checks that it answers.

    Raises
    ------
    RpcUnreachableError
        The endpoint does not answer, with the URL and what to do.
    """
    if rpc_url == IN_PROCESS:
        return in_process_chain()
    if not rpc_url.startswith(("http://", "https://")):
        raise RpcUnreachableError(
            f"unsupported chain RPC {rpc_url!r}: give an http(s):// URL or 'inprocess'"
        )
    # eth_chainId is cached: web3's validation asks for it before every eth_call, estimate and
    # send (an extra round trip each, half of a peer's view calls); a node's chain id is fixed.
    provider = HTTPProvider(
        rpc_url,
        request_kwargs={"timeout": timeout},
        cache_allowed_requests=True,
        cacheable_requests={RPCEndpoint("eth_chainId")},
    )
    use_keep_alive(provider)  # a kept-alive stdlib connection per thread, not requests'
    w3 = Web3(provider)
    try:
        w3.eth.chain_id  # noqa: B018 (a real round trip, not a cached value)
    except Exception as exc:
        raise RpcUnreachableError(
            f"cannot reach the chain RPC at {rpc_url} ({type(exc).__name__}): is the node running? "
            "start one with `fedmarket devnet up` or pass --chain-rpc URL"
        ) from None
    return w3


def in_process_chain(*, fund: tuple[str, ...] = (), amount_wei: int = 10**21) -> Web3:
    """A fresh in-process EVM (py-evm). Each address in ``fund`` receives ``amount_wei``."""
    from marketplace.chain.pyevm_lookup import install

    install()  # transaction lookup by hash in one step (eth-tester walks every block)
    w3 = Web3(EthereumTesterProvider())
    if fund:
        fund_accounts(w3, fund, amount_wei=amount_wei)
    return w3


def fund_accounts(w3: Web3, addresses: tuple[str, ...], *, amount_wei: int) -> None:
    """Send ETH from the node's first unlocked account (in-process EVM and devnets only)."""
    source = w3.eth.accounts[0]
    for addr in addresses:
        tx = w3.eth.send_transaction({"from": source, "to": addr, "value": Wei(amount_wei)})
        w3.eth.wait_for_transaction_receipt(tx)
