"""Sending transactions from local keys, and turning reverts into readable errors.

Every state-changing call goes through :func:`send`: it estimates gas first (so a revert is caught
before anything is signed or paid), signs locally with the caller's key, waits for the receipt and
raises :class:`~marketplace.errors.TransactionRevertedError` carrying the custom error's name and
arguments, decoded against every ABI the library knows.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from eth_abi.abi import decode as abi_decode
from eth_account.signers.local import LocalAccount
from eth_account.types import TransactionDictType
from eth_typing import ABIError
from eth_utils.abi import function_abi_to_4byte_selector
from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.exceptions import ContractLogicError, TimeExhausted, Web3RPCError
from web3.types import Nonce, TxParams, TxReceipt, Wei

from marketplace.errors import ChainError, RpcUnreachableError, TransactionRevertedError

log = logging.getLogger(__name__)

# Receipt polling: web3's default 0.1 s is a visible share of a devnet round (two transactions
# on each trainer's critical path); an RPC call every 50 ms is cheap for one waiting sender.
RECEIPT_POLL_SECONDS = 0.05

_ERROR_STRING = bytes.fromhex("08c379a0")  # Error(string)
_PANIC = bytes.fromhex("4e487b71")  # Panic(uint256)
_PANIC_CODES = {
    0x01: "assertion failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division by zero",
    0x21: "invalid enum value",
    0x32: "array index out of bounds",
    0x41: "out of memory",
}


@dataclass(frozen=True)
class DecodedRevert:
    """A revert reason: the custom error's name and its arguments by name."""

    name: str
    args: tuple[Any, ...]
    arg_names: tuple[str, ...]

    def __str__(self) -> str:
        if self.name == "Error" and len(self.args) == 1:
            return f'reverted with reason "{self.args[0]}"'
        parts = ", ".join(
            f"{n}={_fmt(v, n)}" if n else _fmt(v)
            for n, v in zip(self.arg_names, self.args, strict=True)
        )
        return f"{self.name}({parts})"


# Argument names the contracts' custom errors use for chain timestamps and for token amounts:
# an error without a sentence in marketplace.chain.explain still shows these for people.
_TIME_ARGS = {"deadline", "notBefore", "notAfter", "expiry", "unlockAt", "releaseAt",
              "joinDeadline", "lockedUntil"}  # fmt: skip
_AMOUNT_ARGS = {"amount", "budget", "stake", "paid", "minimum", "available", "reserved",
                "requested"}  # fmt: skip
_WEI_FLOOR = 10**12  # "required" is a stake in wei, or a count/ppm (never this large)


def _fmt(value: Any, name: str = "") -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        from marketplace.units import describe_time, format_amount

        if name in _TIME_ARGS:
            return describe_time(value)
        if name in _AMOUNT_ARGS or (name == "required" and value >= _WEI_FLOOR):
            return f"{format_amount(value)} tokens"
    return str(value)


class RevertDecoder:
    """Decodes revert data against the custom errors of a set of ABIs."""

    def __init__(self, abis: Iterable[Sequence[Mapping[str, Any]]]):
        self._errors: dict[bytes, Mapping[str, Any]] = {}
        for abi in abis:
            for item in abi:
                if item.get("type") == "error":
                    self._errors[_selector(item)] = item

    def add_abi(self, abi: Sequence[Mapping[str, Any]]) -> None:
        for item in abi:
            if item.get("type") == "error":
                self._errors[_selector(item)] = item

    def decode(self, data: bytes | str | None) -> DecodedRevert | None:
        """The decoded revert, or ``None`` when ``data`` is empty or unknown."""
        raw = _as_bytes(data)
        if len(raw) < 4:
            return None
        selector, body = raw[:4], raw[4:]
        try:
            if selector == _ERROR_STRING:
                (reason,) = abi_decode(["string"], body)
                return DecodedRevert("Error", (reason,), ("reason",))
            if selector == _PANIC:
                (code,) = abi_decode(["uint256"], body)
                return DecodedRevert("Panic", (_PANIC_CODES.get(code, hex(code)),), ("code",))
            item = self._errors.get(selector)
            if item is None:
                return None
            types = [_abi_type(i) for i in item.get("inputs", [])]
            names = tuple(str(i.get("name", "")) for i in item.get("inputs", []))
            values = abi_decode(types, body)
            return DecodedRevert(str(item["name"]), tuple(values), names)
        except Exception:  # malformed revert data: report it undecoded rather than crash
            return None


def _abi_type(inp: Mapping[str, Any]) -> str:
    t = str(inp["type"])
    if t.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in inp["components"])
        return f"({inner}){t[5:]}"
    return t


def _selector(item: Mapping[str, Any]) -> bytes:
    """The 4-byte selector of an ABI error (or function) entry."""
    return function_abi_to_4byte_selector(cast(ABIError, dict(item)))


def _as_bytes(data: bytes | str | Mapping[str, Any] | None) -> bytes:
    if data is None:
        return b""
    if isinstance(data, Mapping):  # some nodes wrap it: {"data": "0x..."}
        data = data.get("data")
        return _as_bytes(data)
    if isinstance(data, bytes):
        return data
    text = str(data)
    if text.startswith("0x"):
        text = text[2:]
    try:
        return bytes.fromhex(text)
    except ValueError:
        return b""


def revert_error(
    exc: ContractLogicError, decoder: RevertDecoder | None, *, action: str
) -> TransactionRevertedError:
    """A :class:`TransactionRevertedError` for a web3 revert, decoded when possible."""
    decoded = decoder.decode(exc.data) if decoder else None  # type: ignore[arg-type]
    if decoded is None:
        reason = str(exc.message or exc) if hasattr(exc, "message") else str(exc)
        return TransactionRevertedError(f"{action} reverted: {reason}")
    from marketplace.chain.explain import explain

    words = explain(decoded.name, decoded.args)
    text = f"{words} ({decoded.name})" if words else str(decoded)
    return TransactionRevertedError(
        f"{action} reverted: {text}", error_name=decoded.name, args=decoded.args
    )


# Fee caps a TxContext reuses: the tip and the base fee are read again after this long; the cap
# is 3x the base fee seen (a block raises it by at most 12.5%: ~9 blocks of headroom) plus the
# tip, and EIP-1559 charges only the base fee actually due, so the headroom costs nothing.
FEE_TTL_SECONDS = 2.0
BASE_FEE_HEADROOM = 3
# What a node answers when a transaction's nonce was already used (another sender of the same
# account, e.g. `cast send`, or a second client in the process): refetch and send again, once.
_NONCE_TAKEN = ("nonce too low", "already known", "replacement transaction underpriced",
                "nonce has already been used", "invalid nonce")  # fmt: skip


@dataclass
class TxContext:
    """What one chain client reuses across its transactions, so a send costs three requests
    (gas estimate, raw transaction, receipt) instead of nine: the chain id, each account's next
    nonce (counted locally after the first ``pending`` read, refetched when a node says it was
    taken) and the fee caps (read again after :data:`FEE_TTL_SECONDS`). On a network with 50 ms
    of latency each request saved is 100 ms off the sender's critical path. Thread-safe."""

    chain_id: int
    fee_ttl: float = FEE_TTL_SECONDS
    _nonces: dict[str, int] = field(default_factory=dict)
    _fees: tuple[float, int, int] | None = None  # (read at, max fee, tip)
    _mined: int = -1  # the newest block a transaction sent in this context was mined in
    #: Held from reading a nonce until its transaction is sent (and by :meth:`at_head`).
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def at_head(self, head: int) -> None:
        """The caller saw ``head``: if the chain is below a block our transactions were mined
        in (a devnet's ``evm_revert``, a reorganization), our nonces and fees are stale — a
        nonce past the account's is queued by the node and never mined — so read them again."""
        with self.lock:
            if head < self._mined:
                self._nonces.clear()
                self._fees = None
                self._mined = head

    def mined(self, block: int) -> None:
        self._mined = max(self._mined, block)

    def fees(self, w3: Web3) -> tuple[int, int] | None:
        """``(maxFeePerGas, maxPriorityFeePerGas)``, or ``None`` on a chain without a base fee
        (web3 then prices the transaction itself)."""
        now = time.monotonic()
        cached = self._fees
        if cached is not None and now - cached[0] < self.fee_ttl:
            return cached[1], cached[2]
        base = w3.eth.get_block("latest").get("baseFeePerGas")
        if base is None:
            return None
        tip = int(w3.eth.max_priority_fee)
        self._fees = (now, BASE_FEE_HEADROOM * int(base) + tip, tip)
        return self._fees[1], self._fees[2]

    def next_nonce(self, w3: Web3, address: str) -> int:
        """The account's next nonce (call with :attr:`lock` held until the send)."""
        if address not in self._nonces:
            checksum = Web3.to_checksum_address(address)
            self._nonces[address] = int(w3.eth.get_transaction_count(checksum, "pending"))
        return self._nonces[address]

    def used(self, address: str, nonce: int) -> None:
        self._nonces[address] = nonce + 1

    def forget(self, address: str) -> None:
        """Read the account's nonce from the node next time (after any failed send)."""
        self._nonces.pop(address, None)


def _nonce_taken(exc: Web3RPCError) -> bool:
    text = _rpc_message(exc).lower()
    return any(words in text for words in _NONCE_TAKEN)


def send(
    w3: Web3,
    fn: ContractFunction,
    account: LocalAccount,
    *,
    decoder: RevertDecoder | None = None,
    value: int = 0,
    gas: int | None = None,
    timeout: float = 120.0,
    context: TxContext | None = None,
) -> TxReceipt:
    """Sign ``fn`` with ``account``, send it and wait for its receipt (``context``: reuse the
    chain id, nonce and fees, see :class:`TxContext`; the caller checks it against the head with
    :meth:`TxContext.at_head` first).

    Raises
    ------
    TransactionRevertedError
        The call reverts (found by gas estimation, before anything is sent) or the mined
        transaction failed.
    RpcUnreachableError
        The node did not answer.
    ChainError
        Anything else the node refused (insufficient funds for gas, a bad nonce...).
    """
    name = getattr(fn, "fn_name", "constructor")
    action = f"{getattr(fn, 'address', None) or 'new contract'}.{name}"
    try:
        params: TxParams = {"from": account.address, "value": Wei(value)}
        if gas is None and _in_process(w3) and hasattr(fn, "call"):
            # py-evm estimates gas by binary search (about 11 executions per estimate: most of
            # the in-process demo's time). One eth_call finds a revert just as well, and a
            # generous fixed limit costs nothing on a local chain (unused gas is refunded).
            _precheck_in_process(w3, fn, params)
            gas = IN_PROCESS_GAS
        if gas is None:
            estimate = fn.estimate_gas(params)
            gas = int(estimate * 1.2) + 10_000  # headroom for state changes between calls
        params["gas"] = gas
        if context is None or _in_process(w3):
            params["nonce"] = w3.eth.get_transaction_count(account.address, "pending")
            params["chainId"] = w3.eth.chain_id
            tx = fn.build_transaction(params)
            signed = account.sign_transaction(cast(TransactionDictType, tx))
            tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
        else:
            tx_hash = _send_in_context(w3, fn, account, params, context)
        receipt = w3.eth.wait_for_transaction_receipt(
            tx_hash, timeout=timeout, poll_latency=RECEIPT_POLL_SECONDS
        )
    except ContractLogicError as exc:
        raise revert_error(exc, decoder, action=name) from None
    except TimeExhausted:
        # A stalled node (paused, overloaded) is transient: peers retry the step, which checks
        # the chain first, so a transaction mined late is not sent twice in effect. The retry
        # reads the nonce again (ours may have been one the node queued and will not mine).
        if context is not None:
            context.forget(account.address)
        raise RpcUnreachableError(
            f"{name}: no receipt after {timeout:.0f}s; the node may be stalled or the gas "
            "price too low — check the node and retry"
        ) from None
    except Web3RPCError as exc:
        raise ChainError(f"{name} refused by the node: {_rpc_message(exc)}") from None
    except (ConnectionError, OSError) as exc:
        raise RpcUnreachableError(
            f"lost the chain RPC while sending {name}: {exc}; is the node running?"
        ) from None
    if context is not None:
        context.mined(int(receipt["blockNumber"]))
    if receipt["status"] != 1:
        raise _mined_failure(fn, params, receipt, decoder, action=action, name=name)
    log.debug("%s mined, gas %d", action, receipt["gasUsed"])
    return receipt


def _send_in_context(
    w3: Web3, fn: ContractFunction, account: LocalAccount, params: TxParams, context: TxContext
) -> Any:
    """Sign and send with ``context``'s chain id, fees and local nonce; a nonce the node says
    was taken is read again and the transaction sent once more."""
    params["chainId"] = context.chain_id
    fees = context.fees(w3)
    if fees is not None:
        params["maxFeePerGas"], params["maxPriorityFeePerGas"] = Wei(fees[0]), Wei(fees[1])
    address = account.address
    for attempt in (1, 2):
        with context.lock:
            nonce = context.next_nonce(w3, address)
            params["nonce"] = Nonce(nonce)
            tx = fn.build_transaction(params)
            signed = account.sign_transaction(cast(TransactionDictType, tx))
            try:
                tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
            except Web3RPCError as exc:
                context.forget(address)
                if attempt == 1 and _nonce_taken(exc):
                    log.info("nonce %d of %s was taken: reading it again", nonce, address)
                    continue
                raise
            except BaseException:
                context.forget(address)
                raise
            context.used(address, nonce)
            return tx_hash
    raise AssertionError("unreachable")  # pragma: no cover


IN_PROCESS_GAS = 8_000_000  # per transaction on the in-process EVM (block limit is 30M)


def _in_process(w3: Web3) -> bool:
    from web3 import EthereumTesterProvider

    return isinstance(w3.provider, EthereumTesterProvider)


def _precheck_in_process(w3: Web3, fn: ContractFunction, params: Mapping[str, Any]) -> None:
    """Run ``fn`` once as a call on the in-process EVM; a revert becomes ContractLogicError with
    the raw revert data (web3's eth-tester wrapper loses it for custom errors)."""
    from eth_tester.exceptions import TransactionFailed

    tx = fn.build_transaction({**params, "gas": IN_PROCESS_GAS})  # type: ignore[arg-type]
    tester = w3.provider.ethereum_tester  # type: ignore[attr-defined]
    try:
        tester.call(
            {"from": tx["from"], "to": tx["to"], "data": tx["data"], "value": tx.get("value", 0),
             "gas": IN_PROCESS_GAS},
            "latest",
        )  # fmt: skip
    except TransactionFailed as exc:
        raise _tester_revert(exc) from None


def _tester_revert(exc: BaseException) -> ContractLogicError:
    """eth-tester's ``TransactionFailed`` as the ContractLogicError a node's revert raises, with
    the raw revert data (so custom errors decode the same on the in-process EVM)."""
    raw = exc.args[0] if exc.args else b""
    if isinstance(raw, Exception):
        raw = raw.args[0] if raw.args else b""
    if isinstance(raw, str):
        raw = raw.removeprefix("execution reverted: ")  # web3's eth-tester provider adds it
    if isinstance(raw, str) and raw.startswith(("b'", 'b"')):
        import ast

        raw = ast.literal_eval(raw)  # eth-tester passes the revert bytes as their repr
    data = "0x" + bytes(raw).hex() if isinstance(raw, bytes | bytearray) else None
    return ContractLogicError(f"execution reverted: {raw!r}", data=data)


def call(
    fn: ContractFunction,
    *,
    decoder: RevertDecoder | None = None,
    block_identifier: int | str = "latest",
    **kwargs: Any,
) -> Any:
    """``fn.call()`` at ``block_identifier`` with reverts decoded like :func:`send` (on a node
    and on the in-process EVM alike)."""
    try:
        return fn.call(kwargs or None, block_identifier)  # type: ignore[arg-type]
    except ContractLogicError as exc:
        raise revert_error(exc, decoder, action=fn.fn_name) from None
    except (ConnectionError, OSError) as exc:
        raise call_unreachable(fn.fn_name, exc) from None
    except Exception as exc:
        # eth-tester raises its own TransactionFailed from a reverting view (the demo's EVM).
        from eth_tester.exceptions import TransactionFailed

        if not isinstance(exc, TransactionFailed):
            raise
        raise revert_error(_tester_revert(exc), decoder, action=fn.fn_name) from None


def call_unreachable(name: str, exc: BaseException) -> RpcUnreachableError:
    """The error for a view ``name`` whose request did not reach the node."""
    return RpcUnreachableError(f"lost the chain RPC calling {name}: {exc}")


def _rpc_message(exc: Web3RPCError) -> str:
    msg = getattr(exc, "rpc_response", None)
    if isinstance(msg, Mapping) and isinstance(msg.get("error"), Mapping):
        text = str(msg["error"].get("message", exc))
    else:
        text = str(exc)
    if "insufficient funds" in text:
        return f"{text} — fund the account with ETH for gas"
    return text


def send_eth(
    w3: Web3, account: LocalAccount, to: str, amount_wei: int, *, timeout: float = 120.0
) -> TxReceipt:
    """A plain ETH transfer signed by ``account`` (gas for a new devnet account)."""
    tx: TransactionDictType = {
        "to": Web3.to_checksum_address(to),
        "value": amount_wei,
        "gas": 21_000,
        "maxFeePerGas": 2 * w3.eth.gas_price + 1,
        "maxPriorityFeePerGas": 1,
        "nonce": w3.eth.get_transaction_count(account.address, "pending"),
        "chainId": w3.eth.chain_id,
    }
    try:
        signed = account.sign_transaction(tx)
        return w3.eth.wait_for_transaction_receipt(
            w3.eth.send_raw_transaction(signed.raw_transaction), timeout=timeout
        )
    except Web3RPCError as exc:
        raise ChainError(f"ETH transfer refused by the node: {_rpc_message(exc)}") from None


def _mined_failure(
    fn: ContractFunction,
    params: Mapping[str, Any],
    receipt: TxReceipt,
    decoder: RevertDecoder | None,
    *,
    action: str,
    name: str,
) -> TransactionRevertedError:
    """The error for a transaction that passed estimation but failed once mined.

    That happens when another transaction changed the state in between (two peers advancing the
    same phase, say). Replaying the call against the state of the block it was mined in recovers
    the custom error, so callers can tell a lost race (``TaskMarketWrongPhase``) from a real fault.
    """
    where = f"block {receipt['blockNumber']}, tx {receipt['transactionHash'].hex()}"
    try:
        fn.call(
            {"from": params["from"], "value": params.get("value", 0)},
            block_identifier=receipt["blockNumber"],
        )
    except ContractLogicError as exc:
        err = revert_error(exc, decoder, action=name)
        return TransactionRevertedError(
            f"{err} (mined in {where})", error_name=err.error_name, args=err.error_args
        )
    except Exception as exc:  # the replay is best effort: report the bare failure instead
        log.debug("replaying failed %s did not decode: %s", name, exc)
    return TransactionRevertedError(f"{action} failed when mined ({where})")
