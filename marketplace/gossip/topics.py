"""Pubsub topic names of a task: one for update announcements, one for gossip averaging.

Both are bound to the chain, the market contract and the task, so peers of different tasks (or
markets, or chains) never share a topic.
"""

from __future__ import annotations

from eth_utils.address import is_address

from marketplace.errors import ConfigError


def task_topic(chain_id: int, market_address: str, task_id: int) -> str:
    """The pubsub topic of one task on one market, e.g. ``fedmarket/31337/0xabc…/7``.

    The market address is lower-cased, so nodes that spell it differently share the topic.
    """
    if not isinstance(market_address, str) or not is_address(market_address):
        raise ConfigError(
            f"market address {market_address!r} is not an Ethereum address: pass the TaskMarket "
            "contract's 0x address"
        )
    if chain_id < 0 or task_id < 0:
        raise ConfigError(f"chain id {chain_id} and task id {task_id} must be non-negative")
    return f"fedmarket/{chain_id}/{market_address.lower()}/{task_id}"


def averaging_topic(chain_id: int, market_address: str, task_id: int) -> str:
    """The task's gossip-averaging topic: the update topic plus ``/gossip-averaging``."""
    return task_topic(chain_id, market_address, task_id) + "/gossip-averaging"
