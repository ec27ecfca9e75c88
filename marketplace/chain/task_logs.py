"""One task's TaskMarket logs as a subscription sees them: the filter, and decoding a raw log.

Every TaskMarket event carries the task id as its first indexed argument, so the logs of one
task are ``address = TaskMarket, topics[1] = taskId``. A subscription delivers logs in their
JSON-RPC form (hex strings); :meth:`TaskLogs.decode` turns one into web3's decoded event.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

from eth_typing import ABIEvent
from eth_utils.abi import event_abi_to_log_topic
from hexbytes import HexBytes
from web3.exceptions import Web3Exception
from web3.types import EventData

from marketplace.chain.clients import Marketplace
from marketplace.chain.subscription import logs_filter

log = logging.getLogger(__name__)


class TaskLogs:
    """The subscription filter of one task's TaskMarket events, and their decoder."""

    def __init__(self, market: Marketplace, task_id: int) -> None:
        self._market = market
        self.task_id = task_id
        #: The ``eth_subscribe("logs", …)`` filter of every TaskMarket event of the task.
        self.filter = logs_filter(
            market.market.address, [None, "0x" + task_id.to_bytes(32, "big").hex()]
        )
        self._names: dict[bytes, str] = {}
        for entry in market.market.abi:
            if entry.get("type") == "event" and not entry.get("anonymous"):
                event = cast(ABIEvent, entry)
                self._names[bytes(event_abi_to_log_topic(event))] = event["name"]

    def decode(self, raw: Mapping[str, Any]) -> EventData | None:
        """The decoded event of a raw log, or ``None`` if it is none of this task's (another
        contract or task, an unknown topic, a log removed by a reorganization, bad data)."""
        contract = self._market.market
        try:
            if raw.get("removed") or str(raw["address"]).lower() != contract.address.lower():
                return None
            topics = [HexBytes(t) for t in raw["topics"]]
            name = self._names.get(bytes(topics[0])) if len(topics) > 1 else None
            if name is None or int.from_bytes(topics[1], "big") != self.task_id:
                return None
            entry = {
                "address": contract.address,
                "topics": topics,
                "data": HexBytes(raw["data"]),
                "blockNumber": int(raw["blockNumber"], 16),
                "blockHash": HexBytes(raw["blockHash"]),
                "transactionHash": HexBytes(raw["transactionHash"]),
                "transactionIndex": int(raw["transactionIndex"], 16),
                "logIndex": int(raw["logIndex"], 16),
            }
            event: EventData = getattr(contract.events, name)().process_log(entry)
            return event
        except (KeyError, TypeError, ValueError, IndexError, Web3Exception) as exc:
            log.debug("undecodable task log dropped: %s", exc)
            return None
