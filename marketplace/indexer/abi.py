"""Generic event decoding from ABIs: every event of every contract in a deployment, by topic.

Nothing here knows the marketplace's events by name, so a contract another engineer adds to the
deployment is indexed without code changes. Decoded values are made JSON-safe: bytes become
``0x`` hex, addresses checksum strings, integers stay integers (the caller stores large ones as
text).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from eth_abi.abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils.abi import collapse_if_tuple, event_abi_to_log_topic
from web3 import Web3


@dataclass(frozen=True)
class EventSpec:
    """One event of one contract: its name, inputs and topic0."""

    contract: str
    name: str
    inputs: tuple[Mapping[str, Any], ...]
    topic: bytes


@dataclass(frozen=True)
class DecodedEvent:
    """A log decoded against its ABI (``name`` is ``"?"`` when no ABI matched its topic)."""

    block: int
    log_index: int
    tx_hash: str
    block_hash: str
    address: str
    contract: str
    name: str
    args: dict[str, Any]
    input_types: dict[str, str]


def jsonable(value: Any) -> Any:
    """A decoded ABI value as JSON: bytes as 0x hex, tuples as lists."""
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


class EventCatalog:
    """Every event ABI of a set of contracts, looked up by (address, topic0)."""

    def __init__(self, contracts: Mapping[str, tuple[str, Iterable[Mapping[str, Any]]]]):
        """``contracts`` maps a contract name to ``(address, abi)``."""
        self.names: dict[str, str] = {}
        self._specs: dict[tuple[str, bytes], EventSpec] = {}
        for name, (address, abi) in contracts.items():
            addr = Web3.to_checksum_address(address)
            self.names[addr] = name
            for item in abi:
                if item.get("type") != "event" or item.get("anonymous"):
                    continue
                topic = bytes(event_abi_to_log_topic(dict(item)))  # type: ignore[arg-type]
                spec = EventSpec(name, str(item["name"]), tuple(item["inputs"]), topic)
                self._specs[(addr, topic)] = spec

    @property
    def addresses(self) -> list[str]:
        return sorted(self.names)

    def decode(self, log: Mapping[str, Any]) -> DecodedEvent:
        """Decode one ``eth_getLogs`` entry; unknown or malformed logs keep their raw topics."""
        address = Web3.to_checksum_address(log["address"])
        topics = [bytes(t) for t in log["topics"]]
        data = bytes(log["data"])

        def event(name: str, args: dict[str, Any], types: dict[str, str]) -> DecodedEvent:
            return DecodedEvent(
                block=int(log["blockNumber"]),
                log_index=int(log["logIndex"]),
                tx_hash="0x" + bytes(log["transactionHash"]).hex(),
                block_hash="0x" + bytes(log["blockHash"]).hex(),
                address=address,
                contract=self.names.get(address, "?"),
                name=name,
                args=args,
                input_types=types,
            )

        spec = self._specs.get((address, topics[0])) if topics else None
        if spec is None:
            raw = {"topics": [jsonable(t) for t in topics], "data": jsonable(data)}
            return event("?", raw, {})
        try:
            args, types = _decode_args(spec, topics[1:], data)
        except (DecodingError, ValueError, IndexError) as exc:
            raw = {"topics": [jsonable(t) for t in topics], "data": jsonable(data),
                   "error": f"{type(exc).__name__}: {exc}"}  # fmt: skip
            return event(spec.name + "?", raw, {})
        return event(spec.name, args, types)


def _decode_args(
    spec: EventSpec, indexed_topics: list[bytes], data: bytes
) -> tuple[dict[str, Any], dict[str, str]]:
    indexed = [i for i in spec.inputs if i.get("indexed")]
    plain = [i for i in spec.inputs if not i.get("indexed")]
    if len(indexed) != len(indexed_topics):
        raise ValueError(f"{spec.name}: {len(indexed_topics)} topics for {len(indexed)} indexed")
    values: dict[str, Any] = {}
    types: dict[str, str] = {}
    decoded = abi_decode([collapse_if_tuple(dict(i)) for i in plain], data) if plain else ()
    for i, v in zip(plain, decoded, strict=True):
        values[str(i["name"])] = v
    for i, topic in zip(indexed, indexed_topics, strict=True):
        kind = collapse_if_tuple(dict(i))
        if kind in ("string", "bytes") or kind.endswith(("]", ")")):
            values[str(i["name"])] = topic  # a dynamic indexed value is only its hash
        else:
            (values[str(i["name"])],) = abi_decode([kind], topic)
    for i in spec.inputs:
        types[str(i["name"])] = collapse_if_tuple(dict(i))
    ordered = {}
    for name, kind in types.items():
        value = values[name]
        if kind == "address" and isinstance(value, str):
            value = Web3.to_checksum_address(value)
        ordered[name] = jsonable(value)
    return ordered, types
