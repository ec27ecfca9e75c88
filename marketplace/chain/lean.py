"""Contract views and event logs read without web3.py's per-read plumbing.

A polling peer reads the same few views and events every round. web3's
``ContractFunction.call`` and ``ContractEvent.get_logs`` rebuild the call data or the filter,
pass the request through its middleware and formatters and walk the ABI again to decode the
answer, every time: about a sixth of a peer's CPU, several times the cost of the HTTP request
itself. A view's call data and an event's decoders do not change, so :class:`LeanReads` builds
them once; each read is then one JSON-RPC request straight to the provider
(``provider.make_request``, which still retries like web3 does) and one eth_abi decode with
web3's own codec, normalized exactly as web3 normalizes: addresses checksummed, arrays as lists,
structs as tuples, a single output unwrapped, logs as ``AttributeDict``.

Anything out of the ordinary (an error response such as a revert, data that does not decode, a
filter this module does not encode, an ABI it does not handle) returns :data:`MISSING`, and the
caller takes web3's own path, so every error a caller sees is web3's, decoded as before.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from eth_abi.grammar import TupleType, parse
from eth_utils.abi import event_abi_to_log_topic, get_abi_output_types
from hexbytes import HexBytes
from web3 import Web3
from web3._utils.abi import normalize_event_input_types
from web3._utils.empty import Empty
from web3._utils.events import get_event_abi_types_for_decoding
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.datastructures import AttributeDict
from web3.types import RPCEndpoint

from marketplace.units import checksum_address

__all__ = ["MISSING", "LeanReads", "Missing"]

Normalizer = Callable[[Any], Any]
CACHE_LIMIT = 4096  # entries per cache; a peer reads a handful of views and events


class Missing:
    """The type of :data:`MISSING`."""

    def __repr__(self) -> str:
        return "MISSING"


#: What a lean read returns when the caller must take web3's path instead.
MISSING: Final = Missing()


@functools.lru_cache(maxsize=256)
def normalizer(type_str: str) -> Normalizer | None:
    """How web3 normalizes a value eth_abi decoded as ``type_str`` (``map_abi_data`` with its
    return normalizers): addresses checksummed, arrays as lists, tuples as tuples. ``None``:
    the value is kept as decoded."""
    abi_type = parse(type_str)
    if abi_type.is_array:
        item = normalizer(abi_type.item_type.to_type_str())
        if item is None:
            return list
        return lambda values: [item(v) for v in values]
    if isinstance(abi_type, TupleType):
        parts = [normalizer(c.to_type_str()) for c in abi_type.components]
        if not any(parts):
            return None
        return lambda values: tuple(
            v if p is None else p(v) for p, v in zip(parts, values, strict=True)
        )
    if abi_type.to_type_str() == "address":
        return checksum_address
    return None


def _normalize_all(types: Sequence[str]) -> Callable[[Sequence[Any]], list[Any]]:
    """Normalize a decoded tuple of ``types`` into the list web3's ``map_abi_data`` returns."""
    parts = [normalizer(t) for t in types]
    return lambda values: [v if p is None else p(v) for p, v in zip(parts, values, strict=True)]


def _int(value: Any) -> Any:
    """A JSON-RPC quantity as ``int`` (web3's ``to_integer_if_hex``; ``None`` stays)."""
    return int(value, 16) if isinstance(value, str) else value


def _hexbytes(value: Any) -> Any:
    return None if value is None else HexBytes(value)


class _View:
    """One view with its arguments: the ``eth_call`` object and the output decoder."""

    __slots__ = ("decode", "tx")

    def __init__(self, tx: dict[str, str], decode: Callable[[bytes], Any]) -> None:
        self.tx = tx
        self.decode = decode


class _Event:
    """One event's decoders: topic types and names, data types and names."""

    def __init__(self, abi: Mapping[str, Any]) -> None:
        inputs = list(normalize_event_input_types(abi["inputs"]))
        indexed = [i for i in inputs if i.get("indexed")]
        data = [i for i in inputs if not i.get("indexed")]
        self.name = str(abi["name"])
        self.topic0 = "0x" + event_abi_to_log_topic(abi).hex()  # type: ignore[arg-type]
        self.indexed = {str(i["name"]): str(i["type"]) for i in indexed}
        self.topic_names = [str(i["name"]) for i in indexed]
        self.topic_types = list(get_event_abi_types_for_decoding(indexed))
        self.data_names = [str(i["name"]) for i in data]
        self.data_types = list(get_event_abi_types_for_decoding(data))
        self.normalize_topics = _normalize_all(self.topic_types)
        self.normalize_data = _normalize_all(self.data_types)


def _event_supported(abi: Mapping[str, Any]) -> bool:
    """Events without struct inputs (web3 names a struct's members: not repeated here), not
    anonymous (found by their topic0), with distinct argument names."""
    names = [str(i["name"]) for i in abi["inputs"]]
    if abi.get("anonymous") or len(set(names)) != len(names):
        return False  # (web3 refuses duplicate names with its own error)
    return not any(str(i["type"]).startswith("tuple") for i in abi["inputs"])


def _filterable(type_str: str) -> bool:
    """An indexed argument whose topic is its ABI encoding (not a hash, not a list)."""
    abi_type = parse(type_str)
    return not (abi_type.is_dynamic or abi_type.is_array or isinstance(abi_type, TupleType))


class LeanReads:
    """Views and logs of one ``Web3`` over JSON-RPC, with their call data, filters and decoders
    built once. Thread-safe: the caches are plain dictionaries filled idempotently."""

    def __init__(self, w3: Web3) -> None:
        self._w3 = w3
        self._views: dict[tuple[Any, ...], _View | None] = {}
        self._events: dict[tuple[str, str], _Event | None] = {}
        self._filters: dict[tuple[Any, ...], dict[str, Any] | None] = {}

    # --- the head -------------------------------------------------------------------------
    def block_number(self) -> int | Missing:
        """The head's number (one raw ``eth_blockNumber``: a peer reads it every step), or
        :data:`MISSING`. Connection errors propagate as the provider raises them."""
        response = self._w3.provider.make_request(RPCEndpoint("eth_blockNumber"), [])
        result = response.get("result")
        if "error" in response or not isinstance(result, str):
            return MISSING
        try:
            return int(result, 16)
        except ValueError:
            return MISSING

    # --- views ----------------------------------------------------------------------------
    def call(self, fn: ContractFunction, key: tuple[Any, ...], block: int | str) -> Any:
        """``fn``'s result at ``block`` (a number or a tag such as ``"latest"``), equal to
        ``fn.call(None, block)``, or :data:`MISSING`.

        ``key`` names ``fn``'s function and arguments (its contract, name and arguments' repr).
        Connection errors propagate as the provider raises them."""
        view = self._views.get(key)
        if view is None:
            if key in self._views:
                return MISSING  # a function this module does not read
            view = self._view(fn)
            if len(self._views) > CACHE_LIMIT:
                self._views.clear()
            self._views[key] = view
            if view is None:
                return MISSING
        if not isinstance(self._w3.eth.default_account, Empty):
            return MISSING  # web3 would send it as `from`
        tag = hex(block) if isinstance(block, int) else block
        response = self._w3.provider.make_request(RPCEndpoint("eth_call"), [view.tx, tag])
        result = response.get("result")
        if "error" in response or not isinstance(result, str):
            return MISSING  # a revert or an odd answer: web3's path raises its error
        try:
            return view.decode(HexBytes(result))
        except Exception:  # e.g. no contract there ("0x"): web3 says so in its own words
            return MISSING

    def _view(self, fn: ContractFunction) -> _View | None:
        if fn.decode_tuples or fn._return_data_normalizers or fn.abi.get("type") != "function":
            return None
        try:
            data = fn._encode_transaction_data()
        except Exception:  # arguments web3 refuses: let it say so
            return None
        types = get_abi_output_types(fn.abi)
        normalize = _normalize_all(types)
        codec = self._w3.codec

        def decode(raw: bytes) -> Any:
            values = normalize(codec.decode(types, raw))
            return values[0] if len(values) == 1 else values  # as web3 unwraps one output

        return _View({"to": str(fn.address), "data": data}, decode)

    # --- logs -----------------------------------------------------------------------------
    def logs(
        self,
        contract: Contract,
        event: str,
        filters: Mapping[str, Any] | None,
        from_block: int,
        to_block: int,
    ) -> list[AttributeDict[str, Any]] | Missing:
        """``event``'s logs of ``contract`` in ``from_block..to_block`` matching ``filters``,
        equal to ``ContractEvent.get_logs``, or :data:`MISSING` (only indexed arguments of
        value types are filtered here, each by one value)."""
        decoder = self._event(contract, event)
        if decoder is None:
            return MISSING
        params = self._filter(contract, decoder, filters)
        if params is None:
            return MISSING
        span = {"fromBlock": hex(from_block), "toBlock": hex(to_block)}
        response = self._w3.provider.make_request(RPCEndpoint("eth_getLogs"), [{**params, **span}])
        result = response.get("result")
        if "error" in response or not isinstance(result, list):
            return MISSING
        try:
            decoded = [self._decode_log(decoder, entry) for entry in result]
        except Exception:  # a log not of this event's shape: web3's path decides
            return MISSING
        return sorted(decoded, key=lambda e: (e["blockNumber"], e["logIndex"]))

    def _event(self, contract: Contract, event: str) -> _Event | None:
        key = (str(contract.address), event)
        if key not in self._events:
            entries: list[Mapping[str, Any]] = list(contract.abi)
            found = [e for e in entries if e.get("type") == "event" and e["name"] == event]
            ok = len(found) == 1 and _event_supported(found[0])
            self._events[key] = _Event(found[0]) if ok else None
        return self._events[key]

    def _filter(
        self, contract: Contract, decoder: _Event, filters: Mapping[str, Any] | None
    ) -> dict[str, Any] | None:
        """The ``eth_getLogs`` filter (address, topics) as web3 builds it, or ``None``."""
        try:
            key = (str(contract.address), decoder.name, tuple(sorted((filters or {}).items())))
            cached = self._filters.get(key, MISSING)
        except TypeError:  # an unhashable value (a list of alternatives): web3 handles it
            return None
        if not isinstance(cached, Missing):
            return cached
        params = self._build_filter(contract, decoder, filters or {})
        if len(self._filters) > CACHE_LIMIT:
            self._filters.clear()
        self._filters[key] = params
        return params

    def _build_filter(
        self, contract: Contract, decoder: _Event, filters: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        for name, value in filters.items():
            type_ = decoder.indexed.get(name)
            if type_ is None or value is None or not _filterable(type_):
                return None  # a data argument (web3 filters those itself) or an odd value
            if isinstance(value, list | tuple | set):
                return None
        topics: list[str | None] = [decoder.topic0]
        codec = self._w3.codec
        try:
            for name in decoder.topic_names:
                value = filters.get(name)
                type_ = decoder.indexed[name]
                encoded = None if value is None else "0x" + codec.encode([type_], [value]).hex()
                topics.append(encoded)
        except Exception:  # a value the codec refuses: web3 raises its own error for it
            return None
        while topics[-1] is None:  # as web3: no trailing wildcards
            topics.pop()
        return {"topics": topics, "address": [str(contract.address)]}

    def _decode_log(self, decoder: _Event, entry: Mapping[str, Any]) -> AttributeDict[str, Any]:
        """One raw log as web3's ``get_event_data`` returns it (formatted as its middleware
        formats a log entry)."""
        topics = entry["topics"]
        if not topics or topics[0].lower() != decoder.topic0:
            raise ValueError(f"not a {decoder.name} log")
        if len(topics) - 1 != len(decoder.topic_types):
            raise ValueError(f"{decoder.name}: expected {len(decoder.topic_types)} topics")
        codec = self._w3.codec
        # Each topic is one 32-byte static head: decoding them together is decoding each.
        indexed = codec.decode(decoder.topic_types, b"".join(HexBytes(t) for t in topics[1:]))
        values = codec.decode(decoder.data_types, HexBytes(entry["data"]))
        args = dict(zip(decoder.topic_names, decoder.normalize_topics(indexed), strict=True))
        args.update(zip(decoder.data_names, decoder.normalize_data(values), strict=True))
        return AttributeDict(
            {
                "args": AttributeDict(args),
                "event": decoder.name,
                "logIndex": _int(entry["logIndex"]),
                "transactionIndex": _int(entry.get("transactionIndex")),
                "transactionHash": _hexbytes(entry.get("transactionHash")),
                "address": checksum_address(entry["address"]),
                "blockHash": _hexbytes(entry.get("blockHash")),
                "blockNumber": _int(entry.get("blockNumber")),
            }
        )
