"""Transaction lookup by hash in one step on the in-process chain (py-evm under eth-tester).

eth-tester finds a transaction by walking back from the head block by block (its own comment:
"TODO: the chain should be able to look these up directly by hash"), and every receipt of every
``eth_getLogs`` goes through that walk, so a log query costs O(transactions x blocks). On the
demo's chain (about a thousand blocks) that was 60% of the demo's CPU time (cProfile). py-evm
already keeps a hash → (block, index) table of its canonical chain; :func:`install` makes
eth-tester use it. Same answers (the pending head block is searched first, as before), only
faster; nothing else changes. :func:`marketplace.chain.backend.in_process_chain` installs it
for every in-process chain; Anvil and real networks are not affected.
"""

from __future__ import annotations

from typing import Any

_installed = False


def install() -> None:
    """Replace eth-tester's linear transaction search by py-evm's index (idempotent)."""
    global _installed
    if _installed:
        return
    from eth.exceptions import TransactionNotFound as EvmTransactionNotFound
    from eth_tester.backends.pyevm import main as pyevm_main
    from eth_tester.exceptions import TransactionNotFound

    def lookup(chain: Any, transaction_hash: bytes) -> tuple[Any, Any, int]:
        head = chain.get_block()  # the pending block, not in the index yet
        for index, transaction in enumerate(head.transactions):
            if transaction.hash == transaction_hash:
                return head, transaction, index
        try:
            number, index = chain.chaindb.get_transaction_index(transaction_hash)
        except EvmTransactionNotFound:
            raise TransactionNotFound(
                f"No transaction found for transaction hash: 0x{transaction_hash.hex()}"
            ) from None
        block = chain.get_canonical_block_by_number(number)
        return block, block.transactions[index], index

    pyevm_main._get_transaction_by_hash = lookup
    _installed = True
